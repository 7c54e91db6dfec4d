"""ERFNet (Romera et al. 2018): the layer table and parameter count of the authors' PyTorch code
(Eromera/erfnet_pytorch, train/erfnet.py), counted by formula here, and the output sizes."""

import pytest
import torch

from nnatlas.analysis import count_parameters
from nnatlas.layers import ERFDownsampler, ERFNonBottleneck1D, ERFUpsampler
from nnatlas.models import create_model


def _nb1d(w: int) -> int:  # four factorised 3x1 / 1x3 convolutions with bias, two batch norms
    return 4 * (3 * w * w + w) + 2 * 2 * w


def _down(i: int, o: int) -> int:  # 3x3 stride-2 convolution to o - i channels, batch norm of o
    return (o - i) * (9 * i + 1) + 2 * o


def _up(i: int, o: int) -> int:  # 3x3 transposed convolution, batch norm
    return 9 * i * o + o + 2 * o


def _authors_count(k: int, encoder_classifier: bool) -> int:
    encoder = _down(3, 16) + _down(16, 64) + 5 * _nb1d(64) + _down(64, 128) + 8 * _nb1d(128)
    decoder = _up(128, 64) + 2 * _nb1d(64) + _up(64, 16) + 2 * _nb1d(16) + (16 * k * 4 + k)
    return encoder + decoder + (128 * k + k if encoder_classifier else 0)


def test_parameter_count_for_20_classes():
    # The authors' Net(20) holds the encoder's classifier too: 2,066,836 ("2.07M"); without it 2,064,256.
    assert _authors_count(20, True) == 2_066_836
    assert count_parameters(create_model("erfnet", num_classes=20, aux_loss=True)) == 2_066_836
    assert count_parameters(create_model("erfnet", num_classes=20)) == _authors_count(20, False) == 2_064_256


def test_layers_follow_the_authors_table():
    model = create_model("erfnet", num_classes=20, aux_loss=True)
    enc = model.encoder.layers
    assert isinstance(model.encoder.initial_block, ERFDownsampler)
    assert isinstance(enc[0], ERFDownsampler) and isinstance(enc[6], ERFDownsampler)
    assert [b.conv3x1_2.dilation[0] for b in enc[1:6]] == [1] * 5
    assert [b.conv3x1_2.dilation[0] for b in enc[7:]] == [2, 4, 8, 16] * 2
    assert [b.dropout.p for b in enc[1:6]] == [0.03] * 5 and [b.dropout.p for b in enc[7:]] == [0.3] * 8
    dec = model.decoder.layers
    assert [type(m) for m in dec] == [
        ERFUpsampler,
        *[ERFNonBottleneck1D] * 2,
        ERFUpsampler,
        *[ERFNonBottleneck1D] * 2,
    ]
    assert model.decoder.output_conv.kernel_size == (2, 2) and model.decoder.output_conv.stride == (2, 2)
    # The authors' state_dict keys (Net -> encoder / decoder -> initial_block, layers.<i>, output_conv).
    keys = set(model.state_dict())
    assert {
        "encoder.initial_block.conv.weight",
        "encoder.layers.14.conv1x3_2.bias",
        "encoder.output_conv.weight",
    } <= keys
    assert {
        "decoder.layers.0.conv.weight",
        "decoder.layers.5.bn2.running_var",
        "decoder.output_conv.bias",
    } <= keys
    assert len(enc) == 15 and len(dec) == 6


@pytest.mark.parametrize(("h", "w"), [(32, 64), (33, 50), (1, 7)])
def test_output_size_and_aux(h, w):
    model = create_model("erfnet", num_classes=4, aux_loss=True).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, h, w))
    assert out["out"].shape == out["aux"].shape == (2, 4, h, w)


def test_sizes_that_are_multiples_of_8_are_not_padded():
    model = create_model("erfnet", num_classes=3).eval()
    x = torch.randn(1, 3, 24, 40)
    with torch.no_grad():
        expected = model.decoder(model.encoder(x))
        torch.testing.assert_close(model(x)["out"], expected)
        # Other sizes: zero-padded to 32 x 48, the output cropped back.
        y = torch.randn(1, 3, 27, 41)
        padded = torch.nn.functional.pad(y, (0, 7, 0, 5))
        torch.testing.assert_close(model(y)["out"], model.decoder(model.encoder(padded))[..., :27, :41])


def test_bad_in_channels():
    with pytest.raises(ValueError, match="makes 16 channels; got in_channels=16"):
        create_model("erfnet", in_channels=16)
