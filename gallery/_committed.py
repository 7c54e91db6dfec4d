"""The full experiment runs committed under ``docs/experiments``, for the gallery pages that show them.

sphinx-gallery runs each page with this folder on ``sys.path``, as ``python gallery/plot_NN_....py``
does; the pages import from here instead of each searching for the folder.
"""

from pathlib import Path

from nnatlas.experiments import load_results

#: ``docs/experiments`` of this checkout: ``NAME/result.json``, ``figure.png`` and ``README.md`` per run.
FOLDER = Path(__file__).resolve().parents[1] / "docs" / "experiments"


def committed_results(*names: str) -> list[dict]:
    """The ``result.json`` of each named experiment, in the order asked."""
    results = {r["name"]: r for r in load_results(FOLDER)}
    return [results[name] for name in names]
