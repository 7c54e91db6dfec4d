"""Every public symbol has a docstring (a constant: a ``#:`` comment), and every public module or function of the model-building
packages that takes tensors says which shapes. "Public" is what the API reference documents: the
``__all__`` of each package, and of each model module. ``make docs`` enforces the first half too (a
symbol without a docstring fails the Sphinx build); this test keeps it in ``make test``."""

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docs" / "_ext"))
from docstring_check import attr_doc  # noqa: E402  (the lookup the docs build uses)

PACKAGES = [
    "nnatlas.layers",
    "nnatlas.models",
    "nnatlas.analysis",
    "nnatlas.data",
    "nnatlas.engine",
    "nnatlas.viz",
    "nnatlas.experiments",
]
MODEL_MODULES = [
    f"nnatlas.models.{task}.{name}"
    for task, names in {
        "classification": "alexnet cifar_resnet googlenet inception inception_v2 resnet vgg",
        "segmentation": "deeplab erfnet fcn unet",
        "detection": "detr rcnn rfcn ssd yolo",
        "seq2seq": "lstm transformer",
    }.items()
    for name in names.split()
]
# a shape as the docstrings write them: (B, C, H, W), (B, T), (N, 4), (*, E), (L, N, E) ...
SHAPE = re.compile(r"\((?:\*|[A-Z][\w']*|\d+)(?:, ?(?:\*|[A-Z_][\w']*|\d+|\.\.\.))+\)|``\([A-Z]")


def _public():
    for modname in PACKAGES + MODEL_MODULES:
        module = importlib.import_module(modname)
        assert hasattr(module, "__all__"), f"{modname} has no __all__"
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            yield modname, name, obj


PUBLIC = list(_public())


def test_the_public_surface_is_large():
    assert len(PUBLIC) > 250


@pytest.mark.parametrize(("modname", "name", "obj"), PUBLIC, ids=[f"{m}.{n}" for m, n, _ in PUBLIC])
def test_public_symbol_has_a_docstring(modname, name, obj):
    if inspect.isclass(obj) or inspect.isfunction(obj) or callable(obj) and hasattr(obj, "__wrapped__"):
        assert (obj.__doc__ or "").strip(), f"{modname}.{name} has no docstring"
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or attr in ("forward", "extra_repr", "reset_parameters"):
                    continue
                if inspect.isfunction(member) or isinstance(member, (property, classmethod, staticmethod)):
                    target = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                    assert (target.__doc__ or "").strip(), f"{modname}.{name}.{attr} has no docstring"
    else:
        assert attr_doc(modname, name), f"{modname}.{name} has no #: comment"


TENSOR_TAKERS = [
    (m, n, o)
    for m, n, o in PUBLIC
    if m.startswith(("nnatlas.layers", "nnatlas.models."))
    and (inspect.isclass(o) and issubclass(o, nn.Module))
]


@pytest.mark.parametrize(
    ("modname", "name", "cls"), TENSOR_TAKERS, ids=[f"{m}.{n}" for m, n, _ in TENSOR_TAKERS]
)
def test_modules_state_their_shapes(modname, name, cls):
    text = (cls.__doc__ or "") + ((cls.forward.__doc__ or "") if "forward" in vars(cls) else "")
    assert SHAPE.search(text), f"{modname}.{name}: no (B, C, H, W)-style shape in its docstring"
