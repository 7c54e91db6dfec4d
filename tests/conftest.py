import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

# Keep two cores busy but not oversubscribed, and make every test start from the same seed.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def nnatlas_exe() -> list[str]:
    """The installed console script (the real entry point), or ``python -m nnatlas`` beside this Python."""
    script = Path(sys.executable).with_name("nnatlas")
    if script.exists():
        return [str(script)]
    found = shutil.which("nnatlas")
    return [found] if found else [sys.executable, "-m", "nnatlas"]
