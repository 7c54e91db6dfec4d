"""`nnatlas.data.load_image`: skimage.data photographs (shipped with scikit-image), image files read with
PIL, resizing, and one-line errors for what cannot be read."""

import numpy as np
import pytest
import torch
from PIL import Image

from nnatlas.data import SKIMAGE_IMAGES, DataError, load_image


@pytest.mark.parametrize(
    ("name", "shape"), [("astronaut", (512, 512)), ("camera", (512, 512)), ("horse", (328, 400))]
)
def test_skimage_names_give_three_channels_in_unit_range(name, shape):
    import skimage.data

    x = load_image(name)
    assert x.shape == (3, *shape) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.5
    raw = np.asarray(getattr(skimage.data, name)())
    if raw.ndim == 2:  # grey (or binary): the same values in every channel
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
        expected = raw.astype(np.float32) / (255.0 if raw.dtype == np.uint8 else 1.0)
        assert np.allclose(x[0].numpy(), expected)
    else:
        assert np.allclose(x.permute(1, 2, 0).numpy() * 255.0, raw, atol=1e-3)


def test_a_png_file_with_alpha_and_resizing_keep_the_aspect(tmp_path):
    rgba = np.zeros((20, 40, 4), dtype=np.uint8)
    rgba[:, :20] = (255, 0, 0, 255)  # opaque red on the left half
    rgba[:, 20:] = (0, 0, 255, 0)  # transparent on the right: white after compositing
    path = tmp_path / "pic.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    x = load_image(str(path))
    assert x.shape == (3, 20, 40)
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(x[:, 0, -1], torch.ones(3))
    square = load_image(path, size=10)  # short side 20 -> 10, then the centre 10x10 of 10x20
    assert square.shape == (3, 10, 10)
    assert torch.allclose(square[:, :, 0], torch.tensor([1.0, 0.0, 0.0]).view(3, 1).expand(3, 10), atol=0.02)
    assert load_image(path, size=(8, 30)).shape == (3, 8, 30)


def test_unreadable_inputs_are_one_line_data_errors(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    cases = [
        (bad, "broken.png' cannot be decoded as an image"),
        (tmp_path / "missing.jpg", "missing.jpg': no such file"),
        (
            "astronot",
            "unknown skimage.data image (or no such file) 'astronot'; valid choices (closest first): astronaut",
        ),
    ]
    for spec, needle in cases:
        with pytest.raises(DataError) as e:
            load_image(spec)
        assert needle in str(e.value) and "\n" not in str(e.value)
        assert isinstance(e.value, ValueError)
    with pytest.raises(DataError) as e:
        load_image("nosuchpicture")
    assert all(name in str(e.value) for name in SKIMAGE_IMAGES)
    with pytest.raises(ValueError, match="size must be"):
        load_image("camera", size=0)
