"""``nnatlas predict RUN IMAGE...``: the masks a trained segmentation run predicts for images, as PNGs.

For every image it writes ``<stem>_mask.png`` (a palette PNG whose pixel values are the class ids, in the
run's colours) and ``<stem>_overlay.png`` (the image with the coloured mask blended over it). ``--crf``
refines the prediction with the fully connected CRF (:class:`nnatlas.layers.DenseCRF`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nnatlas.cli.common import UsageError, markup_safe
from nnatlas.cli.runs import WEIGHTS, load_run_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="segment images with a trained segmentation run and save coloured masks",
        description="Rebuild the model of a `nnatlas train segmentation` run, segment each IMAGE and write "
        "<stem>_mask.png (class ids, in the run's palette) and <stem>_overlay.png (the mask blended over the "
        "image) into --out. Images are prepared as the run's data were (channels, scaling, normalisation); "
        "they keep their size.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN", help="run folder of `nnatlas train segmentation` (runs/<name>)")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN/predictions)")
    p.add_argument("--weights", default="final", choices=WEIGHTS, help="which weights to use")
    p.add_argument("--crf", action="store_true", help="refine with the fully connected CRF (DenseCRF)")
    p.add_argument("--crf-iterations", type=int, default=5, help="mean-field iterations of --crf")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the mask in the overlay")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.set_defaults(func=run)


def _read_image(path: Path, channels: int) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise UsageError(f"IMAGE {str(path)!r}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"IMAGE {str(path)!r} cannot be read as an image ({e})") from None


def _prepare(image: Any, config: dict[str, Any]) -> Any:
    """The image as the run's data were: ``[0, 1]`` floats, then the run's mean and std, ``(1, C, H, W)``."""
    import numpy as np
    import torch

    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)  # (C, H, W)
    if config.get("mean") is not None:
        mean = torch.tensor(config["mean"]).view(-1, 1, 1)
        std = torch.tensor(config["std"]).view(-1, 1, 1)
        x = (x - mean) / std
    return x.unsqueeze(0)


def _palette(config: dict[str, Any]) -> list[int]:
    colours = [tuple(c) for c in config.get("palette") or []]
    flat = [v for c in colours for v in c]
    return flat + [0] * (768 - len(flat))


def run(args: argparse.Namespace) -> int:
    from nnatlas._validate import check_finite, check_int

    try:
        check_int("--crf-iterations", args.crf_iterations, minimum=0, maximum=1000)
        check_finite("--alpha", args.alpha, minimum=0.0, maximum=1.0)
    except ValueError as e:
        raise UsageError(str(e)) from None
    run_dir = Path(args.run_dir)
    model, config = load_run_model(run_dir, args.weights)
    if config["task"] != "segmentation":
        raise UsageError(
            f"RUN {str(run_dir)!r} is a {config['task']} run; predict segments with a segmentation run"
        )
    channels = int(config.get("in_channels", 3))
    images = [(Path(p), _read_image(Path(p), channels)) for p in args.images]
    out_dir = Path(args.out) if args.out else run_dir / "predictions"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --out {str(out_dir)!r}: {e.strerror}") from None

    import numpy as np
    import torch
    from PIL import Image
    from rich.console import Console

    from nnatlas.engine import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device: {e}") from None
    model.to(device)
    palette = _palette(config)
    console = Console()
    for path, image in images:
        x = _prepare(image, config).to(device)
        try:
            with torch.no_grad():
                out = model(x)
        except ValueError as e:  # too small for the model, wrong channels: the model says which
            raise UsageError(f"IMAGE {str(path)!r}: {e}") from None
        logits = out["out"] if isinstance(out, dict) else out  # (1, K, H, W)
        if args.crf:
            from nnatlas.layers import dense_crf

            rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
            logits = dense_crf(logits, rgb.unsqueeze(0).to(device), iterations=args.crf_iterations)
        labels = logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()  # (H, W)
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(palette)
        stem = path.stem
        mask.save(out_dir / f"{stem}_mask.png")
        overlay = Image.blend(image.convert("RGB"), mask.convert("RGB"), args.alpha)
        overlay.save(out_dir / f"{stem}_overlay.png")
        found = sorted(set(labels.flatten().tolist()))
        names = config.get("classes") or []
        shown = ", ".join(names[k] if k < len(names) else str(k) for k in found)
        console.print(f"{markup_safe(path)}: {markup_safe(shown)}", soft_wrap=True)
    console.print(f"saved {2 * len(images)} PNGs in {markup_safe(out_dir)}", soft_wrap=True)
    return 0
