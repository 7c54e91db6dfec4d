"""Embedded sequence-to-sequence tasks: copy, reverse, sort and multi-digit addition, seeded.

Token ids: ``PAD_ID = 0``, ``BOS_ID = 1``, ``EOS_ID = 2``, then the ``num_symbols`` symbols
``3 .. 2 + num_symbols`` (symbol ``s`` is token ``s + 3``); the ``add`` task has one more token, ``+``.

Each sample is ``(src, tgt)``, 1-D ``int64`` tensors of their own length:

- ``src = x_1 .. x_n EOS`` (for ``add``: the digits of ``a``, ``+``, the digits of ``b``, ``EOS``);
- ``tgt = BOS y_1 .. y_m EOS``; the decoder reads ``tgt[:-1]`` and predicts ``tgt[1:]``.

``copy``: ``y = x``; ``reverse``: ``y = x`` backwards; ``sort``: ``y = x`` in ascending order;
``add``: ``y`` the digits of ``a + b`` in base ``num_symbols``, most significant first, with ``a`` and
``b`` of ``min_len .. max_len`` digits (no leading zeros). Lengths are uniform in ``min_len .. max_len``.
:func:`~nnatlas.data.pad_collate` pads a batch with ``PAD_ID`` to ``(B, S)`` / ``(B, T)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from nnatlas._suggest import unknown_choice_message

#: Token id of padding: :func:`~nnatlas.data.pad_collate` fills with it, losses ignore it.
PAD_ID = 0
#: Token id that starts every target sequence (the decoder's first input).
BOS_ID = 1
#: Token id that ends every source and target sequence.
EOS_ID = 2
NUM_SPECIAL = 3
#: The sequence tasks, each registered as a seq2seq data set of that name.
SEQUENCE_TASKS = ("copy", "reverse", "sort", "add")

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "SEQUENCE_TASKS",
    "SequenceDataset",
    "make_sequence_split",
    "pad_collate",
    "tokens_to_text",
    "vocab_size",
]


def vocab_size(task: str, num_symbols: int = 10) -> int:
    """Number of token ids of ``task``: the three specials, the symbols, and ``+`` for ``add``."""
    _check_task(task)
    return NUM_SPECIAL + num_symbols + (1 if task == "add" else 0)


def _check_task(task: str) -> None:
    if task not in SEQUENCE_TASKS:
        raise ValueError(unknown_choice_message("sequence task", task, SEQUENCE_TASKS))


def _digits(n: int, base: int) -> list[int]:
    out = []
    while True:
        n, d = divmod(n, base)
        out.append(d)
        if n == 0:
            return out[::-1]


def _sample(
    task: str, rng: np.random.Generator, min_len: int, max_len: int, num_symbols: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """One ``(source symbols, target symbols)`` pair (symbols, not token ids)."""
    if task == "add":
        plus = num_symbols

        def number() -> int:
            n = int(rng.integers(min_len, max_len + 1))
            first = int(rng.integers(1, num_symbols)) if n > 1 else int(rng.integers(0, num_symbols))
            value = first
            for d in rng.integers(0, num_symbols, size=n - 1).tolist():
                value = value * num_symbols + d
            return value

        a, b = number(), number()
        return (*_digits(a, num_symbols), plus, *_digits(b, num_symbols)), tuple(_digits(a + b, num_symbols))
    n = int(rng.integers(min_len, max_len + 1))
    x = tuple(rng.integers(0, num_symbols, size=n).tolist())
    if task == "copy":
        return x, x
    if task == "reverse":
        return x, x[::-1]
    return x, tuple(sorted(x))


class SequenceDataset(Dataset):
    """``num_samples`` seeded samples of ``task`` (see the module docstring for the token layout).

    ``exclude`` is a set of source-symbol tuples to avoid (a held-out split): each sample is drawn again,
    up to 100 times, while its source is in ``exclude``. Only where (nearly) every sequence of a length is
    excluded can a source repeat: the ``num_symbols`` sequences of length 1, most of the
    ``num_symbols ** 2`` of length 2 when ``exclude`` is large.

    Sample ``i`` is ``(src (S_i,), tgt (T_i,))``, int64 token ids of its own lengths:

    >>> ds = SequenceDataset("reverse", num_samples=4, min_len=5, max_len=5)
    >>> src, tgt = ds[0]
    >>> src.shape, tgt.shape  # x_1 .. x_5 EOS and BOS y_1 .. y_5 EOS
    (torch.Size([6]), torch.Size([7]))
    >>> bool((tgt[1:-1] == src[:-1].flip(0)).all()), ds.max_src_len, ds.max_tgt_len
    (True, 6, 7)
    """

    def __init__(
        self,
        task: str,
        num_samples: int,
        *,
        min_len: int = 1,
        max_len: int = 12,
        num_symbols: int = 10,
        seed: int = 0,
        exclude: Iterable[tuple[int, ...]] = (),
    ) -> None:
        _check_task(task)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int; got {num_samples!r}")
        if not isinstance(min_len, int) or not isinstance(max_len, int) or not 1 <= min_len <= max_len:
            raise ValueError(
                f"lengths must satisfy 1 <= min_len <= max_len; got min_len={min_len}, max_len={max_len}"
            )
        if not isinstance(num_symbols, int) or num_symbols < 2:
            raise ValueError(f"num_symbols must be an int >= 2; got {num_symbols!r}")
        self.task, self.min_len, self.max_len, self.num_symbols = task, min_len, max_len, num_symbols
        self.vocab_size = vocab_size(task, num_symbols)
        excluded = set(exclude)
        rng = np.random.default_rng(seed)
        self.pairs: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        for _ in range(num_samples):
            for _attempt in range(100):
                x, y = _sample(task, rng, min_len, max_len, num_symbols)
                if x not in excluded:
                    break
            self.pairs.append((x, y))

    @property
    def sources(self) -> set[tuple[int, ...]]:
        """The distinct source-symbol tuples (to exclude from another split)."""
        return {x for x, _ in self.pairs}

    @property
    def max_src_len(self) -> int:
        """Longest possible ``src`` in tokens (with ``EOS``)."""
        return (2 * self.max_len + 2) if self.task == "add" else self.max_len + 1

    @property
    def max_tgt_len(self) -> int:
        """Longest possible ``tgt`` in tokens (with ``BOS`` and ``EOS``)."""
        return (self.max_len + 3) if self.task == "add" else self.max_len + 2

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.pairs[i]
        src = torch.tensor([s + NUM_SPECIAL for s in x] + [EOS_ID], dtype=torch.long)  # (S,)
        tgt = torch.tensor([BOS_ID] + [s + NUM_SPECIAL for s in y] + [EOS_ID], dtype=torch.long)  # (T,)
        return src, tgt


def make_sequence_split(
    task: str,
    *,
    num_train: int = 20_000,
    num_val: int = 1_000,
    min_len: int = 1,
    max_len: int = 12,
    num_symbols: int = 10,
    seed: int = 0,
) -> tuple[SequenceDataset, SequenceDataset]:
    """``(train, val)``: the validation sources avoid the training sources (held out) where possible."""
    kwargs = {"min_len": min_len, "max_len": max_len, "num_symbols": num_symbols}
    train = SequenceDataset(task, num_train, seed=2 * seed, **kwargs)
    val = SequenceDataset(task, num_val, seed=2 * seed + 1, exclude=train.sources, **kwargs)
    return train, val


def pad_collate(batch: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack ``(src, tgt)`` pairs into ``(B, S)`` and ``(B, T)`` tensors padded with ``PAD_ID``.

    ``S`` and ``T`` are the longest source and target of the batch:

    >>> import torch
    >>> src, tgt = pad_collate(
    ...     [(torch.tensor([3, 4, 2]), torch.tensor([1, 3, 4, 2])), (torch.tensor([5, 2]), torch.tensor([1, 5, 2]))]
    ... )
    >>> src
    tensor([[3, 4, 2],
            [5, 2, 0]])
    >>> tgt.shape
    torch.Size([2, 4])
    """
    srcs, tgts = zip(*batch, strict=True)
    src = torch.nn.utils.rnn.pad_sequence(list(srcs), batch_first=True, padding_value=PAD_ID)  # (B, S)
    tgt = torch.nn.utils.rnn.pad_sequence(list(tgts), batch_first=True, padding_value=PAD_ID)  # (B, T)
    return src, tgt


def tokens_to_text(ids: Iterable[int], *, task: str = "copy", num_symbols: int = 10) -> list[str]:
    """Readable labels of token ids: ``<pad>``, ``<s>``, ``</s>``, symbols as digits/letters, ``+``."""
    out = []
    for t in ids:
        t = int(t)
        if t == PAD_ID:
            out.append("<pad>")
        elif t == BOS_ID:
            out.append("<s>")
        elif t == EOS_ID:
            out.append("</s>")
        elif task == "add" and t == NUM_SPECIAL + num_symbols:
            out.append("+")
        else:
            out.append(np.base_repr(t - NUM_SPECIAL, 36) if t - NUM_SPECIAL < 36 else str(t - NUM_SPECIAL))
    return out
