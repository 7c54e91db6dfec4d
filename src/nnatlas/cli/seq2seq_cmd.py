"""``nnatlas train seq2seq`` and ``nnatlas attention``: train a Transformer on an embedded sequence task,
and draw the attention of every head for one example of a trained run.

The parsers are built without importing torch; the heavy imports happen when a command runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from nnatlas.cli.common import UsageError

DEFAULT_MODEL = "transformer_seq2seq"
SEQUENCE_TASKS = ("copy", "reverse", "sort", "add")  # as nnatlas.data.SEQUENCE_TASKS, without torch
DECODING = ("greedy", "beam")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``nnatlas train seq2seq`` (ignored by the other tasks)."""
    g = p.add_argument_group(
        "seq2seq",
        "options of `nnatlas train seq2seq`: an embedded task of token sequences (--data is not used); "
        "the run also writes val_token_acc (teacher forcing) and val_exact_acc (greedy decoding)",
    )
    g.add_argument(
        "--task", dest="seq_task", default="reverse", help=f"sequence task: {', '.join(SEQUENCE_TASKS)}"
    )
    g.add_argument("--num-train", type=int, default=6_000, help="training sequences")
    g.add_argument("--num-val", type=int, default=1_000, help="held-out validation sequences")
    g.add_argument("--min-len", type=int, default=1, help="shortest sequence (digits of an operand for add)")
    g.add_argument("--max-len", type=int, default=12, help="longest sequence (digits of an operand for add)")
    g.add_argument("--symbols", type=int, default=10, help="number of distinct symbols (the base for add)")
    g.add_argument("--d-model", type=int, default=64, help="Transformer width")
    g.add_argument("--heads", type=int, default=4, help="attention heads")
    g.add_argument("--layers", type=int, default=2, help="encoder layers and decoder layers (each)")
    g.add_argument("--ff", type=int, default=256, help="feed-forward width")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout of the Transformer")
    g.add_argument("--decode", default="greedy", choices=DECODING, help="decoding for the exact-match metric")
    g.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of torch; a model this small trains fastest on one (OpenMP threads spin-wait "
        "when the cores are shared); 0 keeps torch's default",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attention",
        help="save attention heat maps of every head for one example of a trained seq2seq run",
        description="Rebuild the model of a run written by `nnatlas train seq2seq`, decode one held-out "
        "example greedily, and save one PNG per attention module (encoder self-attention, decoder "
        "self-attention, cross-attention of each layer) with a heat map for every head.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN", help="run folder of `nnatlas train seq2seq` (runs/<name>)")
    p.add_argument("--index", type=int, default=0, help="which validation example")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN/attention)")
    p.set_defaults(func=run_attention)


def _sequence_data(args: argparse.Namespace) -> tuple[Any, Any]:
    from nnatlas._suggest import unknown_choice_message
    from nnatlas.data import make_sequence_split

    if args.seq_task not in SEQUENCE_TASKS:
        raise ValueError(unknown_choice_message("sequence task", args.seq_task, SEQUENCE_TASKS))
    for key in ("num_train", "num_val"):
        if getattr(args, key) < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1; got {getattr(args, key)}")
    return make_sequence_split(
        args.seq_task,
        num_train=args.num_train,
        num_val=args.num_val,
        min_len=args.min_len,
        max_len=args.max_len,
        num_symbols=args.symbols,
        seed=args.seed,
    )


def _model_kwargs(args: argparse.Namespace, train: Any) -> dict[str, Any]:
    return {
        "vocab_size": train.vocab_size,
        "d_model": args.d_model,
        "nhead": args.heads,
        "num_encoder_layers": args.layers,
        "num_decoder_layers": args.layers,
        "dim_feedforward": args.ff,
        "dropout": args.dropout,
        "max_len": max(train.max_src_len, train.max_tgt_len),
    }


def _prepare_train(args: argparse.Namespace) -> dict[str, Any]:
    """Validate everything and build the parts; any ValueError here is a usage error (exit 2)."""
    import torch

    from nnatlas.engine import RunDirError, TrainConfig, create_run_dir, resolve_device
    from nnatlas.models import create_model, get_model_info

    args.model = getattr(args, "model", None) or DEFAULT_MODEL
    try:
        info = get_model_info(args.model)
        if info.task != "seq2seq":
            raise ValueError(f"model {args.model!r} is a {info.task} model; the task is seq2seq")
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            optimizer=args.optimizer,
            weight_decay=args.weight_decay,
            scheduler=args.scheduler,
            warmup_epochs=args.warmup_epochs,
            seed=args.seed,
            device=args.device,
            num_workers=args.workers,
        )
        resolve_device(config.device)
        if args.threads < 0:
            raise ValueError(f"--threads must be >= 0; got {args.threads}")
        if args.threads:
            torch.set_num_threads(args.threads)
        train, val = _sequence_data(args)
        kwargs = _model_kwargs(args, train)
        torch.manual_seed(args.seed)
        model = create_model(args.model, **kwargs)
        run_dir = create_run_dir(args.out, args.name or f"{args.model}-{args.seq_task}")
    except (ValueError, TypeError, RunDirError) as e:
        raise UsageError(str(e)) from None
    return {
        "config": config,
        "train": train,
        "val": val,
        "model": model,
        "kwargs": kwargs,
        "run_dir": run_dir,
    }


def run_train(args: argparse.Namespace) -> int:
    parts = _prepare_train(args)
    from rich.console import Console

    from nnatlas.analysis import count_parameters
    from nnatlas.cli.progress import NullProgress, RichProgress, finish_run
    from nnatlas.data import PAD_ID, pad_collate
    from nnatlas.engine import Seq2SeqTask, Trainer

    config, train, val, model, run_dir = (parts[k] for k in ("config", "train", "val", "model", "run_dir"))
    console = Console(stderr=True, quiet=args.quiet)
    console.print(
        f"training [bold]{args.model}[/] ({count_parameters(model):,} parameters) on [bold]{args.seq_task}[/] "
        f"(lengths {args.min_len}..{args.max_len}, {train.vocab_size} tokens; {len(train)} train / "
        f"{len(val)} held-out) -> {run_dir}",
        soft_wrap=True,
    )
    extra = {
        "model": args.model,
        "data": f"sequences:{args.seq_task}",
        "model_kwargs": parts["kwargs"],
        "sequences": {
            "task": args.seq_task,
            "num_train": args.num_train,
            "num_val": args.num_val,
            "min_len": args.min_len,
            "max_len": args.max_len,
            "num_symbols": args.symbols,
            "seed": args.seed,
        },
    }
    task = Seq2SeqTask(pad_id=PAD_ID, decode=args.decode)
    reporter = NullProgress() if args.quiet else RichProgress(console)
    t0 = time.perf_counter()
    with reporter:
        trainer = Trainer(
            model,
            task,
            train,
            val,
            config,
            run_dir=run_dir,
            progress=reporter,
            extra_config=extra,
            collate_fn=pad_collate,
        )
        trainer.fit()
    wall = time.perf_counter() - t0
    finish_run(
        run_dir,
        title=f"{args.model} on {args.seq_task}",
        wall=wall,
        keys=("val_exact_acc", "val_token_acc", "val_loss"),
    )
    return 0


def run_attention(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    config_path, weights_path = run_dir / "config.json", run_dir / "model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise UsageError(
            f"RUN must be a run folder with config.json and model.safetensors; got {str(run_dir)!r}"
        )
    try:
        config = json.loads(config_path.read_text())
        seq, model_name, kwargs = config["sequences"], config["model"], config["model_kwargs"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UsageError(f"{config_path} is not the config of a `nnatlas train seq2seq` run") from None
    if not 0 <= args.index < seq["num_val"]:
        raise UsageError(f"--index must lie in [0, {seq['num_val']}); got {args.index}")
    out_dir = Path(args.out) if args.out else run_dir / "attention"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --out {str(out_dir)!r}: {e.strerror}") from None

    import torch
    from rich.console import Console
    from safetensors.torch import load_model

    from nnatlas.data import make_sequence_split, tokens_to_text
    from nnatlas.layers import record_attention
    from nnatlas.models import create_model
    from nnatlas.viz import plot_attention_heads

    model = create_model(model_name, **kwargs)
    load_model(model, str(weights_path), strict=True, device="cpu")
    model.eval()
    _, val = make_sequence_split(
        seq["task"],
        num_train=seq["num_train"],
        num_val=seq["num_val"],
        min_len=seq["min_len"],
        max_len=seq["max_len"],
        num_symbols=seq["num_symbols"],
        seed=seq["seed"],
    )
    src, tgt = val[args.index]
    src = src.unsqueeze(0)  # (1, S)
    with torch.no_grad():
        out = model.generate(src, min(tgt.shape[0] + 2, model.max_len - 1))  # (1, T')
        dec_in = torch.cat([torch.tensor([[model.bos_id]]), out], dim=1)  # (1, 1 + T')
        with record_attention(model) as maps:
            model(src, dec_in)
    label = {"task": seq["task"], "num_symbols": seq["num_symbols"]}
    src_labels = tokens_to_text(src[0].tolist(), **label)
    dec_labels = tokens_to_text(dec_in[0].tolist(), **label)
    saved = []
    for name, weights in maps.items():
        queries = src_labels if name.startswith("encoder") else dec_labels
        keys = dec_labels if ".self_attn" in name and name.startswith("decoder") else src_labels
        path = out_dir / f"{name}.png"
        plot_attention_heads(weights[0], path, query_labels=queries, key_labels=keys, title=name)
        saved.append(path)
    console = Console()
    console.print(
        f"source {' '.join(src_labels)} -> decoded {' '.join(tokens_to_text(out[0].tolist(), **label))} "
        f"(target {' '.join(tokens_to_text(tgt[1:].tolist(), **label))})",
        soft_wrap=True,
    )
    console.print(f"saved {len(saved)} PNGs ({weights.shape[1]} heads each) in {out_dir}", soft_wrap=True)
    return 0
