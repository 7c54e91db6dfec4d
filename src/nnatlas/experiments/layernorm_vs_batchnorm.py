"""``layernorm-vs-batchnorm``: in a Transformer on padded sequences, batch normalisation does worse than
layer normalisation, and its batch statistics fluctuate, padding adding to the fluctuation.

Shen, Yao, Gholami, Mahoney and Keutzer, "PowerNorm: Rethinking Batch Normalization in Transformers"
(ICML 2020), cited by the notes, find that the batch statistics of BatchNorm (Ioffe & Szegedy 2015) vary
much more across the batches of NLP data than of images, and that a Transformer with BatchNorm does worse
than with LayerNorm (Ba, Kiros & Hinton 2016). Here the registered ``transformer_seq2seq`` is built twice,
alike but for ``norm_layer``: :class:`torch.nn.LayerNorm` or :class:`TokenBatchNorm` (BatchNorm over the
features of every token of the batch, padding included, as a drop-in for BatchNorm in sequence models);
both are trained alike on the embedded ``reverse`` task, whose batches are padded to their longest
sequence. After training, the batch mean and variance each BatchNorm computes are recorded on fresh
training batches (weights fixed), over all positions and over the real tokens only.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from statistics import fmean
from typing import Any

import torch
from torch import Tensor, nn

from nnatlas.data import PAD_ID, pad_collate
from nnatlas.experiments._seq import SeqData, seq_data, seq_model, train_seq2seq
from nnatlas.experiments.base import (
    Context,
    Experiment,
    Measurement,
    majority,
    register_experiment,
    spread,
)


class TokenBatchNorm(nn.Module):
    """:class:`torch.nn.BatchNorm1d` over the feature dimension of ``(B, T, C)`` token tensors.

    In training the statistics are the mean and variance of every channel over all ``B * T`` positions,
    padding included (the layer does not know the mask, as a norm injected through ``norm_layer`` cannot);
    in evaluation the running estimates are used. Any ``(..., C)`` in, the same shape out.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(x.reshape(-1, x.shape[-1])).view_as(x)  # (B * T, C) -> (B, T, C)


def _batch_statistics(model: nn.Module, data: SeqData, *, batches: int, batch_size: int, seed: int) -> dict:
    """The batch mean and variance of every channel of every :class:`TokenBatchNorm`, on ``batches`` fresh
    training batches with the weights fixed: over all positions and over the real (non-padding) tokens.

    Returns per module ``{"all": (mean (K, C), var (K, C)), "real": (...)}``, the padding fractions of the
    decoder inputs and the numbers of positions (all, real) of every encoder and decoder input.
    """
    probe = copy.deepcopy(model).train()  # train mode: batch statistics; the copy's running stats are spent
    masks: dict[str, Tensor] = {}
    rows: dict[str, dict[str, list[tuple[Tensor, Tensor]]]] = {}
    handles = []
    for name, m in probe.named_modules():
        if isinstance(m, TokenBatchNorm):
            side = "src" if name.startswith("encoder") else "tgt"

            def hook(mod, args, name=name, side=side):
                x = args[0].detach()  # (B, T, C)
                keep = masks[side]  # (B, T)
                stats = rows.setdefault(name, {"all": [], "real": []})
                flat = x.reshape(-1, x.shape[-1])
                stats["all"].append((flat.mean(0), flat.var(0, unbiased=False)))
                real = x[keep]  # (N_real, C)
                stats["real"].append((real.mean(0), real.var(0, unbiased=False)))

            handles.append(m.register_forward_pre_hook(hook))
    gen = torch.Generator().manual_seed(10_000 + seed)
    pad_fraction, counts = [], {"all": [], "real": []}
    try:
        with torch.no_grad():
            for _ in range(batches):
                idx = torch.randint(len(data.train), (batch_size,), generator=gen).tolist()
                src, tgt = pad_collate([data.train[i] for i in idx])  # (B, S), (B, T)
                tgt_in = tgt[:, :-1]
                masks["src"], masks["tgt"] = src != PAD_ID, tgt_in != PAD_ID
                pad_fraction.append(float((tgt_in == PAD_ID).float().mean()))
                for side in ("src", "tgt"):
                    counts["all"].append(masks[side].numel())
                    counts["real"].append(int(masks[side].sum()))
                probe(src, tgt_in)
    finally:
        for h in handles:
            h.remove()
    out = {
        name: {k: (torch.stack([m for m, _ in v]), torch.stack([s for _, s in v])) for k, v in d.items()}
        for name, d in rows.items()
    }
    return {"modules": out, "pad_fraction": pad_fraction, "positions": counts}


def _fluctuation(mean: Tensor, var: Tensor) -> tuple[float, float]:
    """Across batches (rows), averaged over channels: the standard deviation of the batch mean in units of
    the channel's standard deviation, and the coefficient of variation of the batch variance."""
    scale = var.mean(0).clamp_min(1e-12)  # (C,)
    of_mean = (mean.std(0) / scale.sqrt()).mean()
    of_var = (var.std(0) / scale).mean()
    return float(of_mean), float(of_var)


@register_experiment
class LayerNormVsBatchNorm(Experiment):
    name = "layernorm-vs-batchnorm"
    title = "a Transformer on padded sequences does worse with BatchNorm than with LayerNorm"
    section = "Encoder结构"
    claim_zh = "PowerNorm:Rethinking Batch Normalization in Transformers [为什么 Batch Normalization 不如 layer Normalization]"
    claim_en = (
        "The notes recommend PowerNorm (Shen et al. 2020) on why Batch Normalization is worse than Layer "
        "Normalization in Transformers. Measured: the same Transformer trained alike on padded sequences "
        "reaches a lower validation loss with LayerNorm than with BatchNorm, and BatchNorm's batch "
        "statistics fluctuate across batches, more so with the padding tokens included."
    )
    method = (
        "transformer_seq2seq (d_model 32, 4 heads, 1 encoder and 1 decoder layer, feed-forward 64, pre-norm, "
        "no dropout) built with norm_layer = LayerNorm or TokenBatchNorm (BatchNorm1d over the features of "
        "all B*T positions, padding included); same seed, same initial weights elsewhere, same batches; "
        "Adam (lr 3e-3, batch 64, teacher forcing, gradient clipping 1) on the embedded `reverse` task "
        "(lengths 1-8, 10 symbols; every batch padded to its longest sequence). Validation: loss per target "
        "token, teacher-forced token accuracy and exact match of greedy decoding (BatchNorm uses its running "
        "statistics in evaluation). After training, every BatchNorm's batch mean and variance per channel "
        "are recorded on fresh training batches with the weights fixed, over all positions and over the "
        "real tokens only; their fluctuation across batches is the standard deviation of the batch mean in "
        "units of the channel's standard deviation, and the coefficient of variation of the batch "
        "variance, averaged over channels and BatchNorm layers. Repeated per seed."
    )
    criterion = (
        "Supported when, in at least 2 of 3 seeds, (a) the LayerNorm model ends with a lower validation loss "
        "than the BatchNorm model, and (b) the fluctuation across batches of BatchNorm's batch mean is "
        "larger with the padding tokens included than over the real tokens only; not supported when this "
        "holds in at most 1 of 3 seeds; otherwise inconclusive."
    )
    minutes = 1.5

    def run(self, ctx: Context) -> Measurement:
        steps = ctx.size(40, 500)
        data = seq_data("reverse", num_train=ctx.size(1000, 4000), num_val=ctx.size(100, 500), max_len=8)
        norms = {"LayerNorm": nn.LayerNorm, "BatchNorm": TokenBatchNorm}
        results: dict[str, dict[str, list[float]]] = {
            n: {"loss": [], "token_acc": [], "exact_acc": []} for n in norms
        }
        curves: dict[str, list[list[float]]] = {n: [] for n in norms}
        fluct: dict[str, list[float]] = {k: [] for k in ("mean_all", "mean_real", "var_all", "var_real")}
        shift: list[float] = []  # |batch mean with padding - without| in channel standard deviations
        per_layer: dict[str, dict[str, list[float]]] = {}
        pad_fraction: list[dict[str, float]] = []
        iid: dict[str, list[float]] = {"all": [], "real": []}
        example: dict[str, list[float]] = {}
        eval_steps: list[int] = []
        for seed in ctx.seeds:
            models = {}
            for label, norm in norms.items():
                ctx.step(f"seed {seed}: training with {label}")
                model = models[label] = seq_model(data, seed=seed, norm_layer=norm)
                hist = train_seq2seq(model, data, steps=steps, seed=seed, eval_every=max(1, steps // 5))
                for k in results[label]:
                    results[label][k].append(hist.val[-1][k])
                curves[label].append([v["loss"] for v in hist.val])
                eval_steps = [v["step"] for v in hist.val]
            ctx.step(f"seed {seed}: batch statistics of BatchNorm")
            stats = _batch_statistics(
                models["BatchNorm"], data, batches=ctx.size(10, 40), batch_size=64, seed=seed
            )
            pad_fraction.append(spread(stats["pad_fraction"]))
            for k in iid:  # the fluctuation of a mean of n independent tokens: 1 / sqrt(n)
                n = stats["positions"][k]
                iid[k].append(sum(v**-0.5 for v in n) / len(n))
            sums = {k: [] for k in fluct}
            shifts = []
            for name, d in stats["modules"].items():
                m_all, v_all = _fluctuation(*d["all"])
                m_real, v_real = _fluctuation(*d["real"])
                shifts.append(
                    float(((d["all"][0] - d["real"][0]).abs() / d["real"][1].clamp_min(1e-12).sqrt()).mean())
                )
                for k, v in (
                    ("mean_all", m_all),
                    ("mean_real", m_real),
                    ("var_all", v_all),
                    ("var_real", v_real),
                ):
                    sums[k].append(v)
                    per_layer.setdefault(name, {}).setdefault(k, []).append(v)
                if not example:
                    # the first BatchNorm, channel 0: its batch means with and without padding
                    example = {"all": d["all"][0][:, 0].tolist(), "real": d["real"][0][:, 0].tolist()}
                    example["module"] = name  # type: ignore[assignment]
            for k in fluct:
                fluct[k].append(sum(sums[k]) / len(sums[k]))
            shift.append(sum(shifts) / len(shifts))
        numbers: dict[str, Any] = {
            "steps": steps,
            "d_model": 32,
            "val": results,
            "val_loss_curves": curves,
            "eval_steps": eval_steps,
            "fluctuation": fluct,
            "fluctuation_per_layer": per_layer,
            "iid_expectation_of_mean_fluctuation": iid,
            "padding_shift_of_batch_mean": shift,
            "pad_fraction_of_decoder_input": pad_fraction,
            "example_batch_means": example,
            "summary": {
                **{f"{n}_{k}": spread(v) for n, r in results.items() for k, v in r.items()},
                **{f"fluctuation_{k}": spread(v) for k, v in fluct.items()},
            },
        }
        table = [
            {
                "seed": s,
                "val loss LN": results["LayerNorm"]["loss"][i],
                "val loss BN": results["BatchNorm"]["loss"][i],
                "exact LN": results["LayerNorm"]["exact_acc"][i],
                "exact BN": results["BatchNorm"]["exact_acc"][i],
                "BN mean fluct. (padding incl.)": fluct["mean_all"][i],
                "BN mean fluct. (real tokens)": fluct["mean_real"][i],
                "BN var CV (padding incl.)": fluct["var_all"][i],
                "BN var CV (real tokens)": fluct["var_real"][i],
            }
            for i, s in enumerate(ctx.seeds)
        ]
        sm = numbers["summary"]
        key = (
            f"val loss LN {sm['LayerNorm_loss']['mean']:.3f} vs BN {sm['BatchNorm_loss']['mean']:.3f}; "
            f"BN batch-mean fluctuation {sm['fluctuation_mean_all']['mean']:.3f} with padding vs "
            f"{sm['fluctuation_mean_real']['mean']:.3f} without"
        )
        wins = sum(
            a < b for a, b in zip(results["LayerNorm"]["loss"], results["BatchNorm"]["loss"], strict=True)
        )
        notes = [
            f"LayerNorm ended with the lower validation loss in {wins} of {len(ctx.seeds)} seeds; exact match "
            f"LayerNorm {sm['LayerNorm_exact_acc']['mean']:.3f} vs BatchNorm {sm['BatchNorm_exact_acc']['mean']:.3f}.",
            f"BatchNorm's batch mean moved across batches by {sm['fluctuation_mean_all']['mean']:.3f} channel "
            f"standard deviations with padding included and {sm['fluctuation_mean_real']['mean']:.3f} over the "
            f"real tokens; the mean of n independent tokens moves by 1/sqrt(n) = {fmean(iid['all']):.3f} (all "
            f"positions) and {fmean(iid['real']):.3f} (real tokens) here. Padding was "
            f"{fmean(p['mean'] for p in pad_fraction):.0%} of the decoder inputs; it moved the batch mean the "
            f"BatchNorm layers normalise with by {fmean(shift):.2f} channel standard deviations from the mean of "
            "the real tokens (the running statistics used in evaluation include the padding alike).",
            "PowerNorm measured natural-language batches, whose word statistics and sentence lengths vary from "
            "batch to batch; the embedded tasks draw symbols independently and uniformly, so their batch "
            "statistics stay close to those of independent samples, and this setting may not show that source "
            "of fluctuation.",
        ]
        return Measurement(
            numbers=numbers, table=table, key=key, figure=lambda p: _figure(numbers, p), notes=notes
        )

    def decide(self, numbers: Mapping[str, Any]) -> str:
        val, fl = numbers["val"], numbers["fluctuation"]
        passes = [
            ln < bn and a > r
            for ln, bn, a, r in zip(
                val["LayerNorm"]["loss"],
                val["BatchNorm"]["loss"],
                fl["mean_all"],
                fl["mean_real"],
                strict=True,
            )
        ]
        return majority(passes)


def _figure(numbers: Mapping[str, Any], path: Path) -> None:
    from nnatlas.viz import PALETTE, figure, save

    fig, (a, b, c) = figure(1, 3, width=4.2, height=3.4)
    steps = numbers["eval_steps"]
    for (label, runs), colour in zip(numbers["val_loss_curves"].items(), PALETTE, strict=False):
        for i, run in enumerate(runs):
            a.plot(steps[: len(run)], run, color=colour, marker="o", ms=3, label=label if i == 0 else None)
    a.set_yscale("log")
    a.set_xlabel("training step")
    a.set_ylabel("validation loss (nats / token)")
    a.set_title("reverse, padded batches")
    a.legend()
    ex = numbers["example_batch_means"]
    b.plot(ex["all"], marker="o", ms=3, color=PALETTE[3], label="all positions (padding incl.)")
    b.plot(ex["real"], marker="o", ms=3, color=PALETTE[2], label="real tokens only")
    b.set_xlabel("training batch")
    b.set_ylabel("batch mean of channel 0")
    b.set_title(f"BatchNorm statistics: {ex['module']}", fontsize=8)
    b.legend()
    fl = numbers["fluctuation"]
    labels = ["mean, padding incl.", "mean, real tokens", "var CV, padding incl.", "var CV, real tokens"]
    keys = ["mean_all", "mean_real", "var_all", "var_real"]
    values = [sum(fl[k]) / len(fl[k]) for k in keys]
    errs = [numbers["summary"][f"fluctuation_{k}"]["std"] for k in keys]
    c.bar(range(4), values, yerr=errs, capsize=3, color=[PALETTE[3], PALETTE[2], PALETTE[3], PALETTE[2]])
    c.set_xticks(range(4), labels=labels, rotation=20, fontsize=7)
    c.set_ylabel("fluctuation across batches (relative)")
    c.set_title("BatchNorm batch statistics, mean over layers")
    save(fig, path, title="LayerNorm vs BatchNorm in the same Transformer")
