"""MACs and FLOPs of single ATen operators: the formulas behind :func:`nnatlas.analysis.summary`.

The counter sees the operators PyTorch actually runs (through a ``TorchDispatchMode``), so it counts what
a model computes whatever Python code produced it: functional calls, ``einsum``, fused attention kernels,
the backward pass.

Conventions
-----------
- **1 MAC = 2 FLOPs.** A multiply-accumulate ``a += x * w`` is one MAC; every MAC-based operator reports
  ``flops = 2 * macs`` plus one FLOP per output element for an added bias.
- **MACs** are counted for convolution, linear layers and matrix products, recurrent layers and attention:

  - convolution ``(B, C_in, *S_in) -> (B, C_out, *S_out)``, kernel ``K`` (product of its sizes), ``g`` groups:
    ``B * C_out * prod(S_out) * C_in/g * K``; dilation changes ``S_out`` only.
  - transposed convolution: every *input* element is multiplied by a ``C_out/g x K`` slice of the kernel
    and scattered into the output, so ``MACs = B * C_in * prod(S_in) * C_out/g * K`` (counting from the
    output size, as some tools do, is wrong by up to ``stride**2``).
  - ``mm (m, k) @ (k, n)``: ``m * k * n``; ``bmm`` times the batch; ``addmv``, ``addbmm`` (the batch
    summed), ``nn.Linear`` and ``einsum`` arrive as these; ``nn.Bilinear`` (``_trilinear``) is
    ``B * out * in1 * in2``.
  - recurrent layers run as one fused kernel on the CPU (``mkldnn_rnn_layer``) and on CUDA
    (``_cudnn_rnn``): per time step and sample ``G * H * (I + H)`` with ``G`` = 4 gates for an LSTM, 3 for a
    GRU, 1 for a plain RNN (input size ``I``, hidden size ``H``); elsewhere they arrive as ``addmm``.
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

- **Backward** operators are counted as what they compute. ``convolution_backward`` costs one forward
  convolution for each gradient it is asked for (input and weight, from its ``output_mask``: the first
  layer of a network, whose input needs no gradient, costs 1x, not 2x); matrix products arrive as
  ``mm``/``bmm``; the fused attention backward is five products of the forward's size (``Q K^T`` again,
  ``dP``, ``dV``, ``dQ``, ``dK``, as ``torch.utils.flop_counter`` counts them); a fused recurrent layer's
  backward is twice its forward (input and weight gradients).
- **FLOPs without MACs**: normalisation (batch, layer, group, instance norm) 4 FLOPs per element (subtract
  the mean, divide by the deviation, scale, shift; 2 more per element in training for the statistics;
  8 per element for the backward); activations and element-wise arithmetic (every operator PyTorch tags
  ``pointwise``, and their backward) 1 FLOP per output element (a transcendental such as ``exp`` or
  ``tanh`` counts as one); softmax 3 per element (exponent, sum, divide), its backward 4; pooling one FLOP
  per window element of each output (a comparison or an addition), adaptive and global pooling one per
  input element; reductions (``mean``, ``sum``, norms) one or two per input element; linear
  interpolation ``2 * 2**d`` per output element (a weighted sum of ``2**d`` neighbours), bicubic
  ``2 * 4**d``.
- **Free**: data movement (views, copies, concatenation, padding, indexing, nearest-neighbour upsampling),
  selection (sorting, ``topk``, ``nonzero``, non-maximum suppression) and tensor creation cost 0.
- Every other operator is **unsupported**: it counts 0 and :class:`~nnatlas.analysis.Summary` lists it
  in ``unsupported`` and marks its totals partial. :func:`~nnatlas.analysis.register_op_counter` and
  :func:`~nnatlas.analysis.register_module_counter` add counters for custom operators and modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

aten = torch.ops.aten

Counter = Callable[[dict[str, Any], Any], "tuple[int, int] | None"]
"""``counter(bound_arguments, output) -> (macs, flops)``; ``None`` when it cannot count this call."""

ModuleCounter = Callable[[nn.Module, tuple, Any], tuple[int, int]]
"""``counter(module, args, output) -> (macs, flops)`` for one forward call of the module."""

FREE = "free"  # marker: an operator that costs nothing (data movement, selection, creation)


# -- binding arguments by their schema names -----------------------------------------------------------

_SCHEMAS: dict[Any, tuple[tuple[str, ...], dict[str, Any]]] = {}


def _schema(func: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    s = _SCHEMAS.get(func)
    if s is None:
        arguments = func._schema.arguments
        names = tuple(a.name for a in arguments)
        defaults = {a.name: a.default_value if a.has_default_value() else None for a in arguments}
        s = _SCHEMAS[func] = (names, defaults)
    return s


def bind(func: Any, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments of an ATen call by their schema names, defaults filled in (``None`` where none)."""
    names, defaults = _schema(func)
    bound = dict(zip(names, args, strict=False))
    if len(bound) < len(names):
        for name in names[len(args) :]:
            bound[name] = kwargs[name] if name in kwargs else defaults[name]
    return bound


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


# -- the counters ------------------------------------------------------------------------------------

_BUILTIN: dict[Any, Counter | str] = {}


def _counts(*ops: Any) -> Callable[[Counter], Counter]:
    """Register a built-in counter for every op (an ``OpOverloadPacket``) that this torch build has."""

    def register(fn: Counter) -> Counter:
        for op in ops:
            if op is not None:
                _BUILTIN[op] = fn
        return fn

    return register


def _op(name: str, namespace: Any = aten) -> Any:
    return getattr(namespace, name, None)


def conv_macs(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, transposed: bool) -> int:
    """MACs of one convolution: per output element (per *input* element when transposed)."""
    # weight (C_out, C_in/g, *K) for convolution, (C_in, C_out/g, *K) for the transposed one
    per_element = w.shape[1] * math.prod(w.shape[2:])
    return (x.numel() if transposed else y.numel()) * per_element


@_counts(aten.convolution, aten._convolution, _op("convolution_overrideable"))
def _conv(b: dict[str, Any], out: Any) -> tuple[int, int]:
    y = _first(out)
    macs = conv_macs(b["input"], b["weight"], y, b["transposed"])
    return macs, 2 * macs + (y.numel() if b["bias"] is not None else 0)


@_counts(aten.convolution_backward)
def _conv_backward(b: dict[str, Any], out: Any) -> tuple[int, int]:
    grad_out, x, w = b["grad_output"], b["input"], b["weight"]
    one = conv_macs(x, w, grad_out, b["transposed"])  # grad_output has the forward output's shape
    mask = b["output_mask"]
    macs = one * (int(mask[0]) + int(mask[1]))
    return macs, 2 * macs + (grad_out.numel() if mask[2] else 0)  # the bias gradient sums grad_output


@_counts(aten.mm)
def _mm(b: dict[str, Any], out: Any) -> tuple[int, int]:
    a, m2 = b["self"], b["mat2"]
    macs = a.shape[0] * a.shape[1] * m2.shape[1]  # (m, k) @ (k, n)
    return macs, 2 * macs


@_counts(aten.addmm, aten._addmm_activation)
def _addmm(b: dict[str, Any], out: Any) -> tuple[int, int]:
    a, m2 = b["mat1"], b["mat2"]
    macs = a.shape[0] * a.shape[1] * m2.shape[1]
    return macs, 2 * macs + _first(out).numel()


@_counts(aten.bmm)
def _bmm(b: dict[str, Any], out: Any) -> tuple[int, int]:
    a, m2 = b["self"], b["mat2"]
    macs = a.shape[0] * a.shape[1] * a.shape[2] * m2.shape[2]  # (B, m, k) @ (B, k, n)
    return macs, 2 * macs


@_counts(aten.baddbmm, aten.addbmm)
def _baddbmm(b: dict[str, Any], out: Any) -> tuple[int, int]:
    a, m2 = b["batch1"], b["batch2"]  # addbmm sums the B products into one (m, n) matrix
    macs = a.shape[0] * a.shape[1] * a.shape[2] * m2.shape[2]
    return macs, 2 * macs + _first(out).numel()


@_counts(aten.mv, aten.dot, aten.vdot)
def _mv(b: dict[str, Any], out: Any) -> tuple[int, int]:
    macs = b["self"].numel()  # (m, k) @ (k,) or (k,) . (k,)
    return macs, 2 * macs


@_counts(aten.addmv)
def _addmv(b: dict[str, Any], out: Any) -> tuple[int, int]:
    macs = b["mat"].numel()
    return macs, 2 * macs + _first(out).numel()


@_counts(aten._trilinear)
def _trilinear(b: dict[str, Any], out: Any) -> tuple[int, int]:
    # nn.Bilinear: y_bo = sum_ij x1_bi W_oij x2_bj; _trilinear unsqueezes each operand at its ``expand``
    # dimensions, broadcasts the three and sums the ``sumdim`` dimensions: each output sums in1 * in2 terms
    shapes = []
    for t, dims in ((b["i1"], b["expand1"]), (b["i2"], b["expand2"]), (b["i3"], b["expand3"])):
        shape = list(t.shape)
        for d in sorted(dims):
            shape.insert(d, 1)
        shapes.append(shape)
    full = torch.broadcast_shapes(*shapes)
    macs = _first(out).numel() * math.prod(full[d] for d in b["sumdim"])
    return macs, 2 * macs


_RNN_GATES = {0: 1, 1: 1, 2: 4, 3: 3}  # mode: RNN_RELU, RNN_TANH, LSTM, GRU


def _rnn_layer_macs(steps_batch: int, gates: int, hidden: int, inputs: int) -> int:
    return steps_batch * gates * hidden * (inputs + hidden)


@_counts(_op("mkldnn_rnn_layer"))
def _mkldnn_rnn(b: dict[str, Any], out: Any) -> tuple[int, int]:
    x, w_ih = b["input"], b["weight0"]  # x (T, B, I) (batch_first: (B, T, I)), w_ih (G*H, I)
    hidden = b["hidden_size"]
    gates = w_ih.shape[0] // hidden
    macs = _rnn_layer_macs(x.numel() // x.shape[-1], gates, hidden, x.shape[-1])
    return macs, 2 * macs + 6 * x.numel() // x.shape[-1] * gates * hidden  # biases, gate nonlinearities


@_counts(_op("mkldnn_rnn_layer_backward"))
def _mkldnn_rnn_backward(b: dict[str, Any], out: Any) -> tuple[int, int]:
    x, w_ih = b["input"], b["weight1"]
    hidden = b["hidden_size"]
    gates = w_ih.shape[0] // hidden
    macs = 2 * _rnn_layer_macs(x.numel() // x.shape[-1], gates, hidden, x.shape[-1])
    return macs, 2 * macs


@_counts(_op("_cudnn_rnn"))
def _cudnn_rnn(b: dict[str, Any], out: Any) -> tuple[int, int] | None:
    x, weights = (
        b["input"],
        b["weight"],
    )  # x (T, B, I) (or packed (N, I)), per layer and direction w_ih, w_hh[, b]
    if b["proj_size"]:
        return None
    gates = _RNN_GATES.get(b["mode"])
    if gates is None:
        return None
    hidden, layers = b["hidden_size"], b["num_layers"]
    directions = 2 if b["bidirectional"] else 1
    rows = x.numel() // x.shape[-1]  # T * B
    per = len(weights) // (layers * directions)
    macs = 0
    for i in range(0, len(weights), per):
        w_ih = weights[i]  # (G*H, I_layer)
        macs += _rnn_layer_macs(rows, gates, hidden, w_ih.shape[1])
    return macs, 2 * macs


def _attention_core(q: torch.Tensor, s: int, e_v: int) -> tuple[int, int]:
    """``Q K^T`` and ``A V`` for ``q.numel() / E`` query rows against ``s`` keys; softmax and scale as FLOPs."""
    e = q.shape[-1]
    rows = q.numel() // e  # B * H * L
    macs = rows * s * e + rows * s * e_v
    return macs, 2 * macs + 4 * rows * s  # scale + softmax (3) per score


@_counts(
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_cudnn_attention,
    _op("_scaled_dot_product_fused_attention_overrideable"),
)
def _sdpa_bhle(b: dict[str, Any], out: Any) -> tuple[int, int]:
    q, k, v = b["query"], b["key"], b["value"]  # (B, H, L, E), (B, H, S, E), (B, H, S, Ev)
    return _attention_core(q, k.shape[-2], v.shape[-1])


@_counts(aten._flash_attention_forward, aten._efficient_attention_forward)
def _sdpa_blhe(b: dict[str, Any], out: Any) -> tuple[int, int]:
    q, k, v = b["query"], b["key"], b["value"]  # (B, L, H, E), (B, S, H, E), (B, S, H, Ev)
    s = k.shape[1] if k.dim() == 4 else (b.get("max_k") or b.get("max_seqlen_k") or k.shape[0])
    return _attention_core(q, int(s), v.shape[-1])


def _attention_backward(q: torch.Tensor, s: int, e_v: int) -> tuple[int, int]:
    """Five products of the forward's size: ``Q K^T`` recomputed, ``dP = dO V^T``, ``dV``, ``dQ``, ``dK``."""
    e = q.shape[-1]
    rows = q.numel() // e
    macs = rows * s * (3 * e + 2 * e_v)
    return macs, 2 * macs + 8 * rows * s  # softmax backward and scale on every score


@_counts(
    aten._scaled_dot_product_flash_attention_for_cpu_backward,
    aten._scaled_dot_product_flash_attention_backward,
    aten._scaled_dot_product_efficient_attention_backward,
    aten._scaled_dot_product_cudnn_attention_backward,
    _op("_scaled_dot_product_fused_attention_overrideable_backward"),
)
def _sdpa_bhle_backward(b: dict[str, Any], out: Any) -> tuple[int, int]:
    q, k, v = b["query"], b["key"], b["value"]
    return _attention_backward(q, k.shape[-2], v.shape[-1])


@_counts(aten._flash_attention_backward, aten._efficient_attention_backward)
def _sdpa_blhe_backward(b: dict[str, Any], out: Any) -> tuple[int, int]:
    q, k, v = b["query"], b["key"], b["value"]
    s = k.shape[1] if k.dim() == 4 else (b.get("max_k") or b.get("max_seqlen_k") or k.shape[0])
    return _attention_backward(q, int(s), v.shape[-1])


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


@_counts(aten._native_multi_head_attention)
def _native_mha(b: dict[str, Any], out: Any) -> tuple[int, int]:
    macs, flops, _, _ = _mha_parts(b["query"], b["key"], b["embed_dim"], b["num_head"])
    return macs, flops


@_counts(aten._transformer_encoder_layer_fwd)
def _encoder_layer(b: dict[str, Any], out: Any) -> tuple[int, int]:
    src, e = b["src"], b["embed_dim"]
    macs, flops, rows, _ = _mha_parts(src, src, e, b["num_heads"])
    ffn = b["ffn_weight_1"].shape[0]  # (F, E)
    macs_ffn = 2 * rows * e * ffn
    flops += 2 * macs_ffn + rows * (ffn + e)  # biases
    flops += rows * ffn  # activation
    flops += 2 * 4 * rows * e + 2 * rows * e  # two layer norms, two residual additions
    return macs + macs_ffn, flops


@_counts(aten.linear)
def _linear(b: dict[str, Any], out: Any) -> tuple[int, int]:
    x, w = b["input"], b["weight"]  # (*, in) @ (out, in)^T; dense inputs arrive as mm, nested ones as this
    macs = x.numel() * w.shape[0]
    return macs, 2 * macs + (_first(out).numel() if b.get("bias") is not None else 0)


class PerOutput:
    """A counter of ``factor`` FLOPs per output element (no MACs): needs no argument binding."""

    __slots__ = ("factor",)

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, b: dict[str, Any], out: Any) -> tuple[int, int]:
        return 0, self.factor * _first(out).numel()


def _per_output(factor: int) -> PerOutput:
    return PerOutput(factor)


def _per_input(factor: int) -> Counter:
    def count(b: dict[str, Any], out: Any) -> tuple[int, int]:
        x = next(iter(b.values()))
        return 0, factor * (x.numel() if isinstance(x, torch.Tensor) else 0)

    return count


def _per_grad_input(factor: int) -> Counter:
    def count(b: dict[str, Any], out: Any) -> tuple[int, int]:
        return 0, factor * b["input"].numel()

    return count


@_counts(aten.native_batch_norm)
def _batch_norm(b: dict[str, Any], out: Any) -> tuple[int, int]:
    n = next(iter(b.values())).numel()
    return 0, (6 if b.get("training") else 4) * n


_counts(aten._native_batch_norm_legit, aten._native_batch_norm_legit_functional)(_per_input(6))
_counts(aten._native_batch_norm_legit_no_training, aten.native_layer_norm, aten.native_group_norm)(
    _per_input(4)
)
_counts(aten.native_batch_norm_backward, aten.native_layer_norm_backward, aten.native_group_norm_backward)(
    _per_grad_input(8)
)
_counts(aten._softmax, aten._log_softmax, aten._safe_softmax)(_per_output(3))
_counts(aten._softmax_backward_data, aten._log_softmax_backward_data)(_per_output(4))


@_counts(
    aten.max_pool1d,
    aten.max_pool2d,
    aten.max_pool2d_with_indices,
    aten.max_pool3d_with_indices,
    aten.avg_pool1d,
    aten.avg_pool2d,
    aten.avg_pool3d,
)
def _window(b: dict[str, Any], out: Any) -> tuple[int, int]:
    return 0, _first(out).numel() * math.prod(b["kernel_size"])


@_counts(
    aten.avg_pool2d_backward,
    aten.avg_pool3d_backward,
    aten.max_pool2d_with_indices_backward,
    aten.max_pool3d_with_indices_backward,
)
def _window_backward(b: dict[str, Any], out: Any) -> tuple[int, int]:
    return 0, b["grad_output"].numel() * math.prod(b["kernel_size"])


_counts(
    aten._adaptive_avg_pool2d,
    aten._adaptive_avg_pool3d,
    aten.adaptive_max_pool2d,
    aten.adaptive_max_pool3d,
    aten.mean,
    aten.sum,
    aten.amax,
    aten.amin,
    aten.prod,
    aten.cumsum,
    aten.var_mean,
    aten.std_mean,
    aten.var,
    aten.std,
    aten.logsumexp,
)(_per_input(1))
_counts(aten.linalg_vector_norm, aten.norm)(_per_input(2))  # square and add
_counts(
    aten._adaptive_avg_pool2d_backward,
    aten._adaptive_avg_pool3d_backward,
    aten.adaptive_max_pool2d_backward,
    aten.adaptive_max_pool3d_backward,
    aten.embedding_dense_backward,
)(_per_output(1))
_counts(aten.native_dropout, aten.native_dropout_backward)(_per_output(1))  # multiply by the mask


def _interpolation(points: int) -> Counter:
    def count(b: dict[str, Any], out: Any) -> tuple[int, int]:
        y = _first(out)
        d = y.dim() - 2
        return 0, 2 * points**d * y.numel()

    return count


_counts(aten.upsample_linear1d, aten.upsample_bilinear2d, aten.upsample_trilinear3d, aten.grid_sampler_2d)(
    _interpolation(2)
)
_counts(aten.upsample_bicubic2d)(_interpolation(4))


_ELEMENTWISE = (
    "add add_ sub sub_ mul mul_ div div_ neg rsub pow sqrt rsqrt exp log abs "
    "relu relu_ gelu gelu_ silu silu_ sigmoid sigmoid_ tanh tanh_ hardtanh hardtanh_ hardswish hardswish_ "
    "hardsigmoid hardsigmoid_ leaky_relu leaky_relu_ elu elu_ softplus mish mish_ clamp clamp_ clamp_min "
    "clamp_min_ threshold threshold_ _prelu_kernel where addcmul addcdiv erf "
    # backward of activations and element-wise operators
    "threshold_backward gelu_backward silu_backward sigmoid_backward tanh_backward hardswish_backward "
    "hardsigmoid_backward hardtanh_backward leaky_relu_backward elu_backward softplus_backward "
    "mish_backward _prelu_kernel_backward logit_backward"
).split()
for _name in _ELEMENTWISE:
    if hasattr(aten, _name):
        _BUILTIN[getattr(aten, _name)] = _per_output(1)

_FREE_OPS = (
    # data movement and layout
    "clone copy_ _to_copy to detach alias transpose_ as_strided_ t_ squeeze_ unsqueeze_ lift_fresh lift_fresh_copy contiguous _reshape_alias cat stack "
    "split split_with_sizes unsafe_split unsafe_split_with_sizes unbind chunk roll flip repeat tile "
    "constant_pad_nd reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d "
    "replication_pad2d replication_pad3d upsample_nearest1d upsample_nearest2d upsample_nearest3d "
    "_upsample_nearest_exact1d _upsample_nearest_exact2d _upsample_nearest_exact3d pixel_shuffle "
    "pixel_unshuffle channel_shuffle native_channel_shuffle tril triu im2col col2im set_ resize_ "
    # indexing, gathering and selection
    "index index_select gather scatter scatter_ index_put index_put_ index_copy index_copy_ _unsafe_index "
    "_unsafe_index_put masked_scatter masked_select embedding nonzero nonzero_static sort topk argsort "
    "argmax argmin max min unique_consecutive _unique2 unique_dim searchsorted bucketize "
    "_local_scalar_dense equal all any "  # all/any: logical reductions, no multiply-add
    # backward of data movement
    "select_backward slice_backward as_strided_scatter slice_scatter select_scatter diagonal_scatter "
    "narrow_copy expand_copy permute_copy view_copy _unsafe_view "
    # creation
    "empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like new_zeros ones ones_like "
    "new_ones full full_like new_full fill fill_ zero_ arange linspace logspace scalar_tensor eye "
    "rand rand_like randn randn_like randint randint_like randperm normal normal_ uniform_ bernoulli "
    "bernoulli_ exponential_ random_ _assert_async _assert_scalar _functional_assert_async sym_constrain_range"
).split()
for _name in _FREE_OPS:
    if hasattr(aten, _name):
        _BUILTIN.setdefault(getattr(aten, _name), FREE)


def _roi_align(b: dict[str, Any], out: Any) -> tuple[int, int] | None:
    # each output bin averages s x s bilinear samples (a weighted sum of 4 neighbours: 8 FLOPs, and 1 to
    # average); with sampling_ratio <= 0 the number of samples depends on each box's size: not counted
    s = b["sampling_ratio"]
    if s <= 0:
        return None
    return 0, _first(out).numel() * s * s * 9


def _deform_conv2d(b: dict[str, Any], out: Any) -> tuple[int, int]:
    # a convolution over bilinearly sampled inputs: the products of a convolution, plus 8 FLOPs per sample
    # (and one more per sample for the modulation mask)
    x, w, y = b["input"], b["weight"], _first(out)
    kernel = math.prod(w.shape[2:])
    macs = y.numel() * w.shape[1] * kernel
    samples = x.shape[0] * x.shape[1] * kernel * y.shape[-2] * y.shape[-1]
    flops = 2 * macs + samples * (9 if b["use_mask"] else 8) + (y.numel() if b["bias"] is not None else 0)
    return macs, flops


# operators of other libraries, by name: they exist only once the library is imported
_BY_NAME: dict[str, Counter | str] = {
    "torchvision.nms": FREE,
    "torchvision.roi_align": _roi_align,
    "torchvision.deform_conv2d": _deform_conv2d,
}

# -- user counters -----------------------------------------------------------------------------------

_USER_OPS: dict[Any, Counter] = {}
_USER_MODULES: dict[type, ModuleCounter] = {}
_LOOKUP: dict[Any, Counter | str | None] = {}


class CounterHandle:
    """Returned by the ``register_*_counter`` functions: ``remove()`` (or leaving a ``with`` block) unregisters."""

    def __init__(self, table: dict[Any, Any], key: Any, counter: Any) -> None:
        self._table, self._key, self._counter = table, key, counter

    def remove(self) -> None:
        """Unregister the counter; a later registration for the same operator or class stays in place."""
        if self._table.get(self._key) is self._counter:  # a later registration for the same key stays
            del self._table[self._key]
        _LOOKUP.clear()

    def __enter__(self) -> CounterHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def register_op_counter(op: Any, counter: Counter) -> CounterHandle:
    """Count ``op`` (an operator: ``torch.ops.mylib.myop``, or one overload of it) with ``counter``.

    ``counter(args, output)`` receives the call's arguments as a dict by their schema names (defaults
    filled in) and the operator's output, and returns ``(macs, flops)``, or ``None`` when it cannot count
    this call (the operator is then listed as unsupported). It replaces a built-in counter for the same
    operator until the returned handle's ``remove()`` (it is also a context manager)::

        @torch.library.custom_op("mylib::rms_norm", mutates_args=())
        def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor: ...

        handle = register_op_counter(torch.ops.mylib.rms_norm, lambda args, out: (0, 4 * args["x"].numel()))
    """
    if not isinstance(op, (torch._ops.OpOverloadPacket, torch._ops.OpOverload)):
        raise TypeError(
            f"op must be an operator such as torch.ops.aten.mm or torch.ops.mylib.myop; got {type(op).__name__}"
        )
    if not callable(counter):
        raise TypeError(
            f"counter must be callable(args, output) -> (macs, flops); got {type(counter).__name__}"
        )
    _USER_OPS[op] = counter
    _LOOKUP.clear()
    return CounterHandle(_USER_OPS, op, counter)


def register_module_counter(cls: type[nn.Module], counter: ModuleCounter) -> CounterHandle:
    """Count every forward call of a module of class ``cls`` (or a subclass) with ``counter``.

    ``counter(module, args, output) -> (macs, flops)`` replaces the count of the operators the module runs
    (they are neither counted nor reported unsupported); the module's row, its parents' rows and the
    totals get its figures. Use it for a module whose work PyTorch cannot see (an extension kernel called
    with raw pointers) or to impose a convention::

        with register_module_counter(MyGate, lambda module, args, out: (0, 3 * out.numel())):
            s = summary(model, (1, 3, 224, 224))
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"cls must be an nn.Module subclass; got {cls!r}")
    if not callable(counter):
        raise TypeError(
            f"counter must be callable(module, args, output) -> (macs, flops); got {type(counter).__name__}"
        )
    _USER_MODULES[cls] = counter
    return CounterHandle(_USER_MODULES, cls, counter)


def module_counter(module: nn.Module) -> ModuleCounter | None:
    """The registered counter of ``module``'s class (or of its nearest registered base class), if any."""
    if not _USER_MODULES:
        return None
    for cls in type(module).__mro__:
        fn = _USER_MODULES.get(cls)
        if fn is not None:
            return fn
    return None


def lookup(func: Any) -> Counter | str | None:
    """How ``func`` (an ``OpOverload``) is counted: a counter, :data:`FREE`, or ``None`` (unsupported)."""
    try:
        return _LOOKUP[func]
    except KeyError:
        pass
    packet = func.overloadpacket
    found = _USER_OPS.get(func) or _USER_OPS.get(packet) or _BUILTIN.get(packet) or _BY_NAME.get(str(packet))
    if found is None:
        tags = func.tags
        if torch.Tag.pointwise in tags:
            found = _per_output(1)
        elif func.is_view or torch.Tag.nondeterministic_seeded in tags:
            found = FREE
    _LOOKUP[func] = found
    return found


def count_op(func: Any, args: tuple, kwargs: dict[str, Any], out: Any) -> tuple[int, int]:
    """``(macs, flops)`` of one ATen call (an ``OpOverload``), ``(0, 0)`` for free and unsupported ops.

    Nested (ragged) tensors, as ``nn.TransformerEncoder`` makes from a padding mask, are counted sample by
    sample at their real lengths.
    """
    counter = lookup(func)
    if counter is None or counter is FREE:
        return 0, 0
    counted = apply(counter, func, args, kwargs, out)
    return counted if counted is not None else (0, 0)


def apply(
    counter: Counter, func: Any, args: tuple, kwargs: dict[str, Any], out: Any
) -> tuple[int, int] | None:
    """Run ``counter`` on one call; ``None`` when it cannot count it."""
    y = _first(out)
    if not isinstance(y, torch.Tensor):
        if not (isinstance(out, (tuple, list)) and any(isinstance(t, torch.Tensor) for t in out)):
            return 0, 0
    elif type(counter) is PerOutput and not y.is_nested:
        return 0, counter.factor * y.numel()
    elif y.is_nested:  # an operator on nested (ragged) tensors returns one
        macs = flops = 0
        for i in range(y.size(0)):
            a = tuple(_sample(v, i) for v in args)
            k = {n: _sample(v, i) for n, v in kwargs.items()}
            got = counter(bind(func, a, k), _sample(out, i))
            if got is None:
                return None
            macs, flops = macs + got[0], flops + got[1]
        return int(macs), int(flops)
    got = counter(bind(func, args, kwargs), out)
    if got is None:
        return None
    return int(got[0]), int(got[1])


def _is_nested(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.is_nested


def _sample(obj: Any, i: int) -> Any:
    """Sample ``i`` of a nested tensor as a batch of one; other values unchanged."""
    if _is_nested(obj):
        return obj.unbind(0)[i].unsqueeze(0)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_sample(o, i) for o in obj) if not hasattr(obj, "_fields") else obj
    return obj
