"""Plots and reports of what analysis/ and engine/ produce."""

from nnatlas.viz.curves import plot_curves

__all__ = ["plot_curves"]
