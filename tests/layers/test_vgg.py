import pytest
import torch
from torchvision.models.vgg import make_layers

from nnatlas.layers import VGGStage


@pytest.mark.parametrize("norm_layer", [None, torch.nn.BatchNorm2d])
def test_stage_has_torchvisions_layers_in_order_and_agrees(norm_layer):
    # torchvision's make_layers for one stage of two 64-channel convolutions is the reference.
    ref = make_layers([64, 64, "M"], batch_norm=norm_layer is not None).eval()
    ours = VGGStage(3, 64, 2, norm_layer=norm_layer).eval()
    assert [type(m) for m in ours] == [type(m) for m in ref]
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))
    assert ours(x).shape == (2, 64, 4, 5)


def test_stage_without_pool_keeps_the_size_and_stacked_3x3_see_5x5():
    stage = VGGStage(1, 1, 2, pool=False)
    with torch.no_grad():
        for m in stage:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
        x = torch.zeros(1, 1, 11, 11)
        x[0, 0, 5, 5] = 1.0
        y = stage(x)
    # Simonyan & Zisserman section 2.3: two stacked 3x3 convolutions have a 5x5 receptive field.
    assert y.shape == x.shape
    nz = y[0, 0].nonzero()
    assert (nz.min(0).values.tolist(), nz.max(0).values.tolist()) == ([3, 3], [7, 7])


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_convs must be a positive int; got 0"):
        VGGStage(3, 64, 0)
    with pytest.raises(ValueError, match="out_channels must be a positive int"):
        VGGStage(3, -1, 1)
