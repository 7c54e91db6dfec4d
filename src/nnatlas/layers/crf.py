"""The fully connected CRF of Krähenbühl & Koltun (2011), "Efficient Inference in Fully Connected CRFs with
Gaussian Edge Potentials", with mean-field inference in plain torch operations (any device, batched,
differentiable).

Every pixel ``i`` takes a label ``x_i`` in ``{0, ..., K - 1}``; the Gibbs energy of a labelling is

    E(x) = sum_i psi_u(x_i) + sum_{i<j} mu(x_i, x_j) k(f_i, f_j),

with the unary ``psi_u(x_i) = -log P(x_i)`` from a classifier, the Potts compatibility
``mu(l, l') = [l != l']``, and a kernel of two Gaussians over positions ``p`` and colours ``I``:

    k(f_i, f_j) = w1 exp(-|p_i - p_j|^2 / (2 theta_alpha^2) - |I_i - I_j|^2 / (2 theta_beta^2))   appearance
                + w2 exp(-|p_i - p_j|^2 / (2 theta_gamma^2))                                     smoothness

The appearance (bilateral) kernel wants nearby pixels of similar colour to share a label; the smoothness
kernel removes small isolated regions. Mean-field inference approximates ``P(x)`` by a product
``Q(x) = prod_i Q_i(x_i)`` and iterates, from ``Q_i = softmax(-psi_u(i))``,

    Q_i(l) <- softmax_l( -psi_u(i, l) + sum_m w_m sum_j kbar_m(f_i, f_j) Q_j(l) ),

where ``kbar_m = D_m^{-1/2} k_m D_m^{-1/2}`` is the Gaussian ``k_m`` (without its weight) normalised
symmetrically by its row sums ``D_m(i) = sum_j k_m(f_i, f_j)``. This is the Potts update written as a
reward for agreeing labels: ``-sum_{l' != l} kbar Q(l') = kbar Q(l) - kbar 1``, and ``kbar 1`` is the same
for every label, so it cancels in the softmax. The message passing step ``sum_j kbar(f_i, f_j) Q_j`` is a
Gaussian filter in feature space: the whole update costs a filter per kernel instead of ``N^2`` pairs.

Conventions (those of Krähenbühl's C++ code and its Python binding ``pydensecrf`` / ``pydensecrf2``, so the
numbers agree with it): positions are pixel indices (column ``x``, row ``y``), colours are in the 0..255
range of an 8-bit image, the sum over ``j`` includes ``j = i`` (the paper's excludes it; the lattice filter
cannot), and the normalisation is ``NORMALIZE_SYMMETRIC``. ``pydensecrf``'s ``addPairwiseGaussian(sxy=theta_gamma,
compat=w2)``, ``addPairwiseBilateral(sxy=theta_alpha, srgb=theta_beta, rgbim=image, compat=w1)`` and
``setUnaryEnergy(-unary_logits)`` give the same marginals as :func:`dense_crf` with ``method="permutohedral"``
(to float precision). The defaults are the values of pydensecrf's example (``theta_alpha=80, theta_beta=13,
w1=10, theta_gamma=3, w2=3``).

Two ways to filter:

- ``"exact"``: every pair, ``O(N^2)`` time and memory. The normalised ``(N, N)`` kernel matrix is built once
  per image up to ``N = 4096`` (a 64 x 64 image: 16.8M entries, 64 MiB in float32) and recomputed block of
  rows by block of rows at every iteration above, so memory stays bounded while time grows with ``N^2``.
- ``"permutohedral"``: the permutohedral lattice of Adams, Baek & Davis (2010), as Krähenbühl's code and
  pydensecrf use it: splat every pixel's value onto the ``d + 1`` vertices of its enclosing simplex in a
  lattice of the ``d``-dimensional feature space (barycentric weights), blur along each of the ``d + 1``
  lattice directions with ``[1/2, 1, 1/2]``, and slice back. It costs ``O(N d^2)`` per filter whatever the
  kernel width. Chosen over a bilateral grid because the grid's size grows exponentially with the feature
  dimension (5 for ``x, y, r, g, b``) and with ``1 / theta``, while the lattice only holds the vertices that
  pixels touch, and because it is what makes the result comparable with pydensecrf. Lattice vertices are
  found by sorting integer keys (one integer code per vertex) instead of a hash table, so the same code
  runs on any device; splatting and slicing are sparse (CSR) matrix products. The lattice filters the
  smoothness kernel as well, as pydensecrf does: on a 320 x 240 image with 21 labels it costs a fraction of
  a separable Gaussian blur of the label maps in torch on a CPU (about 5 ms against 40 ms per iteration).

``method="auto"`` takes ``"exact"`` for images of at most ``EXACT_MAX_PIXELS = 1024`` pixels (32 x 32: a
1M-entry matrix, a few milliseconds) and ``"permutohedral"`` above, where the all-pairs matrix costs far
more time and memory than the lattice while the labels hardly change: on 48 x 48 shapes scenes the two
agree on more than 99% of pixels (tested).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnatlas._validate import check_choice, check_finite, check_int

__all__ = ["CRF_METHODS", "EXACT_MAX_PIXELS", "DenseCRF", "dense_crf"]

CRF_METHODS = ("auto", "exact", "permutohedral")
EXACT_MAX_PIXELS = 1024
# Bound on the lattice coordinates (the 16-bit keys of Krähenbühl's code); beyond, float32 loses the
# fractions the barycentric weights are made of.
_MAX_COORDINATE = 2**15
# Entries of an (N, N) kernel block computed at once by the exact filter (64 MiB in float32).
_BLOCK_ENTRIES = 1 << 24


def dense_crf(
    unary_logits: Tensor,
    image: Tensor,
    *,
    iterations: int = 5,
    theta_alpha: float = 80.0,
    theta_beta: float = 13.0,
    w1: float | Tensor = 10.0,
    theta_gamma: float = 3.0,
    w2: float | Tensor = 3.0,
    method: str = "auto",
) -> Tensor:
    """Mean-field inference in the fully connected CRF (see the module docstring for the energy).

    **Arguments:**

    - ``unary_logits``: ``(B, K, H, W)`` floating point; the negative unary energies ``-psi_u`` up to a
      constant per pixel: a network's logits, ``log P``, or ``-U`` for pydensecrf's unary energy ``U``.
    - ``image``: ``(B, C, H, W)``, ``uint8`` or floating point, colours in the 0..255 range (``C = 3`` for
      RGB; any ``C >= 1`` works, every channel divided by ``theta_beta``). Multiply a ``[0, 1]`` image by 255.
    - ``iterations``: mean-field updates (0 returns ``softmax(unary_logits)``).
    - ``theta_alpha``, ``theta_beta``: the appearance kernel's widths in pixels and in colour levels.
    - ``w1``: the appearance kernel's weight (0 switches it off); a float >= 0, or a one-element tensor to
      learn it.
    - ``theta_gamma``, ``w2``: the smoothness kernel's width in pixels and its weight (as ``w1``).
    - ``method``: ``"exact"`` (all pairs), ``"permutohedral"`` (lattice) or ``"auto"`` (exact up to
      ``EXACT_MAX_PIXELS`` pixels).

    **Returns:**

    The marginals ``Q``, ``(B, K, H, W)`` in the dtype of ``unary_logits``, summing to 1 over ``K``;
    ``Q.argmax(1)`` is the labelling. Differentiable with respect to ``unary_logits`` and the weights.

    A single pixel that disagrees with its uniform surroundings is relabelled:

    >>> import torch
    >>> logits = torch.zeros(1, 2, 6, 6)  # (B, K, H, W)
    >>> logits[:, 1] = 1.0  # label 1 everywhere ...
    >>> logits[0, :, 2, 3] = torch.tensor([1.0, 0.0])  # ... but pixel (2, 3), which prefers label 0
    >>> image = torch.zeros(1, 3, 6, 6, dtype=torch.uint8)  # (B, C, H, W), one colour
    >>> q = dense_crf(logits, image)
    >>> q.shape, bool(torch.allclose(q.sum(1), torch.ones(1, 6, 6)))
    (torch.Size([1, 2, 6, 6]), True)
    >>> int((logits.argmax(1) == 1).sum()), int((q.argmax(1) == 1).sum())
    (35, 36)
    """
    return _dense_crf(
        unary_logits,
        image,
        iterations=iterations,
        theta_alpha=theta_alpha,
        theta_beta=theta_beta,
        w1=w1,
        theta_gamma=theta_gamma,
        w2=w2,
        method=method,
        cache=None,
    )


def _dense_crf(
    unary_logits: Tensor,
    image: Tensor,
    *,
    iterations: int,
    theta_alpha: float,
    theta_beta: float,
    w1: float | Tensor,
    theta_gamma: float,
    w2: float | Tensor,
    method: str,
    cache: dict | None,
) -> Tensor:
    """:func:`dense_crf`; ``cache`` (a dict, or None) keeps the smoothness kernel's lattice between calls."""
    _check_inputs(unary_logits, image)
    iterations = check_int("iterations", iterations, minimum=0)
    theta_alpha = check_finite("theta_alpha", theta_alpha, minimum=0.0, min_open=True)
    theta_beta = check_finite("theta_beta", theta_beta, minimum=0.0, min_open=True)
    theta_gamma = check_finite("theta_gamma", theta_gamma, minimum=0.0, min_open=True)
    w1, w2 = _check_weight("w1", w1), _check_weight("w2", w2)
    method = check_choice("method", method, CRF_METHODS)
    B, K, H, W = unary_logits.shape
    if method == "auto":
        method = "exact" if H * W <= EXACT_MAX_PIXELS else "permutohedral"

    out_dtype = unary_logits.dtype
    dtype = torch.float64 if out_dtype == torch.float64 else torch.float32  # half precision is too coarse
    logits = unary_logits.to(dtype).permute(0, 2, 3, 1).reshape(B, H * W, K)  # (B, N, K)
    kernels = []  # (weight, features (B or 1, N, d), cache key or None) of each kernel that is switched on
    if not _is_zero(w1):
        kernels.append((w1, _bilateral_features(image, theta_alpha, theta_beta, dtype), None))
    if not _is_zero(w2):  # the same for every image, and for every image of this size
        key = (H, W, theta_gamma, dtype, logits.device)
        kernels.append((w2, _positions(H, W, theta_gamma, dtype, logits.device), key))

    if not kernels:
        q = torch.softmax(logits, dim=-1)
    elif method == "exact":
        q = torch.stack([_mean_field(logits[b], _ExactMessage(kernels, b), iterations) for b in range(B)])
    else:
        q = _mean_field(logits, _LatticeMessage(kernels, B, cache), iterations)
    return q.reshape(B, H, W, K).permute(0, 3, 1, 2).to(out_dtype).contiguous()


class DenseCRF(nn.Module):
    """The fully connected CRF as a module: ``forward(unary_logits, image)`` runs :func:`dense_crf`.

    Input ``(B, K, H, W)`` logits and a ``(B, C, H, W)`` image with colours in 0..255; output the marginals
    ``(B, K, H, W)``. The kernel widths, ``iterations`` and ``method`` are plain attributes; the weights
    ``w1`` and ``w2`` are ``nn.Parameter`` when ``learnable=True`` (trained through the unrolled mean-field
    iterations, as in CRF-as-RNN, Zheng et al. 2015), floats otherwise. Keyword arguments as
    :func:`dense_crf`.

    >>> import torch
    >>> crf = DenseCRF(iterations=3, learnable=True)
    >>> [name for name, _ in crf.named_parameters()]
    ['w1', 'w2']
    >>> crf(torch.zeros(2, 4, 8, 8), torch.zeros(2, 3, 8, 8)).shape
    torch.Size([2, 4, 8, 8])
    """

    def __init__(
        self,
        *,
        iterations: int = 5,
        theta_alpha: float = 80.0,
        theta_beta: float = 13.0,
        w1: float = 10.0,
        theta_gamma: float = 3.0,
        w2: float = 3.0,
        method: str = "auto",
        learnable: bool = False,
    ) -> None:
        super().__init__()
        self.iterations = check_int("iterations", iterations, minimum=0)
        self.theta_alpha = check_finite("theta_alpha", theta_alpha, minimum=0.0, min_open=True)
        self.theta_beta = check_finite("theta_beta", theta_beta, minimum=0.0, min_open=True)
        self.theta_gamma = check_finite("theta_gamma", theta_gamma, minimum=0.0, min_open=True)
        self.method = check_choice("method", method, CRF_METHODS)
        w1, w2 = check_finite("w1", w1, minimum=0.0), check_finite("w2", w2, minimum=0.0)
        if learnable:
            self.w1 = nn.Parameter(torch.tensor(w1))
            self.w2 = nn.Parameter(torch.tensor(w2))
        else:
            self.w1, self.w2 = w1, w2
        # the smoothness kernel's lattice depends only on (H, W, theta_gamma): kept for the next image of
        # the same size (one entry, so memory stays bounded)
        self._lattice_cache: dict = {}

    def forward(self, unary_logits: Tensor, image: Tensor) -> Tensor:
        return _dense_crf(
            unary_logits,
            image,
            iterations=self.iterations,
            theta_alpha=self.theta_alpha,
            theta_beta=self.theta_beta,
            w1=self.w1,
            theta_gamma=self.theta_gamma,
            w2=self.w2,
            method=self.method,
            cache=self._lattice_cache,
        )

    def extra_repr(self) -> str:
        w1, w2 = (float(w.detach()) if isinstance(w, Tensor) else w for w in (self.w1, self.w2))
        return (
            f"iterations={self.iterations}, theta_alpha={self.theta_alpha:g}, theta_beta={self.theta_beta:g}, "
            f"w1={w1:g}, theta_gamma={self.theta_gamma:g}, w2={w2:g}, method={self.method!r}"
        )


# ----------------------------------------------------------------------------------------------------------
# Inputs and features


def _check_inputs(unary_logits: Tensor, image: Tensor) -> None:
    if not isinstance(unary_logits, Tensor) or not unary_logits.is_floating_point():
        raise TypeError(f"unary_logits must be a floating point tensor; got {_describe(unary_logits)}")
    if not isinstance(image, Tensor) or not (image.is_floating_point() or image.dtype == torch.uint8):
        raise TypeError(f"image must be a uint8 or floating point tensor; got {_describe(image)}")
    if unary_logits.dim() != 4 or unary_logits.shape[1] < 1 or unary_logits.numel() == 0:
        raise ValueError(
            f"unary_logits must have shape (B, K, H, W) with no empty dimension; got {tuple(unary_logits.shape)}"
        )
    B, _, H, W = unary_logits.shape
    if image.dim() != 4 or image.shape[0] != B or image.shape[2:] != (H, W) or image.shape[1] < 1:
        raise ValueError(
            f"image must have shape (B, C, H, W) = ({B}, C, {H}, {W}) to match unary_logits; "
            f"got {tuple(image.shape)}"
        )
    if image.device != unary_logits.device:
        raise ValueError(
            f"image must be on the device of unary_logits ({unary_logits.device}); got {image.device}"
        )


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor"
    return type(value).__name__


def _check_weight(name: str, value: float | Tensor) -> float | Tensor:
    """A float >= 0, or a one-element tensor (a learnable weight, whose value training may move)."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or not value.is_floating_point():
            raise ValueError(f"{name} must be a number or a one-element floating point tensor; got {value!r}")
        return value.reshape(())
    return check_finite(name, value, minimum=0.0)


def _is_zero(weight: float | Tensor) -> bool:
    return not isinstance(weight, Tensor) and weight == 0.0


def _positions(H: int, W: int, theta: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(1, H * W, 2)``: ``(x, y) / theta`` of every pixel in row-major order."""
    y, x = torch.meshgrid(
        torch.arange(H, dtype=dtype, device=device),
        torch.arange(W, dtype=dtype, device=device),
        indexing="ij",
    )
    return torch.stack([x, y], dim=-1).reshape(1, H * W, 2) / theta


def _bilateral_features(image: Tensor, theta_alpha: float, theta_beta: float, dtype: torch.dtype) -> Tensor:
    """``(B, H * W, 2 + C)``: ``(x, y) / theta_alpha`` then the colours ``/ theta_beta``."""
    B, C, H, W = image.shape
    colours = image.to(dtype).permute(0, 2, 3, 1).reshape(B, H * W, C) / theta_beta
    return torch.cat([_positions(H, W, theta_alpha, dtype, image.device).expand(B, -1, -1), colours], dim=-1)


# ----------------------------------------------------------------------------------------------------------
# Mean field


def _mean_field(logits: Tensor, add_message, iterations: int) -> Tensor:
    """``Q <- softmax(logits + message(Q))`` from ``Q = softmax(logits)``, labels on the last dimension;
    ``add_message(x, q)`` returns ``x + sum_m w_m kbar_m q``."""
    q = torch.softmax(logits, dim=-1)
    for _ in range(iterations):
        q = torch.softmax(add_message(logits, q), dim=-1)
    return q


class _ExactMessage:
    """``x, Q (N, K) -> x + sum_m w_m D_m^{-1/2} K_m D_m^{-1/2} Q`` for image ``b``, every pair taken.

    The ``(N, N)`` matrix is built once when it has at most ``_BLOCK_ENTRIES`` entries, else recomputed
    block of rows by block of rows at every call.
    """

    def __init__(self, kernels: list[tuple[float | Tensor, Tensor, tuple | None]], b: int) -> None:
        self.weights = [w for w, _, _ in kernels]
        # (N, d_m) centred features: smaller norms, less rounding in |a|^2 + |b|^2 - 2 a.b
        self.features = [f[b if f.shape[0] > 1 else 0] for _, f, _ in kernels]
        self.features = [f - f.mean(0) for f in self.features]
        self.n = n = self.features[0].shape[0]
        self.block = max(1, _BLOCK_ENTRIES // n)
        self.matrix = None
        if n * n <= _BLOCK_ENTRIES:  # small: one matrix, each Gaussian computed once
            for w, f in zip(self.weights, self.features, strict=True):
                kernel = _gaussian(f, f)
                s = kernel.sum(1).rsqrt()
                term = w * kernel.mul_(s[:, None]).mul_(s[None, :])
                self.matrix = term if self.matrix is None else self.matrix + term
        else:  # D_m^{-1/2} from the row sums, one block of rows at a time
            self.inv_sqrt = [
                torch.cat(
                    [_gaussian(f[i : i + self.block], f).sum(1) for i in range(0, n, self.block)]
                ).rsqrt()
                for f in self.features
            ]

    def _rows(self, start: int, stop: int) -> Tensor:
        """Rows ``[start, stop)`` of ``sum_m w_m D_m^{-1/2} K_m D_m^{-1/2}``."""
        out = 0
        for w, f, s in zip(self.weights, self.features, self.inv_sqrt, strict=True):
            out = out + w * _gaussian(f[start:stop], f).mul_(s[start:stop, None]).mul_(s[None, :])
        return out

    def __call__(self, x: Tensor, q: Tensor) -> Tensor:
        if self.matrix is not None:
            return torch.addmm(x, self.matrix, q)
        return x + torch.cat([self._rows(i, i + self.block) @ q for i in range(0, self.n, self.block)])


def _gaussian(a: Tensor, b: Tensor) -> Tensor:
    """``exp(-|a_i - b_j|^2 / 2)``, ``(n, d), (m, d) -> (n, m)``.

    Squared distances are capped at 170: ``exp(-85) ~ 1e-37`` instead of ``exp`` of far pairs landing in
    subnormal numbers, which CPUs compute many times slower (the change to a row sum is below 1e-33).
    """
    sq = torch.addmm((a * a).sum(1)[:, None].expand(a.shape[0], b.shape[0]), a, b.T, alpha=-2.0)
    return sq.add_((b * b).sum(1)[None, :]).clamp_(0.0, 170.0).mul_(-0.5).exp_()


class _LatticeMessage:
    """``x, Q (B, N, K) -> x + sum_m w_m D_m^{-1/2} K_m D_m^{-1/2} Q`` with lattice filters ``K_m``, ``D_m = K_m 1``.

    ``kernels`` holds ``(weight, features, key)``, features ``(B, N, d_m)``, or ``(1, N, d_m)`` for a kernel
    that every image shares (positions only): its lattice is built once, repeated per image, and kept in
    ``cache`` under ``key`` when both are given. The kernels' lattices are merged into one: the splat
    matrices stacked and the slice matrices side by side (``D^{-1/2}`` folded into both, and the weights
    into the slice unless one is a tensor), one blur over all vertices; an iteration is two sparse products.
    """

    def __init__(
        self, kernels: list[tuple[float | Tensor, Tensor, tuple | None]], images: int, cache
    ) -> None:
        lattices, scales, weights = [], [], []
        for weight, features, key in kernels:
            if cache is not None and key is not None and key in cache:
                lattice, inv_sqrt = cache[key]
            else:
                lattice = _Permutohedral(features)
                inv_sqrt = (lattice.row_sums() + 1e-20).rsqrt()  # (P,) D^{-1/2}
                if cache is not None and key is not None:
                    cache.clear()
                    cache[key] = lattice, inv_sqrt
            if features.shape[0] != images:
                lattice, inv_sqrt = lattice.repeat(images), inv_sqrt.repeat(images)
            lattices.append(lattice)
            scales.append(inv_sqrt)
            weights.append(
                torch.as_tensor(weight, dtype=features.dtype, device=features.device).expand(lattice.vertices)
            )
        device = scales[0].device
        offsets = [0]
        for lattice in lattices:
            offsets.append(offsets[-1] + lattice.vertices)
        total = offsets.pop()  # the empty vertex, 0 forever, stands for every missing neighbour

        # one splat matrix (total + 1, P): the CSR rows of each lattice one after the other, then the empty
        # vertex's empty row
        splats = [_scale_csr_columns(lat.splat, scale) for lat, scale in zip(lattices, scales, strict=True)]
        crow, nnz = [splats[0].crow_indices()[:1]], 0
        for splat in splats:
            crow.append(splat.crow_indices()[1:] + nnz)
            nnz += splat.values().numel()
        crow.append(crow[-1][-1:])
        self.splat = _csr(
            torch.cat(crow),
            torch.cat([m.col_indices() for m in splats]),
            torch.cat([m.values() for m in splats]),
            (total + 1, splats[0].shape[1]),
            small=True,
        )
        # one slice matrix (P, total + 1): row p holds its vertices of every lattice, ascending; float weights
        # are folded in, tensor weights (learnable) multiply the blurred vertex values
        folded = all(not isinstance(w, Tensor) for w, _, _ in kernels)
        vertex = torch.cat([lat.vertex + o for lat, o in zip(lattices, offsets, strict=True)])  # (corners, P)
        bary = torch.cat(
            [
                lat.bary * (s * w if folded else s)
                for lat, s, (w, _, _) in zip(lattices, scales, kernels, strict=True)
            ]
        )
        corners, P = vertex.shape
        rows = torch.arange(0, P * corners + 1, corners, device=device)
        self.slice = _csr(rows, vertex.T.reshape(-1), bary.T.reshape(-1), (P, total + 1), small=True)
        # the blur directions of every lattice side by side; a lattice with fewer directions stays put
        self.neighbours = []
        for j in range(max(len(lat.neighbours) for lat in lattices)):
            pair = []
            for side in (0, 1):
                parts = []
                for lat, o in zip(lattices, offsets, strict=True):
                    if j < len(lat.neighbours):
                        n = lat.neighbours[j][side]
                        parts.append(torch.where(n < lat.vertices, n + o, total))
                    else:
                        parts.append(torch.full((lat.vertices,), total, device=device))
                pair.append(torch.cat(parts + [torch.tensor([total], device=device)]))
            self.neighbours.append(tuple(pair))
        self.weights = None if folded else torch.cat(weights + [weights[0].new_zeros(1)])[:, None]

    def __call__(self, x: Tensor, q: Tensor) -> Tensor:
        B, N, K = q.shape
        lattice = _blur(self.splat @ q.reshape(B * N, K), self.neighbours)  # (total + 1, K)
        if self.weights is not None:
            lattice = lattice * self.weights
        return torch.addmm(x.reshape(B * N, K), self.slice, lattice).view(B, N, K)


def _blur(lattice: Tensor, neighbours: list[tuple[Tensor, Tensor]]) -> Tensor:
    """``[1/2, 1, 1/2]`` along each lattice direction: ``v + (v[minus] + v[plus]) / 2``."""
    for minus, plus in neighbours:
        lattice = torch.add(
            lattice, lattice.index_select(0, minus) + lattice.index_select(0, plus), alpha=0.5
        )
    return lattice


def _scale_csr_columns(matrix: Tensor, scale: Tensor) -> Tensor:
    """``matrix @ diag(scale)`` for a CSR matrix."""
    col = matrix.col_indices()
    return _csr(matrix.crow_indices(), col, matrix.values() * scale.index_select(0, col), matrix.shape)


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int], *, small: bool = False) -> Tensor:
    """A CSR matrix; ``small=True``: with int32 indices if they fit (the sparse kernels take them as they are,
    int64 indices are converted at every product)."""
    if small and max(values.numel(), *shape) < 2**31:
        crow, col = crow.int(), col.int()
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape)


# ----------------------------------------------------------------------------------------------------------
# Permutohedral lattice (Adams, Baek & Davis 2010), step by step as Krähenbühl's implementation


class _Permutohedral:
    """Gaussian filter ``v_i -> sum_j exp(-|f_i - f_j|^2 / 2) v_j`` (approximately) for ``features (B, N, d)``.

    The ``P = B N`` points share one lattice of ``M`` vertices, the image index being the most significant
    digit of every vertex key, so images never mix. Point ``p`` lies in the simplex of vertices
    ``vertex[:, p]`` (``vertex`` is ``(d + 1, P)``, ascending) with barycentric weights ``bary[:, p]`` (times Adams' scaling
    ``1 / (1 + 2^-d)``, which belongs to the slice); ``splat`` is the ``(M, P)`` CSR matrix of those weights.
    ``neighbours`` holds, for each of the ``d + 1`` blur directions, the ``minus`` and ``plus`` neighbour of
    every vertex, ``M`` where there is none.
    """

    def __init__(self, features: Tensor) -> None:
        B, N, d = features.shape
        P, d1, device, dtype = B * N, d + 1, features.device, features.dtype
        f = features.reshape(P, d).T  # (d, P)

        # 1. Elevate onto the plane {sum = 0} of R^{d+1}, y = E f (Adams et al. 2010, p. 5), E scaled so that the
        #    lattice's blur has the Gaussian's standard deviation (p. 6); the float constant of the C++ code.
        inv_std = float(torch.tensor(math.sqrt(2.0 / 3.0) * d1, dtype=torch.float32))
        elevated = torch.empty(d1, P, dtype=dtype, device=device)
        running = torch.zeros(P, dtype=dtype, device=device)
        for j in range(d, 0, -1):
            scaled = f[j - 1] * (inv_std / math.sqrt(j * (j + 1)))
            elevated[j] = running - j * scaled
            running = running + scaled
        elevated[0] = running
        if not bool(elevated.abs().max() < _MAX_COORDINATE):  # also catches inf and nan
            raise ValueError(
                f"the features span too wide a range for the permutohedral lattice (coordinates must stay below "
                f"{_MAX_COORDINATE}, as the 16-bit keys of pydensecrf); use a larger theta_alpha / theta_beta "
                "or method='exact'"
            )

        # 2. The closest remainder-0 point: every coordinate to the nearest multiple of d + 1 (ties down), and
        #    the simplex around the point: rank[i] = how many coordinates of elevated - rem0 are larger than
        #    coordinate i (ties: the lower index counts as larger).
        q = torch.ceil(elevated / d1 - 0.5)  # rem0 = (d + 1) q
        diff = elevated - d1 * q
        rank = torch.zeros(d1, P, dtype=torch.long, device=device)
        for i in range(d):
            for j in range(i + 1, d1):
                smaller = diff[i] < diff[j]
                rank[i] += smaller
                rank[j] += ~smaller
        rank += q.sum(0).long()  # off the plane by this many steps of d + 1
        wrap = (rank < 0).long() - (rank > d).long()  # bring the point back onto the plane
        rank += d1 * wrap
        q += wrap.to(dtype)

        # 3. Barycentric coordinates of the point in its simplex (p. 10).
        delta = elevated / d1 - q
        bary = torch.zeros(d + 2, P, dtype=dtype, device=device)
        bary.scatter_add_(0, d - rank, delta)
        bary.scatter_add_(0, d + 1 - rank, -delta)
        bary[0] += 1.0 + bary[d + 1]

        # 4. Vertex r of the simplex has key rem0[:d] + r - (d + 1) [rank[:d] >= d + 1 - r]: every coordinate of
        #    a remainder-r vertex is r modulo d + 1, so a key is the digits (r, q_0, ..., q_{d-1}) with
        #    key_i = (d + 1) q_i + r. One integer code per vertex, the image the most significant digit:
        #    code = (image (d + 1) + r) Q + sum_i (q_i - low_i) stride_i, Q = prod_i span_i, the q digits padded
        #    so that the blur's neighbours never carry.
        q0 = q[:d].long()  # (d, P) the q digits of vertex 0
        low = q0.amin(1) - 2
        span = (q0.amax(1) - low + 2).tolist()
        strides = [1] * d
        for k in range(d - 2, -1, -1):
            strides[k] = strides[k + 1] * span[k + 1]
        Q = strides[0] * span[0]
        if B * d1 * Q >= 2**62:
            raise ValueError(
                "the permutohedral lattice keys of these features do not fit in 64 bits; use a larger "
                "theta_alpha / theta_beta or method='exact'"
            )
        itype = torch.int32 if B * d1 * Q < 2**31 else torch.long  # int32 sorts faster
        stride = torch.tensor(strides, dtype=itype, device=device)
        base = ((q0 - low[:, None]).to(itype) * stride[:, None]).sum(0, dtype=itype)  # (P,) code of vertex 0
        if B > 1:
            base = (base.view(B, N) + torch.arange(B, dtype=itype, device=device)[:, None] * (d1 * Q)).view(P)
        # drop[r] = sum of stride_i over the coordinates whose q digit drops at vertex r (rank_i >= d + 1 - r)
        drop = torch.zeros(d + 2, P, dtype=itype, device=device)
        drop.scatter_add_(0, d + 1 - rank[:d], stride[:, None].expand(d, P))
        r = torch.arange(d1, dtype=itype, device=device)
        codes = base + r[:, None] * Q - torch.cumsum(drop, 0, dtype=itype)[:d1]  # (d + 1, P)

        # 5. The vertices: equal codes are one vertex. All entries of a vertex share its remainder r, so a
        #    stable sort of the codes (remainder-major, entry r P + p) keeps each vertex's points ascending:
        #    the CSR layout of the splat matrix.
        codes = codes.reshape(-1)
        sorted_codes, perm = torch.sort(codes, stable=True)
        keys, counts = torch.unique_consecutive(sorted_codes, return_counts=True)
        M = keys.numel()
        is_new = torch.ones_like(perm)
        is_new[1:] = sorted_codes[1:] != sorted_codes[:-1]
        ids = torch.cumsum(is_new, 0, dtype=torch.int32) - 1
        vertex = torch.empty_like(ids).scatter_(0, perm, ids).view(d1, P)  # int32: cheaper to move
        crow = torch.zeros(M + 1, dtype=torch.long, device=device)
        crow[1:] = torch.cumsum(counts, 0)
        bary = bary[:d1] * (1.0 / (1.0 + 2.0 ** (-d)))  # (d + 1, P), Adams' scaling
        self.splat = _csr(crow, perm % P, bary.reshape(-1).index_select(0, perm), (M, P))
        # r is the most significant digit after the image: a point's vertices ascend with r
        self.vertex, self.bary = vertex, bary  # (d + 1, P)
        self.points, self.vertices = P, M

        # 6. Blur neighbours along each of the d + 1 lattice directions. From remainder r >= 1 the "minus"
        #    neighbour (key - 1, + (d + 1) on coordinate j) is r - 1 with q_j + 1; from r = 0 it is r = d with
        #    every other q_i - 1. The "plus" neighbour is the inverse relation.
        remainder = torch.div(keys, Q, rounding_mode="floor") % d1
        step = torch.tensor(strides + [0], dtype=keys.dtype, device=device)[:, None]  # (d + 1, 1)
        wanted = torch.where(remainder > 0, keys - Q + step, keys + d * Q - sum(strides) + step)  # (d + 1, M)
        pos = torch.searchsorted(keys, wanted.reshape(-1)).clamp_max(M - 1).view(d1, M)
        found = keys[pos] == wanted
        minus = torch.where(found, pos, M)
        plus = torch.full((d1, M + 1), M, device=device)  # column M: a dump for the missing ones
        plus.scatter_(1, minus, torch.arange(M, device=device).expand(d1, M))
        self.neighbours = list(zip(minus.unbind(0), plus[:, :M].unbind(0), strict=True))

    def row_sums(self) -> Tensor:
        """``D = K 1``, ``(P,)``: the filter applied to ones."""
        ones = torch.ones(self.points, 1, dtype=self.bary.dtype, device=self.bary.device)
        lattice = F.pad(self.splat @ ones, (0, 0, 0, 1))  # (M + 1, 1)
        empty = torch.tensor([self.vertices], device=lattice.device)
        lattice = _blur(lattice, [(torch.cat([m, empty]), torch.cat([p, empty])) for m, p in self.neighbours])
        return (self.bary * lattice[self.vertex, 0]).sum(0)

    def repeat(self, images: int) -> _Permutohedral:
        """The lattice of ``images`` copies of the same points (their vertices kept apart)."""
        out = _Permutohedral.__new__(_Permutohedral)
        P, M, device = self.points, self.vertices, self.vertex.device
        copies = torch.arange(images, device=device)
        out.points, out.vertices = images * P, images * M
        out.vertex = (self.vertex[:, None, :] + (copies * M)[None, :, None]).reshape(-1, images * P)
        out.bary = self.bary.repeat(1, images)
        crow, col, values = self.splat.crow_indices(), self.splat.col_indices(), self.splat.values()
        crow = torch.cat([crow[:1]] + [crow[1:] + k * values.numel() for k in range(images)])
        col = (col[None] + (copies * P)[:, None]).reshape(-1)
        out.splat = _csr(crow, col, values.repeat(images), (images * M, images * P))
        out.neighbours = [
            tuple(torch.where(n < M, n + (copies * M)[:, None], images * M).reshape(-1) for n in pair)
            for pair in self.neighbours
        ]
        return out
