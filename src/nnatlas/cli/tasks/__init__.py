"""The tasks of ``nnatlas train TASK``, one recipe file each, registered in the order they are listed."""

from nnatlas.cli.tasks import classification, segmentation, seq2seq  # noqa: F401  (each registers its recipe)
from nnatlas.cli.tasks.base import Built, Recipe, get_recipe, list_recipes, register_recipe

__all__ = ["Built", "Recipe", "get_recipe", "list_recipes", "register_recipe"]
