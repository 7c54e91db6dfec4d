"""The fully connected CRF: the exact method against a literal all-pairs implementation of the paper's
mean-field update, the permutohedral lattice against the exact method and against pydensecrf (Krähenbühl's
own C++ code, when installed), and the CRF's purpose: sharper masks on the embedded shapes scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassJaccardIndex

from nnatlas.data import ShapesDataset
from nnatlas.layers import DenseCRF, dense_crf
from nnatlas.layers.crf import EXACT_MAX_PIXELS

PARAMS = {"theta_alpha": 80.0, "theta_beta": 13.0, "w1": 10.0, "theta_gamma": 3.0, "w2": 3.0}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def brute_force_crf(logits, image, *, iterations, theta_alpha, theta_beta, w1, theta_gamma, w2):
    """Krähenbühl & Koltun (2011), eq. (3)-(5) and Algorithm 1, written pair by pair in numpy float64, with
    the Potts model taken literally: mu(l, l') = [l != l']. Kernels include j = i and are normalised
    symmetrically, D^{-1/2} k D^{-1/2} with D = k 1 (pydensecrf's NORMALIZE_SYMMETRIC)."""
    K, H, W = logits.shape
    y, x = np.mgrid[0:H, 0:W]
    pos = np.stack([x.ravel(), y.ravel()], 1).astype(np.float64)
    colour = image.reshape(image.shape[0], -1).T.astype(np.float64)

    def normalised_gaussian(f):
        k = np.exp(-0.5 * ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1))
        d = 1.0 / np.sqrt(k.sum(1))
        return d[:, None] * k * d[None, :]

    appearance = normalised_gaussian(np.concatenate([pos / theta_alpha, colour / theta_beta], 1))
    smoothness = normalised_gaussian(pos / theta_gamma)
    mu = 1.0 - np.eye(K)
    unary = -logits.reshape(K, -1).T.astype(np.float64)  # (N, K)
    q = _softmax(-unary)
    for _ in range(iterations):
        pairwise = (w1 * appearance @ q + w2 * smoothness @ q) @ mu  # sum_l' mu(l, l') sum_j k(i, j) Q_j(l')
        q = _softmax(-unary - pairwise)
    return q.T.reshape(K, H, W)


def _scenes(n: int, size: int = 64, seed: int = 0):
    """``n`` shapes scenes: images ``(n, 3, S, S)`` in 0..255 and masks ``(n, S, S)``, 5 classes."""
    ds = ShapesDataset(n, size=size, task="segmentation", seed=seed)
    images, masks = zip(*(ds[i] for i in range(n)), strict=True)
    return torch.stack(images) * 255.0, torch.stack(masks)


def _blurred_logits(masks: torch.Tensor, classes: int = 5, factor: int = 8) -> torch.Tensor:
    """A low-resolution prediction: the one-hot masks averaged over ``factor`` x ``factor`` blocks and
    upsampled bilinearly; logits = log probabilities."""
    one_hot = F.one_hot(masks, classes).permute(0, 3, 1, 2).float()
    low = F.avg_pool2d(one_hot, factor)
    probs = F.interpolate(low, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    return torch.log(probs.clamp_min(1e-4))


# ---------------------------------------------------------------------------------------------------------
# exact method == the paper's update, pair by pair


@pytest.mark.parametrize(
    ("params", "iterations"),
    [
        (PARAMS, 5),
        ({"theta_alpha": 3.0, "theta_beta": 20.0, "w1": 4.0, "theta_gamma": 1.5, "w2": 2.0}, 3),
        ({"theta_alpha": 5.0, "theta_beta": 40.0, "w1": 0.0, "theta_gamma": 2.0, "w2": 5.0}, 2),
        ({"theta_alpha": 6.0, "theta_beta": 30.0, "w1": 7.0, "theta_gamma": 3.0, "w2": 0.0}, 4),
    ],
)
def test_exact_matches_brute_force_all_pairs(params, iterations):
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 1.5, size=(2, 4, 7, 9))
    image = rng.integers(0, 256, size=(2, 3, 7, 9)).astype(np.float64)
    got = dense_crf(
        torch.from_numpy(logits), torch.from_numpy(image), iterations=iterations, method="exact", **params
    )
    assert got.dtype == torch.float64
    for b in range(2):
        want = brute_force_crf(logits[b], image[b], iterations=iterations, **params)
        np.testing.assert_allclose(got[b].numpy(), want, rtol=0, atol=1e-12)


def test_exact_float32_and_row_blocks_match_brute_force(monkeypatch):
    """float32 stays within 1e-5 of the float64 reference, also when the kernel matrix is recomputed block
    of rows by block of rows (forced here with a tiny block)."""
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 1.5, size=(1, 3, 8, 6)).astype(np.float32)
    image = rng.integers(0, 256, size=(1, 3, 8, 6)).astype(np.uint8)
    want = brute_force_crf(logits[0], image[0], iterations=5, **PARAMS)
    got = dense_crf(torch.from_numpy(logits), torch.from_numpy(image), method="exact", **PARAMS)
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-5)
    monkeypatch.setattr("nnatlas.layers.crf._BLOCK_ENTRIES", 48 * 12)  # 48 x 48 matrix in blocks of 12 rows
    blocked = dense_crf(torch.from_numpy(logits), torch.from_numpy(image), method="exact", **PARAMS)
    np.testing.assert_allclose(blocked[0].numpy(), want, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# permutohedral lattice


def test_permutohedral_agrees_with_exact_on_shapes_scenes():
    """Measured: 99.6% of the labels of 3 scenes (48 x 48, seed 0) agree."""
    images, masks = _scenes(3, size=48)
    logits = _blurred_logits(masks)
    exact = dense_crf(logits, images, method="exact").argmax(1)
    lattice = dense_crf(logits, images, method="permutohedral").argmax(1)
    agreement = (exact == lattice).float().mean().item()
    assert agreement >= 0.99, agreement


def test_permutohedral_sparse_matrices_are_valid_csr():
    """Every row of the splat and slice matrices has sorted, distinct column indices (the order the
    lattice construction derives without sorting), checked by torch's own invariant checks."""
    images, masks = _scenes(2, size=40)
    with torch.sparse.check_sparse_tensor_invariants():
        dense_crf(_blurred_logits(masks), images, method="permutohedral")


def test_batch_equals_one_image_at_a_time():
    images, masks = _scenes(3, size=32)
    logits = _blurred_logits(masks)
    for method in ("exact", "permutohedral"):
        batch = dense_crf(logits, images, method=method)
        alone = torch.cat([dense_crf(logits[i : i + 1], images[i : i + 1], method=method) for i in range(3)])
        torch.testing.assert_close(batch, alone, rtol=0, atol=1e-6)


def test_auto_threshold():
    """``auto`` is exact up to EXACT_MAX_PIXELS pixels and the lattice above."""
    rng = torch.Generator().manual_seed(0)
    for h, w in ((32, 32), (32, 33)):
        logits = torch.randn(1, 3, h, w, generator=rng)
        image = torch.randint(0, 256, (1, 3, h, w), generator=rng).float()
        auto = dense_crf(logits, image)
        expected = "exact" if h * w <= EXACT_MAX_PIXELS else "permutohedral"
        torch.testing.assert_close(auto, dense_crf(logits, image, method=expected), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------
# what a CRF is for


def test_crf_raises_miou_of_a_blurred_prediction():
    """8 scenes (64 x 64, seed 0), predicted at 1/8 resolution and upsampled: measured mIoU 0.76 before and
    0.91 after the CRF with pydensecrf's example parameters; asserted: a rise of at least 0.10."""
    images, masks = _scenes(8)
    logits = _blurred_logits(masks)
    miou = MulticlassJaccardIndex(num_classes=5, average="macro")
    before = miou(logits.argmax(1), masks).item()
    after = miou(dense_crf(logits, images).argmax(1), masks).item()
    assert after >= before + 0.10, (before, after)


def test_iterations_zero_and_no_kernels_return_the_softmax():
    images, masks = _scenes(1, size=40)
    logits = _blurred_logits(masks)
    torch.testing.assert_close(dense_crf(logits, images, iterations=0), logits.softmax(1))
    torch.testing.assert_close(dense_crf(logits, images, w1=0.0, w2=0.0), logits.softmax(1))


@pytest.mark.parametrize("method", ["exact", "permutohedral"])
def test_output_is_a_distribution_in_the_input_dtype(method):
    images, masks = _scenes(1, size=24)
    logits = _blurred_logits(masks)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        q = dense_crf(logits.to(dtype), images, method=method)
        assert q.dtype == dtype and q.shape == logits.shape
        torch.testing.assert_close(q.float().sum(1), torch.ones(1, 24, 24), atol=1e-2, rtol=0)
    as_uint8 = dense_crf(logits, images.round().to(torch.uint8), method=method)
    torch.testing.assert_close(as_uint8, dense_crf(logits, images.round(), method=method))


# ---------------------------------------------------------------------------------------------------------
# gradients and the module


@pytest.mark.parametrize("method", ["exact", "permutohedral"])
def test_gradients_through_the_iterations(method):
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 4, 5, generator=rng, dtype=torch.float64, requires_grad=True)
    image = torch.randint(0, 256, (1, 3, 4, 5), generator=rng).double()
    w1 = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    w2 = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)

    def crf(logits, w1, w2):
        return dense_crf(logits, image, iterations=3, w1=w1, w2=w2, theta_alpha=4.0, method=method)

    assert torch.autograd.gradcheck(crf, (logits, w1, w2), fast_mode=True)


def test_module_matches_function_and_reuses_its_smoothness_lattice():
    crf = DenseCRF(iterations=4, theta_alpha=50.0, theta_beta=10.0, w1=8.0, theta_gamma=2.0, w2=2.0)
    assert (crf.iterations, crf.theta_alpha, crf.theta_beta, crf.theta_gamma) == (4, 50.0, 10.0, 2.0)
    assert crf.w1 == 8.0 and list(crf.parameters()) == []
    assert "theta_alpha=50" in repr(crf)
    kwargs = {
        "iterations": 4,
        "theta_alpha": 50.0,
        "theta_beta": 10.0,
        "w1": 8.0,
        "theta_gamma": 2.0,
        "w2": 2.0,
    }
    for size in (40, 48, 40):  # a new size replaces the kept lattice
        images, masks = _scenes(2, size=size, seed=size)
        logits = _blurred_logits(masks)
        torch.testing.assert_close(crf(logits, images), dense_crf(logits, images, **kwargs), rtol=0, atol=0)


def test_learnable_weights_are_parameters_and_get_gradients():
    crf = DenseCRF(learnable=True, method="permutohedral")
    names = dict(crf.named_parameters())
    assert set(names) == {"w1", "w2"} and float(names["w1"].detach()) == 10.0
    assert "w1=10" in repr(crf)
    images, masks = _scenes(2, size=40)
    q = crf(_blurred_logits(masks), images)
    assert q.is_contiguous()
    loss = F.nll_loss(torch.log(q), masks)
    loss.backward()
    assert crf.w1.grad is not None and crf.w1.grad.abs() > 0 and crf.w2.grad.abs() > 0


# ---------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"unary_logits": torch.zeros(1, 2, 8)}, ValueError, "unary_logits must have shape"),
        (
            {"unary_logits": torch.zeros(1, 2, 8, 8, dtype=torch.long)},
            TypeError,
            "unary_logits must be a float",
        ),
        (
            {"image": torch.zeros(1, 3, 8, 9)},
            ValueError,
            r"image must have shape \(B, C, H, W\) = \(1, C, 8, 8\)",
        ),
        ({"image": torch.zeros(2, 3, 8, 8)}, ValueError, "image must have shape"),
        ({"image": torch.zeros(1, 3, 8, 8, dtype=torch.int32)}, TypeError, "image must be a uint8"),
        ({"iterations": -1}, ValueError, "iterations must be an int >= 0"),
        ({"iterations": 2.0}, ValueError, "iterations must be an int"),
        ({"theta_alpha": 0.0}, ValueError, "theta_alpha must be a finite number > 0"),
        ({"theta_beta": -1.0}, ValueError, "theta_beta must be a finite number > 0"),
        ({"theta_gamma": float("nan")}, ValueError, "theta_gamma must be a finite number > 0"),
        ({"w1": -1.0}, ValueError, "w1 must be a finite number >= 0"),
        ({"w2": torch.ones(2)}, ValueError, "w2 must be a number or a one-element"),
        ({"method": "lattice"}, ValueError, "method must be one of"),
    ],
)
def test_bad_input_names_the_argument(change, error, match):
    kwargs = {"unary_logits": torch.zeros(1, 2, 8, 8), "image": torch.zeros(1, 3, 8, 8)} | change
    with pytest.raises(error, match=match):
        dense_crf(**kwargs)


def test_module_validates_at_construction():
    with pytest.raises(ValueError, match="theta_alpha must be a finite number > 0"):
        DenseCRF(theta_alpha=0)
    with pytest.raises(ValueError, match="method must be one of"):
        DenseCRF(method="grid")


def test_features_beyond_the_lattice_are_refused():
    images, masks = _scenes(1, size=40)
    logits = _blurred_logits(masks)
    with pytest.raises(ValueError, match="span too wide a range for the permutohedral lattice"):
        dense_crf(logits, images, theta_beta=1e-3, method="permutohedral")
    # 8 channels, each coordinate in range, but 11 digits of about 1000 values do not fit in an int64 key
    eight = torch.randint(0, 256, (1, 8, 40, 40), generator=torch.Generator().manual_seed(0)).float()
    with pytest.raises(ValueError, match="do not fit in 64 bits"):
        dense_crf(logits, eight, theta_beta=0.2, method="permutohedral")


# ---------------------------------------------------------------------------------------------------------
# against pydensecrf / pydensecrf2 (Krähenbühl's C++ code), when installed


def _pydensecrf(logits, image, *, iterations, theta_alpha, theta_beta, w1, theta_gamma, w2):
    dcrf = pytest.importorskip("pydensecrf.densecrf")
    K, H, W = logits.shape
    crf = dcrf.DenseCRF2D(W, H, K)
    crf.setUnaryEnergy(np.ascontiguousarray(-logits.reshape(K, -1), dtype=np.float32))
    crf.addPairwiseGaussian(sxy=theta_gamma, compat=w2)
    rgb = np.ascontiguousarray(image.transpose(1, 2, 0), dtype=np.uint8)
    crf.addPairwiseBilateral(sxy=theta_alpha, srgb=theta_beta, rgbim=rgb, compat=w1)
    return np.asarray(crf.inference(iterations)).reshape(K, H, W)


def _photo(height: int, width: int) -> np.ndarray:
    """A real photograph (matplotlib's sample Grace Hopper portrait, shipped with matplotlib), (3, H, W)."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB").resize((width, height), Image.BILINEAR)).transpose(2, 0, 1).copy()


def _smooth_logits(classes: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random logits at 1/16 resolution, upsampled, plus pixel noise: a coarse, noisy network output."""
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.normal(0.0, 2.0, (1, classes, height // 16, width // 16)))
    up = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)[0].numpy()
    return (up + rng.normal(0.0, 0.5, up.shape)).astype(np.float32)


@pytest.mark.parametrize(
    ("params", "iterations"),
    [
        (PARAMS, 5),
        ({"theta_alpha": 40.0, "theta_beta": 6.0, "w1": 5.0, "theta_gamma": 1.0, "w2": 2.0}, 10),
    ],
)
def test_permutohedral_matches_pydensecrf_on_a_photograph(params, iterations):
    pytest.importorskip("pydensecrf.densecrf")
    image = _photo(120, 160)
    logits = _smooth_logits(21, 120, 160)
    want = _pydensecrf(logits, image, iterations=iterations, **params)
    got = dense_crf(
        torch.from_numpy(logits)[None],
        torch.from_numpy(image)[None],
        iterations=iterations,
        method="permutohedral",
        **params,
    )[0].numpy()
    agreement = (got.argmax(0) == want.argmax(0)).mean()
    assert agreement >= 0.99, agreement
    np.testing.assert_allclose(got, want, atol=1e-4)  # the same lattice: float rounding only


@pytest.mark.parametrize("size", [32, 64])
def test_auto_method_agrees_with_pydensecrf_on_shapes_scenes(size):
    """32 x 32 runs the exact method, 64 x 64 the lattice; pydensecrf always runs its lattice."""
    pytest.importorskip("pydensecrf.densecrf")
    images, masks = _scenes(3, size=size, seed=1)
    images = images.round()
    logits = _blurred_logits(masks, factor=4)
    got = dense_crf(logits, images).argmax(1)
    for b in range(3):
        want = _pydensecrf(logits[b].numpy(), images[b].numpy(), iterations=5, **PARAMS).argmax(0)
        agreement = (got[b].numpy() == want).mean()
        assert agreement >= 0.99, agreement
