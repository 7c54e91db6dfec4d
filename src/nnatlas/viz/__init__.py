"""Plots and reports of what analysis/ and engine/ produce.

Every ``plot_*`` function writes a PNG at ``path``, or, with ``path=None``, returns the open matplotlib
``Figure`` (to show in a notebook or a gallery page, or to draw on)."""

from nnatlas.viz.activations import activation_curves, plot_activation_functions
from nnatlas.viz.animate import ConvAnimation, conv_animation, render_frames, save_animation, save_sheet
from nnatlas.viz.attention import plot_attention_heads
from nnatlas.viz.curves import plot_curves
from nnatlas.viz.erf import plot_erf
from nnatlas.viz.features import plot_feature_maps, plot_filters
from nnatlas.viz.gradients import plot_activation_stats, plot_gradient_flow
from nnatlas.viz.rf_image import plot_receptive_fields_on_image
from nnatlas.viz.style import PALETTE, figure, save

__all__ = [
    "activation_curves",
    "plot_activation_functions",
    "ConvAnimation",
    "conv_animation",
    "render_frames",
    "save_animation",
    "save_sheet",
    "PALETTE",
    "figure",
    "plot_activation_stats",
    "plot_attention_heads",
    "plot_curves",
    "plot_erf",
    "plot_feature_maps",
    "plot_filters",
    "plot_gradient_flow",
    "plot_receptive_fields_on_image",
    "save",
]
