"""Sphinx configuration of the nnatlas documentation (``make docs``).

The gallery (``gallery/*.py``) is executed at every build by sphinx-gallery; the API reference comes from
the docstrings through autodoc + napoleon; the model registry table is generated from the registry at
build time (``docs/_ext/registry_table.py``). The build runs with ``-W``: a warning fails it.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import nnatlas  # noqa: E402

project = "nnatlas"
author = "the nnatlas developers"
copyright = "2026, the nnatlas developers"
release = nnatlas.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from _static: the site works offline
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "registry_table",
    "docstring_check",
    "notes_map",
]

# NNATLAS_DOCS_API_ONLY=1 builds the API reference alone (root api/index, no gallery): a quick check of
# docstrings while writing them (``sphinx-build -W -n docs /tmp/api`` takes about 20 s).
API_ONLY = os.environ.get("NNATLAS_DOCS_API_ONLY") == "1"
if API_ONLY:
    extensions.remove("sphinx_gallery.gen_gallery")
    root_doc = "api/index"

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "gallery/*.ipynb", "gallery/*.py", "gallery/*.md5", "gallery/*.zip"]
if API_ONLY:
    exclude_patterns += ["index.md", "zh", "gallery", "guide", "experiments"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
# ref.python: "more than one target for cross-reference 'type'" (a return annotation ``type[...]`` meets
# the ``type`` fields of dataclasses); every other unresolved reference stays an error.
suppress_warnings = ["ref.python"]

# -- autodoc -------------------------------------------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "undoc-members": True,  # shown, and docstring_check fails the build on each one without a docstring
    "show-inheritance": True,
    "member-order": "bysource",
}
# Cross-references into nnatlas must resolve; those into torch, numpy and the standard library are not
# checked (no inventory of theirs is downloaded at build time).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!nnatlas\.).*\..*"),
    # short names of torch and matplotlib classes in annotations, and TypeVars
    (r"py:class", r"(?:nnatlas\..*\.)?(Tensor|Module|Figure|T|P|R)"),
]
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("Arguments", "params_style"), ("Shapes", "notes_style")]
add_module_names = False
python_display_short_literal_types = True

# -- sphinx-gallery ------------------------------------------------------------------------------------
# NNATLAS_DOCS_GALLERY=0 builds the pages without executing the examples (for docstring work).
_execute = os.environ.get("NNATLAS_DOCS_GALLERY", "1") != "0"
sphinx_gallery_conf = {}
if not API_ONLY:
    sphinx_gallery_conf = {
        "examples_dirs": str(HERE.parent / "gallery"),
        "gallery_dirs": "gallery",
        "filename_pattern": r"/plot_",
        "ignore_pattern": r"^_",  # file names: __init__.py, and _committed.py, a helper the pages import
        "within_subsection_order": "FileNameSortKey",
        "plot_gallery": _execute,
        "abort_on_example_error": True,
        "download_all_examples": False,
        "remove_config_comments": True,
        "show_memory": False,
        "min_reported_time": 1,
        "parallel": int(os.environ.get("NNATLAS_DOCS_JOBS", os.cpu_count() or 1)),
        "matplotlib_animations": True,
        "capture_repr": ("_repr_html_", "__repr__"),
        "reset_modules": ("matplotlib", "seaborn"),
    }

# -- HTML ----------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"nnatlas {release}"
html_static_path = ["_static"]
html_css_files = ["nnatlas.css"]
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
