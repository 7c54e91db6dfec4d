"""Dense CRF: nnatlas's torch mean field against pydensecrf2 (Krähenbühl's C++ code) on the same input.

A 320 x 240 photograph (matplotlib's sample Grace Hopper portrait, shipped with matplotlib), 21 labels of
coarse, noisy logits (random at 1/16 resolution, upsampled, plus pixel noise), 5 iterations, pydensecrf's
example parameters (smoothness sxy=3 compat=3, appearance sxy=80 srgb=13 compat=10), one thread. Timed
alternately in one process, median of ``--repeats`` after 2 warm-ups each, wall and CPU time:

- ``dense_crf(method="permutohedral")``: every call builds both lattices, as pydensecrf does;
- ``DenseCRF(method="permutohedral")``: the module keeps the smoothness kernel's lattice, which depends
  only on the image size, between calls (the setting of a data set of same-size images);
- pydensecrf2: ``DenseCRF2D`` + ``setUnaryEnergy`` + ``addPairwiseGaussian`` + ``addPairwiseBilateral`` +
  ``inference(5)``.

Also reports the label agreement and the largest marginal difference. With a CUDA device, the torch side
is timed there as well. Run: ``python -m benchmarks.dense_crf`` (``pip install pydensecrf2`` for the
reference, or ``pip install nnatlas[crf]``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import cbook
from PIL import Image

from benchmarks.common import machine
from nnatlas.layers import DenseCRF, dense_crf

HEIGHT, WIDTH, LABELS, ITERATIONS = 240, 320, 21, 5
PARAMS = {"theta_alpha": 80.0, "theta_beta": 13.0, "w1": 10.0, "theta_gamma": 3.0, "w2": 3.0}


def inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(image (H, W, 3) uint8, logits (K, H, W) float32)``."""
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        im = im.convert("RGB")
        w, h = im.size  # 512 x 600: the central 4:3 crop, resized
        top = (h - w * 3 // 4) // 2
        image = np.asarray(im.crop((0, top, w, top + w * 3 // 4)).resize((WIDTH, HEIGHT), Image.BILINEAR))
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.normal(0.0, 2.0, (1, LABELS, HEIGHT // 16, WIDTH // 16)))
    up = F.interpolate(low, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)[0].numpy()
    return image.copy(), (up + rng.normal(0.0, 0.5, up.shape)).astype(np.float32)


def pydensecrf_runner(image: np.ndarray, logits: np.ndarray):
    import pydensecrf.densecrf as dcrf

    unary = np.ascontiguousarray(-logits.reshape(LABELS, -1))

    def run() -> np.ndarray:
        crf = dcrf.DenseCRF2D(WIDTH, HEIGHT, LABELS)
        crf.setUnaryEnergy(unary)
        crf.addPairwiseGaussian(sxy=PARAMS["theta_gamma"], compat=PARAMS["w2"])
        crf.addPairwiseBilateral(
            sxy=PARAMS["theta_alpha"], srgb=PARAMS["theta_beta"], rgbim=image, compat=PARAMS["w1"]
        )
        return np.asarray(crf.inference(ITERATIONS)).reshape(LABELS, HEIGHT, WIDTH)

    return run


def torch_runners(image: np.ndarray, logits: np.ndarray, device: str):
    x = torch.from_numpy(logits)[None].to(device)
    rgb = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous().to(device)
    module = DenseCRF(iterations=ITERATIONS, method="permutohedral", **PARAMS)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def functional() -> np.ndarray:
        with torch.inference_mode():
            q = dense_crf(x, rgb, iterations=ITERATIONS, method="permutohedral", **PARAMS)
        sync()
        return q[0].cpu().numpy()

    def cached() -> np.ndarray:
        with torch.inference_mode():
            q = module(x, rgb)
        sync()
        return q[0].cpu().numpy()

    return functional, cached


def time_alternately(runners: dict, *, repeats: int, warmup: int = 2) -> dict:
    """``name -> (median wall s, median CPU s)``, the runners called in turn so that drift hits all."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    wall = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            w0, c0 = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in runners}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed calls of each (>= 5)")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error(f"--repeats must be >= 5; got {args.repeats}")
    torch.set_num_threads(1)
    image, logits = inputs()
    functional, cached = torch_runners(image, logits, "cpu")
    runners = {
        "dense_crf (builds both lattices)": functional,
        "DenseCRF module (keeps the smoothness lattice)": cached,
    }
    try:
        reference = pydensecrf_runner(image, logits)
        runners["pydensecrf2"] = reference
    except ImportError:
        reference = None
        print("pydensecrf2 is not installed (pip install pydensecrf2): timing nnatlas alone")

    print(f"machine: {machine()}")
    print(f"input: {WIDTH} x {HEIGHT} photograph, {LABELS} labels, {ITERATIONS} iterations, one thread")
    if reference is not None:
        ours, theirs = functional(), reference()
        agreement = (ours.argmax(0) == theirs.argmax(0)).mean()
        print(
            f"labels agreeing with pydensecrf2: {agreement:.5%}; largest |Q - Q_ref|: {np.abs(ours - theirs).max():.2e}"
        )
    times = time_alternately(runners, repeats=args.repeats)
    ref_wall, ref_cpu = times.get("pydensecrf2", (float("nan"), float("nan")))
    print("| implementation | wall (ms) | CPU (ms) | wall ratio | CPU ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name, (wall, cpu) in times.items():
        print(
            f"| {name} | {wall * 1e3:.1f} | {cpu * 1e3:.1f} | {wall / ref_wall:.2f} | {cpu / ref_cpu:.2f} |"
        )
    if torch.cuda.is_available():
        functional, cached = torch_runners(image, logits, "cuda")
        gpu = time_alternately({"dense_crf": functional, "DenseCRF": cached}, repeats=args.repeats)
        name = torch.cuda.get_device_name(0)
        for label, (wall, _) in gpu.items():
            print(f"{label} on {name}: {wall * 1e3:.2f} ms wall")


if __name__ == "__main__":
    main()
