"""Instruments for ANY ``nn.Module``: parameters, MACs/FLOPs, shapes, receptive fields, gradient flow."""

from nnatlas.analysis.arithmetic import conv_output_size, conv_transpose_output_size, pool_output_size
from nnatlas.analysis.params import count_parameters

__all__ = ["conv_output_size", "conv_transpose_output_size", "count_parameters", "pool_output_size"]
