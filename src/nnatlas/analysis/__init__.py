"""Instruments for ANY ``nn.Module``: parameters, MACs/FLOPs, shapes, receptive fields, gradient flow."""

from nnatlas.analysis._trace import ShapeError
from nnatlas.analysis.arithmetic import conv_output_size, conv_transpose_output_size, pool_output_size
from nnatlas.analysis.erf import EffectiveReceptiveField, effective_receptive_field
from nnatlas.analysis.macs import count_op
from nnatlas.analysis.params import count_parameters
from nnatlas.analysis.receptive_field import LayerField, ReceptiveField, receptive_field
from nnatlas.analysis.summary import LayerRow, Summary, summary

__all__ = [
    "EffectiveReceptiveField",
    "LayerField",
    "LayerRow",
    "ReceptiveField",
    "ShapeError",
    "Summary",
    "conv_output_size",
    "conv_transpose_output_size",
    "count_op",
    "count_parameters",
    "effective_receptive_field",
    "pool_output_size",
    "receptive_field",
    "summary",
]
