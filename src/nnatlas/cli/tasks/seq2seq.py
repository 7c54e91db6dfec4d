"""``nnatlas train seq2seq``: an encoder-decoder Transformer or LSTM on an embedded sequence task.

The data set of a seq2seq run is a sequence task (``--data reverse``; ``--task`` is kept as an alias). Each
task has its own defaults (:data:`DATA_DEFAULTS`), chosen so that the default command reaches >= 99% exact
match on held-out sequences on a laptop CPU (figures in ``benchmarks/RESULTS.md``). The LSTM needs no
defaults of its own: with the common ones (width 64, 15 epochs) it reaches 100% exact match on reverse of
lengths 1..8 by the third epoch, and an epochs default of its own would replace addition's 30 epochs
(:meth:`Recipe.model_defaults` wins over the data set's). The options of the architecture map to each
model's builder arguments (:func:`model_kwargs`): ``--d-model`` is the width of both, ``--layers`` their
depth; ``--heads`` and ``--ff`` exist for the Transformer only and are refused for the LSTM.
"""

from __future__ import annotations

import argparse
from typing import Any

from nnatlas._choices import SEQUENCE_DATA
from nnatlas._suggest import unknown_choice_message
from nnatlas._validate import InvalidValue, check_int, check_probability
from nnatlas.cli.tasks.base import Built, Recipe, register_recipe

DECODING = ("greedy", "beam")

#: Per data set, the options whose default differs from the common one (by dest). Addition needs more
#: examples and epochs than the other tasks, and operands of up to 3 digits to be learnt in minutes.
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "copy": {},
    "reverse": {},
    "sort": {},
    "add": {"max_len": 3, "num_train": 20_000, "epochs": 30},
}

#: Models built without attention heads and feed-forward blocks: ``--heads`` and ``--ff`` do not apply.
RECURRENT = ("lstm_seq2seq",)


def _per_data(dest: str, common: Any) -> str:
    special = [f"{d}: {v}" for d, over in DATA_DEFAULTS.items() for k, v in over.items() if k == dest]
    return f"default: {common}" + (f"; {', '.join(special)}" if special else "")


@register_recipe
class Seq2Seq(Recipe):
    name = "seq2seq"
    help = "an encoder-decoder Transformer or LSTM on an embedded sequence task (default: reverse)"
    description = (
        "Train a sequence-to-sequence model on an embedded task of token sequences: copy, reverse, sort or "
        "multi-digit addition (seeded, held-out validation sequences). Besides the loss, the run records "
        "val_token_acc (teacher forcing) and val_exact_acc (whole sequences decoded freely). "
        "Defaults that depend on the data set: "
        + "; ".join(
            f"{d}: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in over.items())
            for d, over in DATA_DEFAULTS.items()
            if over
        )
        + "."
    )
    default_model = "transformer_seq2seq"
    default_data = "reverse"
    # A model this small trains fastest on one CPU thread (OpenMP threads spin-wait on shared cores).
    defaults = {"threads": 1}
    summary_keys = ("val_exact_acc", "val_token_acc", "val_loss")
    unsupported = {
        "channels_last": "token sequences have no channels-last layout",
        "sync_bn": "the seq2seq models have no batch norm",
    }

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("seq2seq")
        g.add_argument(
            "--model",
            default=self.default_model,
            help=f"registered seq2seq model: transformer_seq2seq or lstm_seq2seq (default: {self.default_model})",
        )
        g.add_argument(
            "--data",
            "--task",
            dest="data",
            default=self.default_data,
            help=f"sequence task: {', '.join(SEQUENCE_DATA)} (default: {self.default_data}; --task is an alias)",
        )
        g.add_argument(
            "--num-train",
            type=int,
            default=6_000,
            help=f"training sequences ({_per_data('num_train', 6000)})",
        )
        g.add_argument(
            "--num-val", type=int, default=1_000, help="held-out validation sequences (default: 1000)"
        )
        g.add_argument(
            "--min-len",
            type=int,
            default=1,
            help="shortest sequence, digits of an operand for add (default: 1)",
        )
        g.add_argument(
            "--max-len", type=int, default=12, help=f"longest sequence ({_per_data('max_len', 12)})"
        )
        g.add_argument(
            "--symbols", type=int, default=10, help="distinct symbols, the base for add (default: 10)"
        )
        g.add_argument(
            "--d-model", type=int, default=64, help="model width, the LSTM's hidden size (default: 64)"
        )
        g.add_argument("--heads", type=int, default=4, help="attention heads, Transformer only (default: 4)")
        g.add_argument(
            "--layers", type=int, default=2, help="encoder layers and decoder layers, each (default: 2)"
        )
        g.add_argument(
            "--ff", type=int, default=256, help="feed-forward width, Transformer only (default: 256)"
        )
        g.add_argument("--dropout", type=float, default=0.0, help="dropout of the model (default: 0)")
        g.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing (default: 0)")
        g.add_argument("--decode", default="greedy", choices=DECODING, help="decoding for val_exact_acc (default: greedy)")  # fmt: skip

    def data_defaults(self, data: str) -> dict[str, Any]:
        return DATA_DEFAULTS.get(data, {})

    def check(self, args: argparse.Namespace, explicit: set[str]) -> None:
        if args.data not in SEQUENCE_DATA:
            raise ValueError(unknown_choice_message("sequence task", args.data, SEQUENCE_DATA))
        for flag in ("num_train", "num_val", "min_len", "max_len", "d_model", "heads", "layers", "ff"):
            check_int(f"--{flag.replace('_', '-')}", getattr(args, flag), maximum=1_000_000)
        check_int("--symbols", args.symbols, minimum=2, maximum=1000)
        if args.min_len > args.max_len:
            raise InvalidValue("--min-len", f"must not exceed --max-len ({args.max_len})", args.min_len)
        if args.model in RECURRENT:
            for dest in ("heads", "ff"):
                if dest in explicit:
                    raise InvalidValue(
                        f"--{dest}",
                        f"does not apply to --model {args.model} (an LSTM has no attention heads or "
                        "feed-forward blocks)",
                        getattr(args, dest),
                    )
            if args.d_model % 2:
                raise InvalidValue(
                    "--d-model", "must be even (each direction of the encoder has half)", args.d_model
                )
        else:
            if args.d_model % args.heads:
                raise InvalidValue("--heads", f"must divide --d-model ({args.d_model})", args.heads)
            if args.d_model % 2:
                raise InvalidValue(
                    "--d-model", "must be even (sinusoidal positions come in sin/cos pairs)", args.d_model
                )
        check_probability("--dropout", args.dropout)
        check_probability("--label-smoothing", args.label_smoothing)

    def build(self, args: argparse.Namespace) -> Built:
        import torch

        from nnatlas.data import PAD_ID, load_dataset
        from nnatlas.engine import Seq2SeqTask
        from nnatlas.models import create_model, get_model_info

        info = get_model_info(args.model)
        if info.task != self.name:
            raise ValueError(f"model {args.model!r} is a {info.task} model; the task is {self.name}")
        sequences = {
            "task": args.data,
            "num_train": args.num_train,
            "num_val": args.num_val,
            "min_len": args.min_len,
            "max_len": args.max_len,
            "num_symbols": args.symbols,
            "seed": args.seed,
        }
        data = load_dataset(args.data, task=self.name, **{k: v for k, v in sequences.items() if k != "task"})
        kwargs = model_kwargs(args, data.vocab_size, max(data.max_src_len, data.max_tgt_len))
        torch.manual_seed(args.seed)
        model = create_model(args.model, **kwargs)
        from nnatlas.cli.tasks.classification import limit

        train = limit(data.train, args.limit_train)
        lengths = f"lengths {args.min_len}..{args.max_len}, {data.vocab_size} tokens"
        return Built(
            model=model,
            task=Seq2SeqTask(pad_id=PAD_ID, decode=args.decode, label_smoothing=args.label_smoothing),
            train=train,
            val=data.val,
            data_name=args.data,
            model_kwargs=kwargs,
            collate_fn=data.collate_fn,
            extra_config={"sequences": sequences},
            data_summary=f"{args.data} ({lengths}; {len(train):,} train / {len(data.val):,} held-out)",
        )


def model_kwargs(args: argparse.Namespace, vocab_size: int, max_len: int) -> dict[str, Any]:
    """The builder arguments of ``args.model`` from the options: the LSTM takes width, depth and dropout;
    the Transformer (and any other seq2seq model) also heads and feed-forward width."""
    common = {"vocab_size": vocab_size, "d_model": args.d_model, "dropout": args.dropout, "max_len": max_len}
    if args.model in RECURRENT:
        return {**common, "num_layers": args.layers}
    return {
        **common,
        "nhead": args.heads,
        "num_encoder_layers": args.layers,
        "num_decoder_layers": args.layers,
        "dim_feedforward": args.ff,
    }
