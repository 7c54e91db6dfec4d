"""Experiments: every claim of the course notes measured, with numbers, a figure and a verdict.

``nnatlas experiment list`` names them; ``nnatlas experiment run NAME`` writes ``result.json``,
``figure.png`` and ``README.md`` (see :mod:`nnatlas.experiments.base`). Importing this package registers
every experiment, in the order of the notes. Only the command line imports this package.
"""

from __future__ import annotations

import importlib

from nnatlas.experiments.base import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    VERDICTS,
    Context,
    Experiment,
    Measurement,
    get_experiment,
    list_experiments,
    load_results,
    majority,
    register_experiment,
    run_experiment,
    spread,
    summary_table,
)

#: The experiment modules, in the order of the notes' sections (registration order is listing order).
MODULES = (
    "conv_vs_fc",
    "stacked_3x3",
    "dilation_rf",
    "transposed_conv",
    "vgg_3x3_vs_5x5",
    "inception_bottleneck",
    "resnet_degradation",
    "batchnorm",
    "gap_vs_fc",
    "activations",
    "relu_sparsity",
    "exploding_gradients",
    "invariance",
    "attention",
    "layernorm_vs_batchnorm",
    "lstm_vs_transformer",
    "pooling",
    "deformable",
    "aux_heads",
)

for _m in MODULES:
    importlib.import_module(f"nnatlas.experiments.{_m}")

__all__ = [
    "INCONCLUSIVE",
    "MODULES",
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
