"""Plots and reports of what analysis/ and engine/ produce."""

from nnatlas.viz.attention import plot_attention_heads
from nnatlas.viz.curves import plot_curves

__all__ = ["plot_attention_heads", "plot_curves"]
