"""U-Net (Ronneberger et al. 2015): the paper's parameter count and tile sizes, the overlap-tile strategy
against numpy's mirror padding, the padded variant, and a zoo ResNet as encoder."""

import numpy as np
import pytest
import torch

from nnatlas.analysis import count_parameters, receptive_field
from nnatlas.models import create_model
from nnatlas.models.classification import ResNet
from nnatlas.models.segmentation.unet import valid_output_size


def _paper_count(c_in: int = 1, k: int = 2) -> int:
    """Two 3x3 convolutions (with bias) per level, 2x2 up-convolutions halving the channels, 1x1 head."""

    def double(a, b):
        return 9 * a * b + b + 9 * b * b + b

    widths = [64, 128, 256, 512, 1024]
    n = double(c_in, 64) + sum(double(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
    n += sum(4 * b * (b // 2) + b // 2 + double(b, b // 2) for b in widths[1:])
    return n + 64 * k + k


def test_paper_network_has_31_030_658_parameters():
    with torch.device("meta"):
        model = create_model("unet", in_channels=1, num_classes=2)
    assert count_parameters(model) == _paper_count() == 31_030_658


def test_paper_tile_572_gives_388():
    with torch.device("meta"):
        model = create_model("unet", in_channels=1, num_classes=2, overlap_tile=False).eval()
        assert model(torch.empty(1, 1, 572, 572, device="meta"))["out"].shape == (1, 2, 388, 388)
    assert valid_output_size(572) == 388 and valid_output_size(573) is None and valid_output_size(188) == 4
    assert model.min_size == 188


def test_overlap_tile_mirrors_the_context_and_crops_to_the_image():
    # The paper's Fig. 2: the prediction of an image is the bare network on the image mirrored outwards.
    # Reference: numpy's "reflect" padding (which reflects again where the padding exceeds the image).
    model = create_model("unet", in_channels=2, num_classes=3, base_channels=2, depth=2).eval()
    bare = create_model("unet", in_channels=2, num_classes=3, base_channels=2, depth=2, overlap_tile=False)
    bare.load_state_dict(model.state_dict())
    bare.eval()
    # depth 2: 40 pixels lost (20 per side); tiles are sizes whose pools see even sizes.
    for h, w in [(5, 9), (30, 31), (1, 12)]:
        x = torch.randn(1, 2, h, w)
        th = next(t for t in range(h + 40, h + 60) if valid_output_size(t, 2))
        tw = next(t for t in range(w + 40, w + 60) if valid_output_size(t, 2))
        mode = "edge" if 1 in (h, w) else "reflect"  # a single row or column cannot be reflected
        tile = np.pad(x.numpy(), ((0, 0), (0, 0), (20, th - h - 20), (20, tw - w - 20)), mode=mode)
        with torch.no_grad():
            out = model(x)["out"]
            ref = bare(torch.from_numpy(tile))["out"][..., :h, :w]
        assert out.shape == (1, 3, h, w)
        torch.testing.assert_close(out, ref)


def test_unpadded_output_pixel_is_centred_92_pixels_into_the_tile():
    # Receptive field of the bare network (analysis toolkit): averaged over one period of the
    # up-convolutions' phases, output pixel j is centred on input pixel j + 92 (184 lost pixels / 2).
    with torch.device("meta"):
        model = create_model("unet", in_channels=1, num_classes=2, overlap_tile=False).eval()
    f = receptive_field(model, (1, 1, 572, 572)).final
    period = len(f.windows[0])
    assert period == 16
    assert sum(sum(f.interval((j, j))[0]) / 2 - j for j in range(period)) / period == 92


def test_padded_variant_keeps_any_size_with_batch_norm():
    model = create_model("unet", padding=True, base_channels=8, num_classes=4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is None for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    for h, w in [(16, 16), (17, 23), (64, 64), (37, 50)]:
        assert model(torch.randn(2, 3, h, w))["out"].shape == (2, 4, h, w)
    with pytest.raises(ValueError, match="unet needs inputs of at least 16x16 pixels; got 15x40"):
        model(torch.randn(2, 3, 15, 40))


def test_width_scales_every_level():
    # Every convolution's weights scale with width^2 (except the first and the head): 1/4 at half width.
    with torch.device("meta"):
        half = create_model("unet", in_channels=1, num_classes=2, base_channels=32)
    assert abs(count_parameters(half) / 31_030_658 - 0.25) < 0.001


def test_bare_network_rejects_a_tile_it_cannot_pool():
    model = create_model("unet", base_channels=2, depth=2, overlap_tile=False, num_classes=2)
    with pytest.raises(ValueError, match="valid tile size.*got 45x44"):
        model(torch.randn(1, 3, 45, 44))


def test_resnet_encoder():
    model = create_model("unet", backbone="resnet18", num_classes=3)
    assert isinstance(model.backbone, ResNet) and not any(
        k.startswith("backbone.fc") for k in model.state_dict()
    )
    for h, w in [(1, 1), (32, 32), (45, 70)]:
        assert model(torch.randn(2, 3, h, w))["out"].shape == (2, 3, h, w)
    # The skips are the stem and layer1..layer3 (64, 64, 128, 256 channels for ResNet-18).
    assert [up.skip_channels for up in model.decoder] == [256, 128, 64, 64, 0]


def test_options_that_do_not_fit_together_are_rejected():
    with pytest.raises(ValueError, match="got backbone='resnet18' and base_channels=16"):
        create_model("unet", backbone="resnet18", base_channels=16)
    with pytest.raises(ValueError, match="belong to a backbone encoder"):
        create_model("unet", weights_backbone="torchvision")
    with pytest.raises(ValueError, match="depth must be an int >= 1"):
        create_model("unet", depth=0)
