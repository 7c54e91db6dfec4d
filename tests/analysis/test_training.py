"""training_cost(): backward MACs against torch's FlopCounterMode and closed forms, memory against closed
forms and against a measurement of a real training step (the CPU allocator's figures through
torch.profiler; torch.cuda.max_memory_allocated on a GPU)."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nnatlas.analysis import count_op, measure_training_memory, summary, training_cost


def test_forward_plus_backward_macs_equal_torch_flop_counter_on_a_real_step():
    # FlopCounterMode counts 2 FLOPs per multiply-add of conv, mm, addmm, bmm and convolution_backward
    # (from its output_mask), forward and backward, which are all the MAC operators of a ResNet
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    with FlopCounterMode(display=False) as fc:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    cost = training_cost(model, inputs=x, optimizer=None)
    assert 2 * (cost.forward_macs + cost.backward_macs) == fc.get_total_flops()
    assert cost.forward_macs == summary(model, inputs=x).total_macs
    assert all(p.grad is None for p in model.parameters())  # the model is left as it was


def test_backward_follows_what_needs_a_gradient_not_a_fixed_factor():
    # the first convolution's input needs no gradient: only the weight gradient, 1x its forward;
    # a frozen convolution in the middle still passes the gradient to its input: 1x; the others 2x
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    model[2].requires_grad_(False)
    with torch.device("meta"):
        meta = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    meta[2].requires_grad_(False)
    for m in (model, meta):
        cost = training_cost(m, (2, 3, 16, 16), optimizer=None)
        rows = {r.name: r for r in cost.rows}
        assert rows["0"].backward_macs == rows["0"].forward_macs
        assert rows["2"].backward_macs == rows["2"].forward_macs
        assert rows["4"].backward_macs == 2 * rows["4"].forward_macs
        assert cost.backward_by_op["aten.convolution_backward"][0] == cost.backward_macs
        assert rows["1"].backward_flops == 8 * 14 * 14 * 2  # threshold_backward: one per element


class Attention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_attention_backward_counts_what_runs():
    # at these sizes the CPU runs the math path with gradients: Q K^T and A V forward, four products back
    # (dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q), all as bmm
    b, h, l, s, e, ev = 2, 3, 8, 10, 16, 12
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for n, d in [(l, e), (s, e), (s, ev)])
    cost = training_cost(Attention(), inputs=(q, k, v), optimizer=None)
    assert cost.forward_macs == b * h * l * s * (e + ev)
    assert cost.backward_macs == cost.backward_by_op["aten.bmm"][0] == b * h * l * s * (2 * e + 2 * ev)


def test_fused_attention_backward_kernels_count_five_products():
    # the fused kernels do not keep P: they recompute Q K^T, then dP, dV, dQ, dK (torch.utils.flop_counter
    # counts the same five); the CPU flash kernel and the CUDA memory-efficient one, on the meta device
    aten = torch.ops.aten
    b, h, l, s, e = 2, 3, 8, 10, 16
    q, k, v = (torch.randn(b, h, n, e, device="meta") for n in (l, s, s))
    out, lse = aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False)
    flash = aten._scaled_dot_product_flash_attention_for_cpu_backward.default
    args = (torch.empty_like(out), q, k, v, out, lse, 0.0, False)
    assert count_op(flash, args, {}, flash(*args))[0] == b * h * l * s * 5 * e
    seed = torch.empty((), dtype=torch.long, device="meta")
    efficient = aten._scaled_dot_product_efficient_attention_backward.default
    args = (
        out,
        q,
        k,
        v,
        torch.empty(0, device="meta"),
        out,
        lse[..., :l],
        seed,
        seed,
        0.0,
        [True] * 3 + [False],
    )
    assert count_op(efficient, args, {}, efficient(*args))[0] == b * h * l * s * 5 * e


def test_lstm_backward_is_twice_its_forward():
    # the CPU runs an LSTM as one mkldnn kernel forward and one backward (input and weight gradients)
    cost = training_cost(nn.LSTM(32, 64), (10, 2, 32), optimizer=None)
    assert cost.forward_macs == 10 * 2 * 4 * 64 * (32 + 64)
    assert cost.backward_macs == 2 * cost.forward_macs
    assert "aten.mkldnn_rnn_layer_backward" in cost.backward_by_op


def test_memory_closed_forms_of_a_small_mlp():
    # Linear(in, h) -> ReLU -> Linear(h, out): autograd saves the ReLU output (for its backward and as the
    # second linear's input, one storage) and the first linear's input (the model input: not an
    # activation); parameters, gradients and optimizer state follow the parameter count
    b, i, h, o = 16, 32, 64, 10
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))
    n = i * h + h + h * o + o
    for optimizer, slots, steps in [("sgd", 0, 0), ("sgd_momentum", 1, 0), ("adamw", 2, 4), ("adam", 2, 4)]:
        m = training_cost(model, (b, i), optimizer=optimizer).memory
        assert (m.parameters, m.gradients, m.inputs) == (4 * n, 4 * n, 4 * b * i)
        assert m.optimizer_state == slots * 4 * n + steps * len(list(model.parameters()))
        assert m.activations == 4 * b * h
        assert m.peak >= m.parameters + m.gradients + m.optimizer_state + m.inputs
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        training_cost(model, (b, i), optimizer="lion")


def test_training_cost_leaves_batch_norm_statistics_and_flags_as_they_were():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cost = training_cost(model, (2, 3, 8, 8), optimizer="sgd_momentum")
    assert not any(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    text = str(cost)
    assert "backward MACs" in text and "peak" in text and cost.to_dict()["memory"]["peak"] == cost.memory.peak


# One steady-state step measured on real CPU tensors: the allocator's running total from torch.profiler,
# on top of the bytes alive when the step starts. Batch 2 at 112 px (ResNet-50) and 64 px (ViT-B/16,
# 4x4 patches), which keeps each case to a few seconds on a laptop CPU; the estimate runs on meta.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "size", "kwargs", "optimizer"),
    [("resnet50", 112, {}, "adamw"), ("vit_b_16", 64, {"image_size": 64}, "sgd_momentum")],
    ids=["resnet50-adamw", "vit_b_16-sgd_momentum"],
)
def test_peak_estimate_is_within_ten_percent_of_a_measured_cpu_step(name, size, kwargs, optimizer):
    with torch.device("meta"):
        meta = torchvision.models.get_model(name, **kwargs)
    estimate = training_cost(meta, (2, 3, size, size), optimizer=optimizer).memory
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, **kwargs)
    measured = measure_training_memory(model, (2, 3, size, size), optimizer=optimizer)
    assert measured.method == "torch.profiler CPU allocator events"
    assert abs(estimate.peak - measured.peak) <= 0.10 * measured.peak, (estimate, measured)
    # the part that changes during the step (activations, gradients, temporaries) within 10% as well
    steady = estimate.parameters + estimate.buffers + estimate.optimizer_state + estimate.inputs
    assert measured.baseline == pytest.approx(steady, rel=0.01)
    assert abs((estimate.peak - steady) - (measured.peak - measured.baseline)) <= 0.10 * (
        measured.peak - measured.baseline
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["resnet50", "vit_b_16"])
def test_peak_estimate_is_within_ten_percent_of_cuda_max_memory_allocated(name):
    with torch.device("meta"):
        meta = torchvision.models.get_model(name)
    estimate = training_cost(meta, (8, 3, 224, 224), optimizer="adamw", foreach=True).memory
    model = torchvision.models.get_model(name).cuda()
    measured = measure_training_memory(model, (8, 3, 224, 224), optimizer="adamw")
    assert measured.method == "torch.cuda.max_memory_allocated"
    assert abs(estimate.peak - measured.peak) <= 0.10 * measured.peak, (estimate, measured)
