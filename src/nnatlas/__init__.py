"""nnatlas: the classic ideas of deep learning as tested, measurable PyTorch code."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nnatlas")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
