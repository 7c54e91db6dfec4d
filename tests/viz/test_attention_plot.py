"""Attention heat maps: one panel per head, labels checked against the weights' shape."""

import matplotlib.image
import pytest
import torch

from nnatlas.viz import plot_attention_heads


def test_plot_attention_heads_writes_a_png_and_checks_shapes(tmp_path):
    weights = torch.softmax(torch.randn(3, 4, 5), dim=-1)
    path = tmp_path / "heads.png"
    plot_attention_heads(weights, path, query_labels=list("abcd"), key_labels=list("vwxyz"), title="t")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[1] > image.shape[0]  # three panels side by side
    with pytest.raises(ValueError, match="key_labels must have 5 entries; got 4"):
        plot_attention_heads(weights, path, key_labels=list("vwxy"))
    with pytest.raises(ValueError, match=r"\(heads, queries, keys\)"):
        plot_attention_heads(weights[0], path)
