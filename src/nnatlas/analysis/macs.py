"""MACs and FLOPs of single ATen operators: the formulas behind :func:`nnatlas.analysis.summary`.

The counter sees the operators PyTorch actually runs (through a ``TorchDispatchMode``), so it counts what
a model computes whatever Python code produced it: functional calls, ``einsum``, fused attention kernels.

Conventions
-----------
- **1 MAC = 2 FLOPs.** A multiply-accumulate ``a += x * w`` is one MAC; every MAC-based operator reports
  ``flops = 2 * macs`` plus one FLOP per output element for an added bias.
- **MACs** are counted for convolution, linear layers and matrix products, and attention:

  - convolution ``(B, C_in, *S_in) -> (B, C_out, *S_out)``, kernel ``K`` (product of its sizes), ``g`` groups:
    ``B * C_out * prod(S_out) * C_in/g * K``; dilation changes ``S_out`` only.
  - transposed convolution: every *input* element is multiplied by a ``C_out/g x K`` slice of the kernel
    and scattered into the output, so ``MACs = B * C_in * prod(S_in) * C_out/g * K`` (counting from the
    output size, as some tools do, is wrong by up to ``stride**2``).
  - ``mm (m, k) @ (k, n)``: ``m * k * n``; ``bmm`` times the batch; ``nn.Linear`` and ``einsum`` arrive as
    these.
  - attention ``softmax(Q K^T / sqrt(E)) V`` with ``Q (B, H, L, E)``, ``K (B, H, S, E)``, ``V (B, H, S, Ev)``:
    ``B * H * L * S * (E + Ev)`` for the fused kernels of ``F.scaled_dot_product_attention`` (flash,
    memory-efficient, cuDNN, CPU flash); the math path arrives as ``bmm`` and gives the same number.
    The full ``L x S`` products are counted **even under a causal or other mask**: the kernels compute
    (or skip only in whole blocks) those products, and a count independent of the mask is comparable
    across backends. The fused fast path of ``nn.MultiheadAttention`` (``_native_multi_head_attention``)
    and of ``nn.TransformerEncoderLayer`` (``_transformer_encoder_layer_fwd``) is counted as its parts:
    the Q/K/V and output projections, ``Q K^T``, ``A V`` (and the two feed-forward matrices). With a
    padding mask that fast path packs the batch into a nested tensor and computes only the real tokens;
    the count follows what runs (per sample, at its real length).

- **FLOPs without MACs**: normalisation (batch, layer, group, instance norm) 4 FLOPs per element (subtract
  the mean, divide by the deviation, scale, shift; 2 more per element in training for the statistics);
  activations and element-wise arithmetic 1 FLOP per output element (a transcendental such as ``exp`` or
  ``tanh`` counts as one); softmax 3 per element (exponent, sum, divide); pooling one FLOP per window
  element of each output (a comparison or an addition), adaptive and global pooling one per input element;
  reductions (``mean``, ``sum``) one per input element.
- Data movement (views, copies, concatenation, padding, indexing, nearest-neighbour upsampling) costs 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

aten = torch.ops.aten

Counter = Callable[[dict[str, Any], Any], tuple[int, int]]


def bind(func: Any, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments of an ATen call by their schema names, defaults filled in."""
    bound: dict[str, Any] = {}
    for i, a in enumerate(func._schema.arguments):
        if i < len(args):
            bound[a.name] = args[i]
        elif a.name in kwargs:
            bound[a.name] = kwargs[a.name]
        elif a.has_default_value():
            bound[a.name] = a.default_value
        else:
            bound[a.name] = None
    return bound


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _conv(b: dict[str, Any], out: Any) -> tuple[int, int]:
    x, w = b["input"], b["weight"]
    kernel = math.prod(w.shape[2:])
    # weight (C_out, C_in/g, *K) for convolution, (C_in, C_out/g, *K) for the transposed one
    per_element = w.shape[1] * kernel
    y = _first(out)
    macs = (x.numel() if b["transposed"] else y.numel()) * per_element
    return macs, 2 * macs + (y.numel() if b["bias"] is not None else 0)


def _mm(b: dict[str, Any], out: Any) -> tuple[int, int]:
    a, m2 = b["self"], b["mat2"]
    macs = a.shape[0] * a.shape[1] * m2.shape[1]  # (m, k) @ (k, n)
    return macs, 2 * macs


def _addmm(b: dict[str, Any], out: Any) -> tuple[int, int]:
    a, m2 = b["mat1"], b["mat2"]
    macs = a.shape[0] * a.shape[1] * m2.shape[1]
    return macs, 2 * macs + _first(out).numel()


def _bmm(b: dict[str, Any], out: Any) -> tuple[int, int]:
    a, m2 = b["self"], b["mat2"]
    macs = a.shape[0] * a.shape[1] * a.shape[2] * m2.shape[2]  # (B, m, k) @ (B, k, n)
    return macs, 2 * macs


def _baddbmm(b: dict[str, Any], out: Any) -> tuple[int, int]:
    a, m2 = b["batch1"], b["batch2"]
    macs = a.shape[0] * a.shape[1] * a.shape[2] * m2.shape[2]
    return macs, 2 * macs + _first(out).numel()


def _mv(b: dict[str, Any], out: Any) -> tuple[int, int]:
    macs = b["self"].numel()
    return macs, 2 * macs


def _dot(b: dict[str, Any], out: Any) -> tuple[int, int]:
    macs = b["self"].numel()
    return macs, 2 * macs


def _attention_core(q: torch.Tensor, s: int, e_v: int) -> tuple[int, int]:
    """``Q K^T`` and ``A V`` for ``q.numel() / E`` query rows against ``s`` keys; softmax and scale as FLOPs."""
    e = q.shape[-1]
    rows = q.numel() // e  # B * H * L
    macs = rows * s * e + rows * s * e_v
    return macs, 2 * macs + 4 * rows * s  # scale + softmax (3) per score


def _sdpa_bhle(b: dict[str, Any], out: Any) -> tuple[int, int]:
    q, k, v = b["query"], b["key"], b["value"]  # (B, H, L, E), (B, H, S, E), (B, H, S, Ev)
    return _attention_core(q, k.shape[-2], v.shape[-1])


def _sdpa_blhe(b: dict[str, Any], out: Any) -> tuple[int, int]:
    q, k, v = b["query"], b["key"], b["value"]  # (B, L, H, E), (B, S, H, E), (B, S, H, Ev)
    s = k.shape[1] if k.dim() == 4 else (b.get("max_k") or b.get("max_seqlen_k") or k.shape[0])
    return _attention_core(q, int(s), v.shape[-1])


def _mha_parts(q: torch.Tensor, k: torch.Tensor, e: int, heads: int) -> tuple[int, int, int, int]:
    """MACs and FLOPs of a multi-head attention block on ``q (B, L, E)``, ``k (B, S, E)``; also ``B*L``, ``B*H*L*S``."""
    l_rows = q.numel() // e  # B * L
    s_len = k.shape[-2]
    batch = l_rows // q.shape[-2]
    s_rows = batch * s_len  # B * S
    proj = l_rows * e * e + 2 * s_rows * e * e + l_rows * e * e  # Q, K, V, output projections
    scores = l_rows * s_len  # B * L * S (summed over heads: H * (E/H) = E)
    macs = proj + 2 * scores * e  # + Q K^T + A V
    flops = 2 * macs + 2 * l_rows * e + s_rows * e * 2 + 4 * scores * heads  # biases, scale + softmax
    return macs, flops, l_rows, scores * heads


def _native_mha(b: dict[str, Any], out: Any) -> tuple[int, int]:
    macs, flops, _, _ = _mha_parts(b["query"], b["key"], b["embed_dim"], b["num_head"])
    return macs, flops


def _encoder_layer(b: dict[str, Any], out: Any) -> tuple[int, int]:
    src, e = b["src"], b["embed_dim"]
    macs, flops, rows, _ = _mha_parts(src, src, e, b["num_heads"])
    ffn = b["ffn_weight_1"].shape[0]  # (F, E)
    macs_ffn = 2 * rows * e * ffn
    flops += 2 * macs_ffn + rows * (ffn + e)  # biases
    flops += rows * ffn  # activation
    flops += 2 * 4 * rows * e + 2 * rows * e  # two layer norms, two residual additions
    return macs + macs_ffn, flops


def _per_output(factor: int) -> Counter:
    def count(b: dict[str, Any], out: Any) -> tuple[int, int]:
        return 0, factor * _first(out).numel()

    return count


def _per_input(factor: int) -> Counter:
    def count(b: dict[str, Any], out: Any) -> tuple[int, int]:
        x = next(iter(b.values()))
        return 0, factor * (x.numel() if isinstance(x, torch.Tensor) else 0)

    return count


def _batch_norm(b: dict[str, Any], out: Any) -> tuple[int, int]:
    n = next(iter(b.values())).numel()
    return 0, (6 if b.get("training") else 4) * n


def _norm_training(b: dict[str, Any], out: Any) -> tuple[int, int]:
    return 0, 6 * next(iter(b.values())).numel()


def _window(b: dict[str, Any], out: Any) -> tuple[int, int]:
    return 0, _first(out).numel() * math.prod(b["kernel_size"])


_COUNTERS: dict[Any, Counter] = {
    aten.convolution: _conv,
    aten._convolution: _conv,
    aten.mm: _mm,
    aten.addmm: _addmm,
    aten._addmm_activation: _addmm,
    aten.bmm: _bmm,
    aten.baddbmm: _baddbmm,
    aten.mv: _mv,
    aten.dot: _dot,
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_bhle,
    aten._scaled_dot_product_flash_attention: _sdpa_bhle,
    aten._scaled_dot_product_efficient_attention: _sdpa_bhle,
    aten._scaled_dot_product_cudnn_attention: _sdpa_bhle,
    aten._scaled_dot_product_fused_attention_overrideable: _sdpa_bhle,
    aten._flash_attention_forward: _sdpa_blhe,
    aten._efficient_attention_forward: _sdpa_blhe,
    aten._native_multi_head_attention: _native_mha,
    aten._transformer_encoder_layer_fwd: _encoder_layer,
    # normalisation
    aten.native_batch_norm: _batch_norm,
    aten._native_batch_norm_legit: _norm_training,
    aten._native_batch_norm_legit_functional: _norm_training,
    aten._native_batch_norm_legit_no_training: _per_input(4),
    aten.native_layer_norm: _per_input(4),
    aten.native_group_norm: _per_input(4),
    # softmax
    aten._softmax: _per_output(3),
    aten._log_softmax: _per_output(3),
    aten._safe_softmax: _per_output(3),
    # pooling
    aten.max_pool1d: _window,
    aten.max_pool2d: _window,
    aten.max_pool2d_with_indices: _window,
    aten.max_pool3d_with_indices: _window,
    aten.avg_pool1d: _window,
    aten.avg_pool2d: _window,
    aten.avg_pool3d: _window,
    aten._adaptive_avg_pool2d: _per_input(1),
    aten._adaptive_avg_pool3d: _per_input(1),
    aten.adaptive_max_pool2d: _per_input(1),
    aten.adaptive_max_pool3d: _per_input(1),
    aten.mean: _per_input(1),
    aten.sum: _per_input(1),
    aten.amax: _per_input(1),
}

_ELEMENTWISE = (
    "add add_ sub sub_ mul mul_ div div_ neg rsub pow sqrt rsqrt exp log abs "
    "relu relu_ gelu gelu_ silu silu_ sigmoid sigmoid_ tanh tanh_ hardtanh hardtanh_ hardswish hardswish_ "
    "hardsigmoid hardsigmoid_ leaky_relu leaky_relu_ elu elu_ softplus mish mish_ clamp clamp_ clamp_min "
    "clamp_min_ threshold threshold_ _prelu_kernel where addcmul addcdiv erf"
).split()
for _name in _ELEMENTWISE:
    if hasattr(aten, _name):
        _COUNTERS[getattr(aten, _name)] = _per_output(1)

MAC_OPS = frozenset(
    op
    for op, fn in _COUNTERS.items()
    if fn
    in (_conv, _mm, _addmm, _bmm, _baddbmm, _mv, _dot, _sdpa_bhle, _sdpa_blhe, _native_mha, _encoder_layer)
)


def _linear(b: dict[str, Any], out: Any) -> tuple[int, int]:
    x, w = b["input"], b["weight"]  # (*, in) @ (out, in)^T; dense inputs arrive as mm, nested ones as this
    macs = x.numel() * w.shape[0]
    return macs, 2 * macs + (_first(out).numel() if b.get("bias") is not None else 0)


_COUNTERS[aten.linear] = _linear


def _is_nested(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.is_nested


def _sample(obj: Any, i: int) -> Any:
    """Sample ``i`` of a nested tensor as a batch of one; other values unchanged."""
    if _is_nested(obj):
        return obj.unbind(0)[i].unsqueeze(0)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_sample(o, i) for o in obj) if not hasattr(obj, "_fields") else obj
    return obj


def count_op(func: Any, args: tuple, kwargs: dict[str, Any], out: Any) -> tuple[int, int]:
    """``(macs, flops)`` of one ATen call (an ``OpOverload``), ``(0, 0)`` for data movement and unknown ops.

    Nested (ragged) tensors, as ``nn.TransformerEncoder`` makes from a padding mask, are counted sample by
    sample at their real lengths.
    """
    counter = _COUNTERS.get(func.overloadpacket)
    if counter is None or not isinstance(_first(out), torch.Tensor):
        return 0, 0
    nested = [t for t in [*args, *kwargs.values(), *_as_list(out)] if _is_nested(t)]
    if nested:
        macs = flops = 0
        for i in range(nested[0].size(0)):
            a = tuple(_sample(v, i) for v in args)
            k = {n: _sample(v, i) for n, v in kwargs.items()}
            m, f = counter(bind(func, a, k), _sample(out, i))
            macs, flops = macs + m, flops + f
        return int(macs), int(flops)
    macs, flops = counter(bind(func, args, kwargs), out)
    return int(macs), int(flops)


def _as_list(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (list, tuple)) else [out]
