"""Names of the engine's choices, importable without torch (the CLI builds its parser from them)."""

OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "constant")
