"""
LSTM against Transformer on the same sequence task
==================================================

.. epigraph::

   循环神经网络入门

   *An introduction to recurrent neural networks* (the notes' first line, a link to Christopher Olah's
   "Understanding LSTM Networks").

   -- notes, first line

.. epigraph::

   输入一排vector，输出的每一排vector是考虑了所有的input以后所得到的结果。

   *A row of vectors goes in; each vector of the row that comes out is the result of considering all of
   the input.*

   -- notes, Encoder结构

An LSTM reads its input one step after another and carries what it has seen in a state; the
Transformer's self-attention takes the whole row at once. nnatlas has both as sequence-to-sequence models
with the same interface: ``lstm_seq2seq`` (a bidirectional LSTM encoder and an LSTM decoder with Luong
attention) and ``transformer_seq2seq``. This page trains both briefly on the same embedded task, from the
same seed, with the same batches and optimiser, compares their parameter counts, loss and exact-match
curves and training time, and then shows the committed full run of the ``lstm-vs-transformer``
experiment (three seeds, longer sequences, its verdict).
"""

# %%
# Setup
# -----

import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from _committed import FOLDER as COMMITTED
from _committed import committed_results
from nnatlas.analysis import count_parameters
from nnatlas.data import load_dataset, tokens_to_text
from nnatlas.engine import Seq2SeqTask, TrainConfig, Trainer
from nnatlas.models import create_model

torch.set_num_threads(1)
torch.manual_seed(0)
np.random.seed(0)
t_start = time.perf_counter()

(committed,) = committed_results("lstm-vs-transformer")

# %%
# Two models of similar size
# --------------------------
# The widths are those of the committed experiment (read from its ``result.json``): a Transformer of width
# 64 with four heads and two encoder and two decoder layers, and a two-layer LSTM of width 72; no dropout.

data = load_dataset("reverse", task="seq2seq", num_train=3000, num_val=200, max_len=8)
kwargs = committed["numbers"]["builder_kwargs"]
builders = {
    "Transformer": ("transformer_seq2seq", {**kwargs["transformer"], "dropout": 0.0}),
    "LSTM + attention": ("lstm_seq2seq", {**kwargs["lstm"], "dropout": 0.0}),
}
models = {}
for label, (name, kw) in builders.items():
    torch.manual_seed(0)
    models[label] = create_model(name, vocab_size=data.vocab_size, **kw)
    print(f"{label:<17} {name:<20} {kw}: {count_parameters(models[label]):,} parameters")
src, tgt = data.train[0]
print("one training pair:", tokens_to_text(src, task="reverse"), "->", tokens_to_text(tgt, task="reverse"))

# %%
# The same training for both
# --------------------------
# The engine's ``Trainer`` and ``Seq2SeqTask``: teacher-forced cross-entropy, and after every epoch the
# exact match of greedy decoding on 200 held-out sequences (length 1 to 8, sources never seen in
# training). AdamW, one-cycle schedule, gradient clipping, batches of 64, four epochs, one CPU thread.

history, cpu = {}, {}
for label, model in models.items():
    config = TrainConfig(
        epochs=4,
        batch_size=64,
        lr=3e-3,
        scheduler="onecycle",
        clip_grad_norm=1.0,
        weight_decay=0.0,
        seed=0,
        device="cpu",
    )
    trainer = Trainer(model, Seq2SeqTask(), data.train, data.val, config, collate_fn=data.collate_fn)
    t0 = time.process_time()
    history[label] = trainer.fit()
    cpu[label] = time.process_time() - t0

print(f"{'model':<17} {'epoch':>5} {'train loss':>10} {'val loss':>9} {'exact match':>11} {'epoch s':>8}")
for label, records in history.items():
    for r in records:
        print(
            f"{label:<17} {r['epoch']:>5} {r['train_loss']:>10.3f} {r['val_loss']:>9.3f} {r['val_exact_acc']:>11.3f} {r['epoch_time']:>8.2f}"
        )
for label in models:
    assert history[label][-1]["val_exact_acc"] > 0.1  # sanity: both learn the task, far above luck
    print(f"{label}: {cpu[label]:.1f} CPU s for the whole run (training and the evaluations)")

fig, (ax_loss, ax_exact) = plt.subplots(1, 2, figsize=(9, 3.4))
for label, records in history.items():
    epochs = [r["epoch"] for r in records]
    line = ax_loss.plot(epochs, [r["train_loss"] for r in records], marker="o", label=f"{label}, training")[0]
    ax_loss.plot(
        epochs,
        [r["val_loss"] for r in records],
        marker="s",
        linestyle="--",
        color=line.get_color(),
        label=f"{label}, held-out",
    )
    ax_exact.plot(epochs, [r["val_exact_acc"] for r in records], marker="o", label=label)
ax_loss.set_yscale("log")
for ax in (ax_loss, ax_exact):
    ax.set_xticks(epochs)
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("cross-entropy per token")
ax_loss.set_title("loss")
ax_loss.legend(fontsize=7)
ax_exact.set_xlabel("epoch")
ax_exact.set_ylabel("held-out exact match (greedy)")
ax_exact.set_ylim(0, 1.02)
ax_exact.set_title("whole sequences right")
ax_exact.legend()
fig.suptitle("reverse task, lengths 1-8: the same data, seed and budget for both models")
fig.tight_layout()

# %%
# What each model writes
# ----------------------

val_src, _ = data.collate_fn([data.val[i] for i in range(5)])
for label, model in models.items():
    model.eval()
    out = model.generate(val_src, max_len=data.max_tgt_len)
    print(label)
    for s, o in zip(val_src, out, strict=True):
        words = [t for t in tokens_to_text(s, task="reverse") if t != "<pad>"]
        guess = [t for t in tokens_to_text(o, task="reverse") if t != "<pad>"]
        print(f"  {' '.join(words):<22} -> {' '.join(guess)}")

# %%
# The committed full run
# ----------------------
# ``nnatlas experiment run lstm-vs-transformer``: sequences up to length 12, 4,000 training sequences, six
# epochs, three seeds, one CPU thread; the criterion was fixed before the run. Read with
# :func:`nnatlas.experiments.load_results` from ``docs/experiments``:

print(f"claim: {committed['title']}")
print(f"criterion: {committed['criterion']}")
print(f"verdict: {committed['verdict']} -- {committed['key_number']}")
cols = list(committed["table"][0])
for row in committed["table"]:
    print("  " + "; ".join(f"{c}: {row[c]}" for c in cols))
for note in committed["notes"]:
    print("note:", note)

fig, ax = plt.subplots(figsize=(10, 4))
ax.imshow(plt.imread(COMMITTED / "lstm-vs-transformer" / "figure.png"))
ax.axis("off")
ax.set_title("the committed figure of the lstm-vs-transformer experiment (3 seeds)")
fig.tight_layout()

print(f"page computed in {time.perf_counter() - t_start:.1f} s")
