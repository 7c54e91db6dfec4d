"""The tasks of ``nnatlas train TASK``, one recipe file each, registered in the order they are listed."""

from nnatlas.cli.tasks import (  # noqa: F401  (each module registers its recipe)
    classification,
    detection,
    segmentation,
    seq2seq,
)
from nnatlas.cli.tasks.base import Built, Recipe, get_recipe, list_recipes, register_recipe

__all__ = ["Built", "Recipe", "get_recipe", "list_recipes", "register_recipe"]
