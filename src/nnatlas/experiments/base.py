"""The experiment framework: a registry of claims of the course notes, each measured and judged.

An experiment is a subclass of :class:`~nnatlas.experiments.Experiment` registered with
:func:`~nnatlas.experiments.register_experiment`. It states, before anything runs, the claim (quoted from
the notes in Chinese, with an English gloss), the method and the **criterion**: a sentence and the function
:meth:`~nnatlas.experiments.Experiment.decide` that maps the measured numbers to a verdict.
:meth:`~nnatlas.experiments.Experiment.run` measures and returns a :class:`~nnatlas.experiments.Measurement`
(the numbers, a table, the key number and a figure drawn from those numbers);
:func:`~nnatlas.experiments.run_experiment` then computes the verdict
by ``decide(numbers)``, never from anything else, and writes ``result.json``, ``figure.png`` and
``README.md`` into ``out/NAME/`` atomically: everything is written into a hidden folder beside it and
moved into place last, so an interrupted run leaves no half-written result.

Verdicts are ``SUPPORTED``, ``NOT_SUPPORTED`` and ``INCONCLUSIVE``. An experiment whose data
disagree with the notes says so: that is a finding, not a failure.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from nnatlas._suggest import unknown_choice_message
from nnatlas._validate import check_int

__all__ = [
    "INCONCLUSIVE",
    "NOT_SUPPORTED",
    "SUPPORTED",
    "VERDICTS",
    "Context",
    "Experiment",
    "Measurement",
    "get_experiment",
    "list_experiments",
    "load_results",
    "majority",
    "register_experiment",
    "run_experiment",
    "spread",
    "summary_table",
]

#: The verdict when the measured numbers meet the claim's criterion.
SUPPORTED = "supported"
#: The verdict when the numbers contradict the claim: a finding, not a failure.
NOT_SUPPORTED = "not supported"
#: The verdict when the numbers neither meet nor contradict the criterion.
INCONCLUSIVE = "inconclusive"
#: The three verdicts, in that order.
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)
#: The file that marks a folder as an experiment result written by nnatlas (and so replaceable).
RESULT_FILE = "result.json"
SCHEMA = 1


@dataclass
class Measurement:
    """What :meth:`Experiment.run` measured.

    ``numbers``: every measured number, JSON-serialisable (floats, ints, strings, lists, dicts), with
    per-seed values where there are seeds; ``decide`` reads only these. ``table``: rows (dicts with the
    same keys) shown in the README. ``key``: one line with the key number, for the summary table.
    ``figure(path)``: draws ``figure.png``.
    """

    numbers: dict[str, Any]
    table: list[dict[str, Any]]
    key: str
    figure: Callable[[Path], None]
    notes: list[str] = field(default_factory=list)


def _no_progress(text: str) -> None:
    """Report progress as one line of ``text`` (the command line shows it; by default nothing does)."""


@dataclass
class Context:
    """What an experiment run is given: ``quick`` sizes, the ``seeds``, a scratch folder ``work`` (inside
    the hidden output folder), and ``step(text)`` to report progress."""

    quick: bool
    seeds: tuple[int, ...]
    work: Path
    step: Callable[[str], None] = _no_progress

    def size(self, quick: Any, full: Any) -> Any:
        """``quick`` under ``--quick``, else ``full``."""
        return quick if self.quick else full


class Experiment:
    """One claim of the notes, measured.

    Class attributes set by every experiment: ``name`` (``kebab-case``), ``title`` (the claim in one
    English line), ``section`` (the heading of the notes, in Chinese as written there), ``claim_zh`` (the
    notes' sentence), ``claim_en`` (its English gloss), ``method``, ``criterion`` (the rule of
    :meth:`decide` in words) and ``minutes`` (expected minutes of the full run on a 2-core CPU).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    section: ClassVar[str]
    claim_zh: ClassVar[str]
    claim_en: ClassVar[str]
    method: ClassVar[str]
    criterion: ClassVar[str]
    minutes: ClassVar[float] = 1.0

    def run(self, ctx: Context) -> Measurement:
        """Measure: train, count or time what the claim is about, at ``ctx.size(quick, full)`` sizes and
        for each of ``ctx.seeds``, and return the numbers with their table, key line and figure."""
        raise NotImplementedError

    def decide(self, numbers: Mapping[str, Any]) -> str:
        """The verdict that ``numbers`` give under :attr:`criterion`."""
        raise NotImplementedError


_EXPERIMENTS: dict[str, type[Experiment]] = {}
_REQUIRED = ("name", "title", "section", "claim_zh", "claim_en", "method", "criterion")


def register_experiment(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: records ``cls`` under ``cls.name``."""
    missing = [a for a in _REQUIRED if not getattr(cls, a, "")]
    if missing:
        raise ValueError(f"experiment {cls.__name__} lacks {', '.join(missing)}")
    if cls.name in _EXPERIMENTS:
        raise ValueError(f"experiment {cls.name!r} is already registered")
    _EXPERIMENTS[cls.name] = cls
    return cls


def list_experiments() -> list[str]:
    """Names of the registered experiments, in the order of the notes (registration order).

    >>> names = list_experiments()
    >>> len(names), names[:3]
    (19, ['conv-vs-fc', 'stacked-3x3', 'dilation-rf'])
    """
    return list(_EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    """A new instance of the experiment ``name``; an unknown name raises ``ValueError`` naming the closest.

    >>> experiment = get_experiment("stacked-3x3")
    >>> type(experiment).__name__, experiment.section
    ('StackedConvs', 'VGGNet')
    """
    try:
        return _EXPERIMENTS[name]()
    except KeyError:
        raise ValueError(unknown_choice_message("experiment", name, _EXPERIMENTS)) from None


# ---------------------------------------------------------------------------------------------------------
# Criteria helpers


def majority(passes: Sequence[bool], *, need: float = 2 / 3) -> str:
    """``SUPPORTED`` when at least ``need`` of ``passes`` hold, ``NOT_SUPPORTED`` when at most
    ``1 - need`` hold, ``INCONCLUSIVE`` in between (or when there is nothing to count).

    >>> majority([True, True, False]), majority([True, False, False]), majority([])
    ('supported', 'not supported', 'inconclusive')
    """
    if not passes:
        return INCONCLUSIVE
    share = sum(bool(p) for p in passes) / len(passes)
    if share >= need - 1e-9:
        return SUPPORTED
    if share <= 1 - need + 1e-9:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def spread(values: Iterable[float]) -> dict[str, float]:
    """``{"mean", "std", "min", "max", "n"}`` of ``values`` (``std`` the sample standard deviation, 0 for
    one value).

    >>> spread([1, 2, 3])
    {'mean': 2.0, 'std': 1.0, 'min': 1.0, 'max': 3.0, 'n': 3}
    """
    v = [float(x) for x in values]
    if not v:
        raise ValueError("spread needs at least one value")
    return {
        "mean": statistics.fmean(v),
        "std": statistics.stdev(v) if len(v) > 1 else 0.0,
        "min": min(v),
        "max": max(v),
        "n": len(v),
    }


# ---------------------------------------------------------------------------------------------------------
# Running and writing


def _versions() -> dict[str, str]:
    import numpy
    import torch
    import torchvision

    from nnatlas import __version__

    return {
        "nnatlas": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
    }


def _machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _finite(obj: Any, where: str = "numbers") -> None:
    """Refuse NaN and infinity: JSON has no such numbers and a verdict must not rest on them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"{where} holds a non-finite number ({obj})")
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _finite(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _finite(v, f"{where}[{i}]")


def check_output_folder(out: Path, name: str) -> Path:
    """``out/name``, refused when it exists and is not an experiment result (nothing a user wrote is lost)."""
    target = out / name
    if target.exists() and not (target / RESULT_FILE).is_file():
        raise ValueError(
            f"{str(target)!r} exists and is not an experiment result; choose another --out or remove it"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is not a folder")
    return target


def run_experiment(
    name: str,
    out: str | os.PathLike,
    *,
    quick: bool = False,
    seeds: int = 3,
    step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the experiment ``name`` and write ``out/name/{result.json, figure.png, README.md}``.

    ``seeds``: how many seeds (0, 1, ... ``seeds - 1``) the experiment repeats its measurement over.
    Returns the content of ``result.json``. An existing result in ``out/name`` is replaced only once the
    new one is complete; a folder there that is not a result raises ``ValueError`` before anything runs.
    """
    exp = get_experiment(name)
    check_int("seeds", seeds, maximum=100)
    out = Path(out)
    target = check_output_folder(out, name)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        ctx = Context(
            quick=quick, seeds=tuple(range(seeds)), work=tmp / "work", step=step or (lambda t: None)
        )
        ctx.work.mkdir()
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        m = exp.run(ctx)
        wall = time.perf_counter() - t0
        _finite(m.numbers)
        verdict = exp.decide(m.numbers)
        if verdict not in VERDICTS:
            raise RuntimeError(f"experiment {name!r} decided {verdict!r}, not one of {VERDICTS}")
        result = {
            "schema": SCHEMA,
            "name": name,
            "title": exp.title,
            "claim": {"section": exp.section, "zh": exp.claim_zh, "en": exp.claim_en},
            "method": exp.method,
            "criterion": exp.criterion,
            "numbers": m.numbers,
            "table": m.table,
            "key_number": m.key,
            "verdict": verdict,
            "notes": m.notes,
            "seeds": list(ctx.seeds),
            "quick": quick,
            "wall_s": round(wall, 2),
            "started": started.isoformat(timespec="seconds"),
            "versions": _versions(),
            "machine": _machine(),
        }
        m.figure(tmp / "figure.png")
        if not (tmp / "figure.png").is_file():
            raise RuntimeError(f"experiment {name!r} drew no figure")
        shutil.rmtree(ctx.work, ignore_errors=True)
        (tmp / "README.md").write_text(render_readme(result), encoding="utf-8")
        (tmp / RESULT_FILE).write_text(
            json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _replace(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``; a previous result there is removed only after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of ``rows`` (the keys of the first row are the columns)."""
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def render_readme(result: Mapping[str, Any]) -> str:
    """The ``README.md`` of one result: claim (Chinese and English), method, table, criterion, verdict."""
    claim = result["claim"]
    machine = result["machine"]
    parts = [
        f"# `{result['name']}`: {result['title']}",
        "",
        f"**Verdict: {result['verdict']}** ({result['key_number']})",
        "",
        f"## The claim (notes, section {claim['section']})",
        "",
        f"> {claim['zh']}",
        "",
        f"{claim['en']}",
        "",
        "## Method",
        "",
        result["method"],
        "",
        "## Criterion (fixed before the run)",
        "",
        result["criterion"],
        "",
        "## Measured",
        "",
        markdown_table(result["table"]),
        "",
        "![figure](figure.png)",
        "",
    ]
    if result.get("notes"):
        parts += ["## Notes", "", *[f"- {n}" for n in result["notes"]], ""]
    seeds = ", ".join(str(s) for s in result["seeds"])
    parts += [
        "## Run",
        "",
        f"`nnatlas experiment run {result['name']}{' --quick' if result['quick'] else ''} "
        f"--seeds {len(result['seeds'])}` (seeds {seeds}) in {result['wall_s']:.1f} s on "
        f"{machine['processor']}, {machine['cpu_count']} CPUs, {machine['torch_threads']} torch thread(s)"
        f"{', ' + machine['cuda'] if machine.get('cuda') else ''}; "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
        + ".",
        "",
    ]
    return "\n".join(parts)


def seeded(seed: int) -> None:
    """Seed torch, numpy and random for one repetition."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_results(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``result.json`` of every experiment under ``folder``, in the registry's order (results of
    experiments no longer registered come last, by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder of experiment results")
    found = {}
    for path in sorted(folder.glob(f"*/{RESULT_FILE}")):
        try:
            found[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{str(path)!r} is not a readable result: {e}") from None
    order = {n: i for i, n in enumerate(_EXPERIMENTS)}
    return [found[n] for n in sorted(found, key=lambda n: (order.get(n, len(order)), n))]


def summary_table(results: Sequence[Mapping[str, Any]], *, link: str | None = None) -> str:
    """A Markdown table of results: experiment, claim, section, verdict, key number, seeds, wall time.
    ``link``: a folder prefix to link each name to its ``README.md`` (e.g. ``docs/experiments``)."""
    rows = []
    for r in results:
        name = f"[`{r['name']}`]({link}/{r['name']}/README.md)" if link else f"`{r['name']}`"
        rows.append(
            {
                "experiment": name,
                "claim": r["title"],
                "notes": r["claim"]["section"],
                "verdict": f"**{r['verdict']}**",
                "key number": r["key_number"],
                "seeds": len(r["seeds"]),
                "wall (s)": f"{r['wall_s']:.1f}",
            }
        )
    return markdown_table(rows)
