"""``nnatlas attention RUN``: heat maps of every attention head of a trained seq2seq run."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnatlas.cli.common import UsageError, markup_safe
from nnatlas.cli.runs import WEIGHTS, load_run_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attention",
        help="save attention heat maps of every head for one example of a trained seq2seq run",
        description="Rebuild the model of a run written by `nnatlas train seq2seq`, decode one held-out "
        "example greedily, and save one PNG per attention module (encoder self-attention, decoder "
        "self-attention, cross-attention of each layer; the one attention of an LSTM model) with a heat map for "
        "every head.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN", help="run folder of `nnatlas train seq2seq` (runs/<name>)")
    p.add_argument("--index", type=int, default=0, help="which validation example")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN/attention)")
    p.add_argument("--weights", default="final", choices=WEIGHTS, help="which weights to draw")
    p.set_defaults(func=run_attention)


def run_attention(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    model, config = load_run_model(run_dir, args.weights)
    seq = config.get("sequences")
    if config["task"] != "seq2seq" or not isinstance(seq, dict):
        raise UsageError(f"RUN {str(run_dir)!r} is a {config['task']} run; attention maps need a seq2seq run")
    if not 0 <= args.index < seq["num_val"]:
        raise UsageError(f"--index must lie in [0, {seq['num_val']}); got {args.index}")
    out_dir = Path(args.out) if args.out else run_dir / "attention"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --out {str(out_dir)!r}: {e.strerror}") from None

    import torch
    from rich.console import Console

    from nnatlas.data import make_sequence_split, tokens_to_text
    from nnatlas.layers import record_attention
    from nnatlas.viz import plot_attention_heads

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
        # A model without nnatlas MultiheadAttention modules (the LSTM's Luong attention) records its own.
        recorder = getattr(model, "record_attention", None) or (lambda: record_attention(model))
        with recorder() as maps:
            model(src, dec_in)
    if not maps:
        raise UsageError(f"model {config['model']!r} of RUN {str(run_dir)!r} has no attention to draw")
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
        markup=False,
    )
    console.print(
        f"saved {len(saved)} PNGs ({weights.shape[1]} heads each) in {markup_safe(out_dir)}", soft_wrap=True
    )
    return 0
