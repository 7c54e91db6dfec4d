"""Activations by name against torch.nn / torch.nn.functional, and Swish against its definition.

Reference for Swish: Ramachandran, Zoph & Le 2017, ``x * sigmoid(beta x)``; ``beta = 1`` is SiLU.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnatlas.layers import LocalResponseNorm, Swish, activation_names, get_activation

# name -> (torch class, functional reference): the notes' list (Sigmoid, Tanh, ReLU, LReLU, PReLU, ELU,
# Swish) and relatives
CASES = {
    "sigmoid": (nn.Sigmoid, torch.sigmoid),
    "Logistic": (nn.Sigmoid, torch.sigmoid),
    "tanh": (nn.Tanh, torch.tanh),
    "ReLU": (nn.ReLU, F.relu),
    "relu6": (nn.ReLU6, F.relu6),
    "LReLU": (nn.LeakyReLU, F.leaky_relu),
    "leaky-relu": (nn.LeakyReLU, F.leaky_relu),
    "LeakyReLU": (nn.LeakyReLU, F.leaky_relu),
    "PReLU": (nn.PReLU, lambda x: F.prelu(x, torch.tensor([0.25]))),
    "ELU": (nn.ELU, F.elu),
    "selu": (nn.SELU, F.selu),
    "gelu": (nn.GELU, F.gelu),
    "SiLU": (nn.SiLU, F.silu),
    "Swish": (nn.SiLU, F.silu),
    "mish": (nn.Mish, F.mish),
    "hardswish": (nn.Hardswish, F.hardswish),
    "softplus": (nn.Softplus, F.softplus),
    "identity": (nn.Identity, lambda x: x),
}


@pytest.mark.parametrize("name", CASES)
def test_named_activation_is_torchs_module(name):
    cls, reference = CASES[name]
    act = get_activation(name)
    assert type(act) is cls
    x = torch.randn(3, 4, 5)
    y = act(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, reference(x))


def test_every_listed_name_builds_and_keeps_the_shape():
    x = torch.randn(2, 3, 4, 5)
    for name in activation_names():
        assert get_activation(name).train(False)(x).shape == x.shape, name


def test_keyword_arguments_reach_the_module():
    act = get_activation("leaky_relu", negative_slope=0.2)
    x = torch.randn(100)
    torch.testing.assert_close(act(x), F.leaky_relu(x, 0.2))
    assert get_activation("elu", alpha=0.5).alpha == 0.5
    assert get_activation("prelu", num_parameters=8).weight.shape == (8,)
    assert get_activation("relu") is not get_activation("relu")  # a new module each call


def test_swish_with_beta():
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    torch.testing.assert_close(Swish()(x), F.silu(x))
    torch.testing.assert_close(get_activation("swish", beta=2.0)(x), x * torch.sigmoid(2 * x))
    torch.testing.assert_close(Swish(0.0)(x), x / 2)
    torch.testing.assert_close(Swish(1e3)(x), F.relu(x), atol=1e-3, rtol=0)  # beta -> inf: ReLU
    learnable = get_activation("swish", beta=1.5, learnable=True)
    assert [name for name, _ in learnable.named_parameters()] == ["beta"]
    learnable(torch.randn(10)).sum().backward()
    assert learnable.beta.grad is not None and learnable.beta.grad != 0
    assert "beta" in Swish(1.5).state_dict() and not list(Swish(1.5).parameters())


def test_unknown_name_lists_the_closest_first():
    with pytest.raises(
        ValueError, match=r"^unknown activation 'rleu'; valid choices \(closest first\): relu, "
    ):
        get_activation("rleu")
    with pytest.raises(ValueError, match=r"closest first\): sigmoid, "):
        get_activation("sigmod")


def test_bad_arguments():
    with pytest.raises(TypeError, match="'relu' does not take slope"):
        get_activation("relu", slope=0.1)
    with pytest.raises(TypeError, match="activation name must be a str"):
        get_activation(nn.ReLU)
    with pytest.raises(TypeError, match="beta"):
        Swish("big")


def test_local_response_norm_is_torchs():
    assert LocalResponseNorm is nn.LocalResponseNorm
