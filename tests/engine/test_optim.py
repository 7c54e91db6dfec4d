import math

import pytest
import torch
from torch import nn

from nnatlas.engine import build_optimizer, build_scheduler, param_groups


def test_weight_decay_skips_norms_and_biases():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    decay, no_decay = param_groups(model, 0.1)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0


def test_tied_parameters_appear_once():
    a = nn.Linear(4, 4)
    model = nn.Sequential(a, a)
    groups = param_groups(model, 0.1)
    assert sum(len(g["params"]) for g in groups) == 2


def test_cosine_with_warmup_matches_closed_form():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(opt, "cosine", total_steps=100, warmup_steps=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    for step in (10, 40, 75, 99):
        assert lrs[step] == pytest.approx(0.5 * (1 + math.cos(math.pi * (step - 10) / 90)))
    assert max(lrs) == pytest.approx(1.0)


def test_cosine_without_warmup_equals_torch_cosine_annealing():
    p1, p2 = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    o1, o2 = torch.optim.SGD([p1], lr=0.5), torch.optim.SGD([p2], lr=0.5)
    s1 = build_scheduler(o1, "cosine", total_steps=50)
    s2 = torch.optim.lr_scheduler.CosineAnnealingLR(o2, T_max=50)
    for _ in range(50):
        assert o1.param_groups[0]["lr"] == pytest.approx(o2.param_groups[0]["lr"], abs=1e-12)
        o1.step()
        o2.step()
        s1.step()
        s2.step()


def test_bad_names():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        build_optimizer(model, "adam", lr=0.1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        build_optimizer(model, "sgd", lr=0)
    with pytest.raises(ValueError, match="scheduler must be one of"):
        build_scheduler(build_optimizer(model, lr=0.1), "linear", total_steps=10)
