"""Feature-map grids, conv filters and receptive fields over an image: real PNGs of the expected layout."""

import matplotlib.image
import pytest
import torch
from torch import nn

from nnatlas.analysis import effective_receptive_field, receptive_field
from nnatlas.viz import plot_feature_maps, plot_filters, plot_receptive_fields_on_image


def _png(path):
    assert path.read_bytes()[:4] == b"\x89PNG"
    return matplotlib.image.imread(path)


def test_feature_maps_grid_one_row_per_layer(tmp_path):
    maps = {"stem": torch.randn(8, 16, 16), "stage1": torch.randn(1, 32, 8, 8), "flat": torch.zeros(3, 4, 4)}
    out = tmp_path / "f.png"
    plot_feature_maps(maps, out, channels=6, title="three layers")
    wide = _png(out)
    plot_feature_maps({"stem": maps["stem"]}, tmp_path / "one.png", channels=6)
    one = _png(tmp_path / "one.png")
    assert wide.shape[0] > 2 * one.shape[0]  # three rows against one
    plot_feature_maps({"stem": maps["stem"]}, tmp_path / "two.png", channels=2)
    assert _png(tmp_path / "two.png").shape[1] < one.shape[1]  # two columns against six
    with pytest.raises(ValueError, match=r"feature map 'v' must be \(C, H, W\).*got shape \(10,\)"):
        plot_feature_maps({"v": torch.randn(10)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="channels must be a positive int; got 0"):
        plot_feature_maps(maps, tmp_path / "x.png", channels=0)
    with pytest.raises(ValueError, match="at least one layer"):
        plot_feature_maps({}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_filters_rgb_and_grey(tmp_path):
    rgb = torch.zeros(4, 3, 5, 5)
    rgb[0, 0] = 1.0  # a pure red filter
    plot_filters(rgb, tmp_path / "rgb.png", title="rgb")
    image = _png(tmp_path / "rgb.png")
    red = (image[..., 0] > 0.9) & (image[..., 1] < 0.1) & (image[..., 2] < 0.1)
    assert red.sum() > 20  # the red filter is drawn in colour
    plot_filters(torch.randn(10, 2, 3, 3), tmp_path / "grey.png")
    grey = _png(tmp_path / "grey.png")
    assert grey.ndim == 3
    with pytest.raises(ValueError, match=r"weight must be a conv kernel \(O, I, kh, kw\); got \(4, 3\)"):
        plot_filters(torch.randn(4, 3), tmp_path / "x.png")


def test_receptive_fields_over_an_image(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1))
    rf = receptive_field(model, (1, 3, 24, 24))
    assert rf.layers["2"].size == (5, 5)
    erf = effective_receptive_field(model, (1, 3, 24, 24), "2", samples=2)
    image = torch.rand(3, 24, 24)
    out = tmp_path / "rf.png"
    plot_receptive_fields_on_image(image, {"0": rf.layers["0"], "2": rf.layers["2"]}, erf, out, title="tiny")
    two = _png(out)
    plot_receptive_fields_on_image(image, {"2": rf.layers["2"]}, None, tmp_path / "one.png")
    assert two.shape[1] > 1.5 * _png(tmp_path / "one.png").shape[1]  # the ERF panel beside it
    with pytest.raises(ValueError, match=r"ERF heat map must be the image's size \(12, 12\)"):
        plot_receptive_fields_on_image(torch.rand(3, 12, 12), {}, erf, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"image must be \(3, H, W\)"):
        plot_receptive_fields_on_image(torch.rand(24, 24), {"2": rf.layers["2"]}, None, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
