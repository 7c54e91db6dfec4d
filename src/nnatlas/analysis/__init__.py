"""Instruments for ANY ``nn.Module``: parameters, MACs/FLOPs, shapes, receptive fields, gradient flow,
activation statistics, training cost."""

from nnatlas.analysis._trace import MetaDeviceError, ShapeError
from nnatlas.analysis.arithmetic import conv_output_size, conv_transpose_output_size, pool_output_size
from nnatlas.analysis.erf import EffectiveReceptiveField, effective_receptive_field
from nnatlas.analysis.gradients import (
    ActivationRow,
    ActivationStats,
    GradientFlow,
    GradientRow,
    activation_stats,
    gradient_flow,
)
from nnatlas.analysis.macs import CounterHandle, count_op, register_module_counter, register_op_counter
from nnatlas.analysis.meta import build_on_meta
from nnatlas.analysis.params import count_parameters
from nnatlas.analysis.receptive_field import LayerField, ReceptiveField, receptive_field
from nnatlas.analysis.summary import LayerRow, Summary, summary
from nnatlas.analysis.training import (
    MeasuredMemory,
    TrainingCost,
    TrainingMemory,
    TrainingRow,
    measure_training_memory,
    training_cost,
)

__all__ = [
    "ActivationRow",
    "ActivationStats",
    "GradientFlow",
    "GradientRow",
    "activation_stats",
    "gradient_flow",
    "CounterHandle",
    "EffectiveReceptiveField",
    "LayerField",
    "LayerRow",
    "MeasuredMemory",
    "MetaDeviceError",
    "ReceptiveField",
    "ShapeError",
    "Summary",
    "TrainingCost",
    "TrainingMemory",
    "TrainingRow",
    "build_on_meta",
    "conv_output_size",
    "conv_transpose_output_size",
    "count_op",
    "count_parameters",
    "effective_receptive_field",
    "measure_training_memory",
    "pool_output_size",
    "receptive_field",
    "register_module_counter",
    "register_op_counter",
    "summary",
    "training_cost",
]
