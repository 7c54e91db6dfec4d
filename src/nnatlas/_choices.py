"""Names of the engine's and data's choices, importable without torch (the CLI builds its parser from them)."""

OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "constant", "step", "onecycle")
AMP_MODES = ("none", "bf16", "fp16")
AUGMENT_PRESETS = ("none", "basic", "strong")
