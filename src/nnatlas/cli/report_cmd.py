"""``nnatlas report TARGET -o report.html``: everything about one run or one model on one HTML page.

TARGET is a run folder of ``nnatlas train`` (its configuration, curves, final metrics, a confusion matrix or
per-class IoU on the validation set, sample predictions) or a model (a registered name, ``torchvision:NAME``
or ``package.module:factory``, as ``nnatlas inspect`` takes: the summary table, parameters and MACs per stage,
receptive-field growth per layer, the effective receptive field, the first layer's filters). With
``--experiments DIR`` every experiment result found there is added (claim, verdict, key number, figure).
The page is one file: images inlined, no script, nothing fetched from the network.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from nnatlas.cli.common import UsageError, check_free


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="one self-contained HTML page about a run or a model (and experiment results)",
        description="Write one HTML file about TARGET. A run folder (runs/NAME): configuration, training "
        "curves, final metrics, a confusion matrix (classification) or per-class IoU (segmentation) on the "
        "validation set, sample predictions. A model (registered name, torchvision:NAME, "
        "package.module:factory): the summary table, parameters and MACs per stage, receptive-field growth "
        "per layer, the effective receptive field and the first layer's filters (random weights). "
        "--experiments DIR adds every experiment result under DIR. Images are inlined; the page loads "
        "nothing from the network.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("target", metavar="TARGET", help="a run folder or a model name")
    p.add_argument("-o", "--output", default="report.html", help="the HTML file to write")
    p.add_argument("--experiments", default=None, metavar="DIR", help="add the experiment results under DIR")
    p.add_argument(
        "--input", default=None, metavar="B,C,H,W", help="input shape of a model (default: its own)"
    )
    p.add_argument(
        "--weights", default="final", choices=("final", "ema", "checkpoint"), help="weights of a run"
    )
    p.add_argument("--samples", type=int, default=12, help="sample predictions shown for a run")
    p.add_argument("--erf-samples", type=int, default=2, help="random inputs averaged for the ERF of a model")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nnatlas._validate import check_int

    try:
        check_int("--samples", args.samples, minimum=0, maximum=256)
        check_int("--erf-samples", args.erf_samples, minimum=0, maximum=64)
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = Path(args.output)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o/--output must end in .html; got {str(out)!r}")
    if not out.parent.is_dir():
        raise UsageError(f"the folder of -o/--output does not exist: {str(out.parent)!r}")
    check_free(out, "-o/--output", args.overwrite)
    experiments = _experiment_results(args.experiments) if args.experiments else []
    target = Path(args.target)
    t0 = time.perf_counter()
    if target.is_dir():
        report = _run_report(target, args)
    elif "/" in args.target or "\\" in args.target or args.target.startswith("."):
        raise UsageError(f"TARGET {args.target!r} is not a run folder (no such folder)")
    else:
        report = _model_report(args.target, args)
    if experiments:
        report.sections += _experiment_sections(experiments, Path(args.experiments))
    from nnatlas import __version__
    from nnatlas.viz.report import render_report

    report.footer = f"nnatlas {__version__} · written in {time.perf_counter() - t0:.1f} s"
    render_report(report, out)
    print(f"report -> {out}")
    return 0


# ---------------------------------------------------------------------------------------------------------
# A model


def _model_report(spec: str, args: argparse.Namespace):
    import torch

    from nnatlas.analysis import MetaDeviceError, ShapeError, effective_receptive_field, summary
    from nnatlas.analysis.summary import si
    from nnatlas.cli.inspect_cmd import build, default_shapes, make_inputs, parse_shape, resolve_model
    from nnatlas.viz.report import Figure, Report, Section, Table, figure_uri

    make, kind = resolve_model(spec)
    shapes = [parse_shape(args.input)] if args.input else None
    try:
        try:
            model = build(make, "meta", spec)
            sizes = shapes or default_shapes(model, spec, kind)
            s = summary(model, inputs=make_inputs(model, sizes, kind))
        except MetaDeviceError:
            model = build(make, "cpu", spec)
            sizes = shapes or default_shapes(model, spec, kind)
            s = summary(model, inputs=make_inputs(model, sizes, kind))
    except ShapeError as e:
        raise UsageError(str(e)) from None
    shown = " x ".join(str(v) for v in sizes[0])
    report = Report(
        title=f"{spec}",
        subtitle=f"model report: input {shown}, random weights",
        facts=[
            ("parameters", f"{s.total_params:,}"),
            ("trainable", f"{s.trainable_params:,}"),
            ("MACs", si(s.total_macs)),
            ("FLOPs (2 per MAC)", si(s.total_flops)),
            ("layers", f"{len(s.rows):,}"),
        ],
    )
    stages = [r for r in s.rows if r.depth == 1]
    report.sections.append(
        Section(
            heading="Parameters and MACs per stage",
            text="The direct children of the model, in the order they run; a stage's numbers include its layers'.",
            figures=[
                Figure(figure_uri(_stage_figure(stages)), "parameters (left) and MACs (right) per stage")
            ],
        )
    )
    rows = [r for r in s.rows if r.depth <= 2][:400]
    report.sections.append(
        Section(
            heading="Summary",
            text=f"Modules up to depth 2 ({len(rows)} of {len(s.rows)} rows); `nnatlas inspect {spec}` prints all.",
            table=Table(
                ["name", "type", "output shape", "parameters", "MACs", "receptive field", "jump"],
                [
                    [
                        r.name,
                        r.type,
                        "x".join(str(v) for v in r.output_shape)
                        if isinstance(r.output_shape, (list, tuple))
                        and all(isinstance(v, int) for v in r.output_shape)
                        else str(r.output_shape or "-"),  # fmt: skip
                        r.params,
                        r.macs,
                        "x".join(f"{v:g}" for v in r.rf_size) if r.rf_size else "-",
                        "x".join(f"{v:g}" for v in r.rf_jump) if r.rf_jump else "-",
                    ]
                    for r in rows
                ],
            ),
        )
    )
    rf = s.receptive_field
    if rf is not None and rf.layers:
        report.sections.append(
            Section(
                heading="Receptive field per layer",
                text="Theoretical receptive field (input pixels one output element sees) and jump (input "
                "pixels between neighbouring outputs) of every module with a spatial output, in call order.",
                figures=[Figure(figure_uri(_rf_figure(rf)), "receptive field and jump per layer")],
            )
        )
    if kind != "detection" and len(sizes) == 1 and len(sizes[0]) == 4:
        torch.manual_seed(0)
        real = build(make, "cpu", spec).eval()
        figures = []
        if args.erf_samples > 0 and rf is not None and rf.final_name is not None:
            try:
                erf = effective_receptive_field(real, (1, *sizes[0][1:]), samples=args.erf_samples)
            except ValueError:
                erf = None
            if erf is not None and erf.heatmap.dim() == 2:
                from nnatlas.viz.erf import plot_erf

                with tempfile.TemporaryDirectory() as tmp:
                    plot_erf(erf, Path(tmp) / "erf.png", title=f"{spec}: ERF of {erf.layer}")
                    figures.append(
                        Figure(figure_uri(Path(tmp) / "erf.png"), f"effective receptive field of {erf.layer}")
                    )
        conv = next((m for m in real.modules() if isinstance(m, torch.nn.Conv2d)), None)
        if conv is not None:
            from nnatlas.viz.features import plot_filters

            with tempfile.TemporaryDirectory() as tmp:
                plot_filters(
                    conv.weight.detach(), Path(tmp) / "filters.png", title="first convolution's filters"
                )
                figures.append(Figure(figure_uri(Path(tmp) / "filters.png"), "first convolution's filters (random weights)"))  # fmt: skip
        if figures:
            report.sections.append(Section(heading="Effective receptive field and filters", figures=figures))
    return report


def _stage_figure(stages):
    from nnatlas.viz import figure

    fig, (a, b) = figure(1, 2, width=4.8, height=max(2.5, 0.28 * len(stages) + 1))
    names = [r.name for r in stages]
    y = range(len(stages))
    a.barh(y, [r.params for r in stages], color="#0072B2")
    b.barh(y, [r.macs for r in stages], color="#E69F00")
    for ax, label in ((a, "parameters"), (b, "MACs")):
        ax.set_yticks(list(y), names)
        ax.invert_yaxis()
        ax.set_xlabel(label)
    b.set_yticklabels([])
    return fig


def _rf_figure(rf):
    from nnatlas.viz import figure

    names = list(rf.layers)
    size = [float(rf.layers[n].size[0]) for n in names]
    jump = [float(rf.layers[n].jump[0]) for n in names]
    fig, ax = figure(width=7.5, height=3.4)
    finite = [v if math.isfinite(v) else float("nan") for v in size]
    ax.plot(range(len(names)), finite, label="receptive field (px)")
    ax.plot(range(len(names)), jump, label="jump (px)")
    ax.axhline(rf.input_size[-1], color="#7a7a7a", ls="--", lw=1, label=f"input width {rf.input_size[-1]} px")
    ax.set_yscale("log")
    ax.set_xlabel("layer (call order)")
    ax.set_ylabel("pixels of the input")
    ax.legend()
    return fig


# ---------------------------------------------------------------------------------------------------------
# A run


def _run_report(folder: Path, args: argparse.Namespace):
    from nnatlas.cli.runs import read_run_config
    from nnatlas.viz.report import Figure, Report, Section, Table, figure_uri

    config = read_run_config(folder, flag="TARGET", options=False)
    records = _records(folder)
    last = records[-1] if records else {}
    task = config["task"]
    report = Report(
        title=folder.resolve().name,
        subtitle=f"run report: {task}, model {config.get('model')}, data {config.get('data')}",
        facts=[("task", task), ("model", config.get("model")), ("data", config.get("data"))]
        + [("epochs run", last.get("epoch", 0))]
        + [(k, _fmt(v)) for k, v in last.items() if k.startswith("val_") and isinstance(v, (int, float))][:6],
    )
    if records:
        from nnatlas.viz import plot_curves

        with tempfile.TemporaryDirectory() as tmp:
            plot_curves(records, Path(tmp) / "curves.png", title=folder.name)
            report.sections.append(
                Section(
                    heading="Training curves",
                    figures=[Figure(figure_uri(Path(tmp) / "curves.png"), "losses and accuracies per epoch")],
                )
            )
        report.sections.append(
            Section(
                heading="Final metrics",
                text=f"The last row of metrics.jsonl (epoch {last.get('epoch')}).",
                table=Table(
                    ["metric", "value"], [[k, v] for k, v in last.items() if k not in ("non_finite",)]
                ),
            )
        )
    cli = config.get("cli") if isinstance(config.get("cli"), dict) else {}
    flat = {**{k: v for k, v in config.items() if k not in ("cli", "palette")}, **{f"--{k}": v for k, v in cli.items()}}  # fmt: skip
    report.sections.append(
        Section(
            heading="Configuration",
            text="config.json of the run (the options it was started with as --name).",
            table=Table(
                ["key", "value"],
                [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in flat.items()],
            ),  # fmt: skip
        )
    )
    report.sections += _evaluation_sections(folder, config, args)
    return report


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _records(folder: Path) -> list[dict[str, Any]]:
    from nnatlas.engine.runs import read_jsonl

    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    try:
        rows = read_jsonl(path)
    except ValueError as e:
        raise UsageError(str(e)) from None
    for i, row in enumerate(rows, 1):
        if "epoch" not in row:
            raise UsageError(f"{str(path)!r} row {i} is not a metrics row (no epoch)")
    return rows


def _evaluation_sections(folder: Path, config: dict[str, Any], args: argparse.Namespace) -> list:
    """Predictions of the trained model on the validation set; a section saying why when it cannot run."""
    from nnatlas.viz.report import Section

    if not isinstance(config.get("cli"), dict):
        return [Section("Predictions", text="Not available: config.json holds no command-line options.")]
    import torch

    from nnatlas.cli.runs import WEIGHT_FILES, read_weights, recipe_of, saved_args
    from nnatlas.engine import CheckpointError, load_model_state

    try:
        recipe = recipe_of(config, folder)
        built = recipe.build(saved_args(config, download=False, limit_train=None, quiet=True))
        state = read_weights(folder, args.weights)
        load_model_state(built.model, state, folder / WEIGHT_FILES[args.weights])
    except (UsageError, ValueError, TypeError, OSError, CheckpointError) as e:
        return [Section("Predictions", text=f"Not available: {str(e).splitlines()[0] if str(e) else type(e).__name__}")]  # fmt: skip
    model = built.model.eval()
    torch.manual_seed(0)
    task = config["task"]
    classes = [str(c) for c in config.get("classes") or []]
    with torch.no_grad():
        if task == "classification":
            return _classification_sections(model, built.val, classes, args.samples)
        if task == "segmentation":
            return _segmentation_sections(model, built.val, classes, args.samples)
        if task == "detection":
            return _detection_sections(model, built.val, classes, args.samples)
        if task == "seq2seq":
            return _seq2seq_sections(model, built.val, config, args.samples)
    return []


def _batches(dataset, limit: int, batch: int = 128):
    n = min(len(dataset), limit)
    for i in range(0, n, batch):
        items = [dataset[j] for j in range(i, min(n, i + batch))]
        yield items


def _show(image):
    """``(C, H, W)`` normalised tensor -> ``(H, W, 3)`` array in [0, 1] for display."""
    x = image.detach().float()
    x = (x - x.min()) / (x.max() - x.min() + 1e-12)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x[:3].permute(1, 2, 0).numpy()


def _classification_sections(model, val, classes, samples):
    import torch

    from nnatlas.viz import figure
    from nnatlas.viz.report import Figure, Section, Table, figure_uri

    k = len(classes) or None
    preds, labels, shown = [], [], []
    for items in _batches(val, 5000):
        x = torch.stack([it[0] for it in items])
        y = torch.tensor([int(it[1]) for it in items])
        p = model(x).argmax(dim=1)
        preds.append(p)
        labels.append(y)
        if len(shown) < samples:
            shown += [(x[i], int(y[i]), int(p[i])) for i in range(min(samples - len(shown), len(x)))]
    pred, label = torch.cat(preds), torch.cat(labels)
    k = k or int(max(pred.max(), label.max()) + 1)
    names = classes or [str(i) for i in range(k)]
    cm = torch.zeros(k, k, dtype=torch.long)
    cm.index_put_((label, pred), torch.ones_like(label), accumulate=True)
    fig, ax = figure(width=min(7.0, 2.5 + 0.45 * k), height=min(6.5, 2.2 + 0.45 * k))
    ax.imshow(cm.numpy(), cmap="Blues")
    ax.grid(False)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7, color="black" if cm[i, j] < cm.max() / 2 else "white")  # fmt: skip
    ax.set_xticks(range(k), names, rotation=90 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    per_class = [
        [names[i], int(cm[i].sum()), float(cm[i, i] / cm[i].sum()) if cm[i].sum() else 0.0] for i in range(k)
    ]
    sections = [
        Section(
            heading="Confusion matrix (validation set)",
            text=f"Accuracy {float((pred == label).float().mean()):.4f} on {len(label):,} validation samples.",
            table=Table(["class", "samples", "recall"], per_class),
            figures=[Figure(figure_uri(fig), "rows: true class, columns: predicted class")],
        )
    ]
    if shown:
        cols = min(6, len(shown))
        rows = -(-len(shown) // cols)
        fig, axes = figure(rows, cols, width=1.5, height=1.7, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, (x, y, p) in zip(axes.flat, shown, strict=False):
            ax.imshow(_show(x), interpolation="nearest")
            ax.set_title(f"{names[p]} ({'ok' if p == y else 'true ' + names[y]})", fontsize=7, color="#009E73" if p == y else "#D55E00")  # fmt: skip
        sections.append(Section("Sample predictions", figures=[Figure(figure_uri(fig), "predicted class (true class when wrong)")]))  # fmt: skip
    return sections


def _segmentation_sections(model, val, classes, samples):
    import torch

    from nnatlas.viz import figure
    from nnatlas.viz.report import Figure, Section, Table, figure_uri

    k = len(classes)
    inter, union, shown = torch.zeros(k), torch.zeros(k), []
    for items in _batches(val, 200, batch=16):
        x = torch.stack([it[0] for it in items])
        y = torch.stack([torch.as_tensor(it[1]) for it in items])
        out = model(x)
        out = out["out"] if isinstance(out, dict) else out
        p = out.argmax(dim=1)
        keep = y != 255
        for c in range(k):
            inter[c] += ((p == c) & (y == c) & keep).sum()
            union[c] += (((p == c) | (y == c)) & keep).sum()
        if len(shown) < samples:
            shown += [(x[i], y[i], p[i]) for i in range(min(samples - len(shown), len(x)))]
    iou = [float(inter[c] / union[c]) if union[c] else None for c in range(k)]
    valid = [v for v in iou if v is not None]
    sections = [
        Section(
            heading="Per-class IoU (validation set)",
            text=f"mIoU {sum(valid) / max(len(valid), 1):.4f} over the classes present.",
            table=Table(
                ["class", "IoU"], [[classes[c], iou[c] if iou[c] is not None else "absent"] for c in range(k)]
            ),  # fmt: skip
        )
    ]
    if shown:
        n = min(len(shown), 6)
        fig, axes = figure(n, 3, width=1.8, height=1.8, squeeze=False)
        for r, (x, y, p) in enumerate(shown[:n]):
            for c, (img, title) in enumerate(((_show(x), "image"), (y.numpy(), "truth"), (p.numpy(), "prediction"))):  # fmt: skip
                axes[r, c].imshow(img, interpolation="nearest", vmin=0, vmax=max(k - 1, 1), cmap=None if c == 0 else "tab10")  # fmt: skip
                axes[r, c].axis("off")
                if r == 0:
                    axes[r, c].set_title(title, fontsize=8)
        sections.append(Section("Sample predictions", figures=[Figure(figure_uri(fig), "image, true mask, predicted mask")]))  # fmt: skip
    return sections


def _detection_sections(model, val, classes, samples):
    import torch
    from torchvision.utils import draw_bounding_boxes

    from nnatlas.viz import figure
    from nnatlas.viz.report import Figure, Section, figure_uri

    n = min(samples, len(val), 8)
    if n == 0:
        return []
    items = [val[i] for i in range(n)]
    outputs = model([it[0] for it in items])
    fig, axes = figure(-(-n // 4), min(4, n), width=2.6, height=2.6, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (img, _), out in zip(axes.flat, items, outputs, strict=False):
        keep = out["scores"] >= 0.5
        pixels = (torch.as_tensor(_show(img)).permute(2, 0, 1) * 255).to(torch.uint8)
        labels = [f"{classes[int(c)] if int(c) < len(classes) else int(c)} {float(s):.2f}" for c, s in zip(out["labels"][keep], out["scores"][keep], strict=True)]  # fmt: skip
        drawn = draw_bounding_boxes(pixels, out["boxes"][keep], labels=labels, colors="#D55E00", width=1)
        ax.imshow(drawn.permute(1, 2, 0).numpy())
    return [Section("Sample predictions", text="Boxes scored 0.5 or more.", figures=[Figure(figure_uri(fig), "predicted boxes on validation images")])]  # fmt: skip


def _seq2seq_sections(model, val, config, samples):
    import torch

    from nnatlas.data import tokens_to_text
    from nnatlas.viz.report import Section, Table

    seq = config.get("sequences") or {}
    task, symbols = seq.get("task", "copy"), seq.get("num_symbols", 10)
    rows = []
    for i in range(min(samples, len(val))):
        src, tgt = val[i]
        out = (
            model.generate(src.unsqueeze(0), len(tgt) - 1)[0]
            if hasattr(model, "generate")
            else torch.tensor([])
        )
        text = lambda ids: " ".join(tokens_to_text([int(t) for t in ids], task=task, num_symbols=symbols))  # noqa: E731
        want = text(tgt[1:])
        got = text(out)
        rows.append([text(src), want, got, "yes" if got == want else "no"])
    return [Section("Sample decodes", text="Greedy decoding of validation sequences.", table=Table(["source", "target", "decoded", "exact"], rows))]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Experiments


def _experiment_results(folder: str) -> list[dict[str, Any]]:
    from nnatlas.experiments.base import load_results

    try:
        results = load_results(folder)
    except ValueError as e:
        raise UsageError(f"--experiments: {e}") from None
    if not results:
        raise UsageError(f"--experiments {folder!r} holds no experiment results (*/result.json)")
    for r in results:
        if not isinstance(r, dict) or not {"name", "title", "verdict", "claim", "table"} <= set(r):
            raise UsageError(
                f"--experiments {folder!r}: a result.json lacks the fields of an experiment result"
            )
    return results


def _experiment_sections(results: list[dict[str, Any]], folder: Path) -> list:
    from nnatlas.viz.report import Figure, Section, Table, figure_uri

    sections = []
    for r in results:
        figures = []
        png = folder / str(r["name"]) / "figure.png"
        if png.is_file():
            try:
                figures.append(Figure(figure_uri(png), str(r["title"])))
            except ValueError:
                pass
        rows = r["table"] if isinstance(r["table"], list) else []
        cols = list(rows[0]) if rows and isinstance(rows[0], dict) else []
        sections.append(
            Section(
                heading=f"Experiment {r['name']}: {r['title']}",
                verdict=str(r["verdict"]),
                quote=str(r["claim"].get("zh", "")),
                text=f"{r['claim'].get('en', '')} Key number: {r.get('key_number', '')}. Criterion: {r.get('criterion', '')}",  # fmt: skip
                table=Table(cols, [[row.get(c, "") for c in cols] for row in rows]) if cols else None,
                figures=figures,
            )
        )
    return sections
