"""``nnatlas predict RUN IMAGE...``: what a trained segmentation or detection run sees in images, as PNGs.

Segmentation: for every image ``<stem>_mask.png`` (a palette PNG whose pixel values are the class ids, in
the run's colours) and ``<stem>_overlay.png`` (the image with the coloured mask blended over it); ``--crf``
refines the prediction with the fully connected CRF (:class:`nnatlas.layers.DenseCRF`).

Detection: for every image ``<stem>_boxes.png`` (the boxes scoring at least ``--score-threshold``, with
their class and score, and instance masks where the model predicts them, drawn by ``torchvision.utils``)
and ``<stem>_detections.json`` (every kept box, ``xyxy`` in pixels).
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
        help="segment or detect objects in images with a trained run and save the pictures",
        description="Rebuild the model of a `nnatlas train segmentation` or `nnatlas train detection` run and "
        "run it on each IMAGE. Segmentation writes <stem>_mask.png (class ids, in the run's palette) and "
        "<stem>_overlay.png (the mask blended over the image); detection writes <stem>_boxes.png (boxes with "
        "class and score, and instance masks, over the image) and <stem>_detections.json. Images are "
        "prepared as the run's data were (channels, scaling, normalisation); they keep their size.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "run_dir", metavar="RUN", help="run folder of a segmentation or detection run (runs/<name>)"
    )
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN/predictions)")
    p.add_argument("--weights", default="final", choices=WEIGHTS, help="which weights to use")
    p.add_argument("--crf", action="store_true", help="segmentation: refine with the fully connected CRF")
    p.add_argument(
        "--crf-iterations", type=int, default=5, help="segmentation: mean-field iterations of --crf"
    )
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of masks over the image")
    p.add_argument(
        "--score-threshold", type=float, default=0.5, help="detection: the lowest score of a box that is kept"
    )
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
        check_finite("--score-threshold", args.score_threshold, minimum=0.0, maximum=1.0)
    except ValueError as e:
        raise UsageError(str(e)) from None
    run_dir = Path(args.run_dir)
    model, config = load_run_model(run_dir, args.weights)
    if config["task"] not in ("segmentation", "detection"):
        raise UsageError(
            f"RUN {str(run_dir)!r} is a {config['task']} run; predict takes a segmentation or detection run"
        )
    if args.crf and config["task"] != "segmentation":
        raise UsageError(f"--crf applies to segmentation runs only (RUN {str(run_dir)!r} is a detection run)")
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
    if config["task"] == "detection":
        for path, image in images:
            _detect(model, path, image, config, args, out_dir, device, console)
        console.print(f"saved {2 * len(images)} files in {markup_safe(out_dir)}", soft_wrap=True)
        return 0
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


def _detect(
    model: Any,
    path: Path,
    image: Any,
    config: dict[str, Any],
    args: Any,
    out_dir: Path,
    device: Any,
    console: Any,
) -> None:
    """Boxes (and masks) of one image, drawn with ``torchvision.utils`` and listed as JSON."""
    import json

    import numpy as np
    import torch
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    x = _prepare(image, config)[0].to(device)
    try:
        with torch.no_grad():
            (found,) = model([x])
    except ValueError as e:
        raise UsageError(f"IMAGE {str(path)!r}: {e}") from None
    keep = found["scores"] >= args.score_threshold
    boxes, labels, scores = (
        found["boxes"][keep].cpu(),
        found["labels"][keep].cpu(),
        found["scores"][keep].cpu(),
    )
    names = config.get("classes") or []
    colours = [tuple(c) for c in config.get("palette") or []]

    def name(k: int) -> str:
        return names[k] if 0 <= k < len(names) else str(k)

    def colour(k: int) -> tuple[int, int, int]:
        return colours[k] if 0 <= k < len(colours) else (255, 0, 0)

    canvas = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
    if "masks" in found and keep.any():
        masks = found["masks"][keep].cpu()[:, 0] > 0.5  # (N, H, W)
        canvas = draw_segmentation_masks(
            canvas, masks, alpha=args.alpha, colors=[colour(int(k)) for k in labels]
        )
    if len(boxes):
        text = [f"{name(int(k))} {float(s):.2f}" for k, s in zip(labels, scores, strict=True)]
        canvas = draw_bounding_boxes(
            canvas, boxes, labels=text, colors=[colour(int(k)) for k in labels], width=1
        )
    Image.fromarray(canvas.permute(1, 2, 0).numpy()).save(out_dir / f"{path.stem}_boxes.png")
    listed = [
        {
            "label": int(k),
            "class": name(int(k)),
            "score": round(float(s), 4),
            "box": [round(float(v), 2) for v in b],
        }
        for b, k, s in zip(boxes, labels, scores, strict=True)
    ]
    (out_dir / f"{path.stem}_detections.json").write_text(json.dumps(listed, indent=1) + "\n")
    shown = ", ".join(f"{d['class']} {d['score']:.2f}" for d in listed) or "nothing"
    console.print(f"{markup_safe(path)}: {markup_safe(shown)}", soft_wrap=True)
