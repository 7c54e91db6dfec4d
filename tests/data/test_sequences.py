"""The embedded sequence tasks, checked against Python's own list and integer arithmetic."""

import pytest
import torch

from nnatlas.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SequenceDataset,
    make_sequence_split,
    pad_collate,
    tokens_to_text,
    vocab_size,
)


def _symbols(ids):
    return [int(t) - 3 for t in ids]


@pytest.mark.parametrize("task", ["copy", "reverse", "sort"])
def test_targets_are_the_task_applied_to_the_source(task):
    ds = SequenceDataset(task, 300, min_len=2, max_len=9, num_symbols=7, seed=3)
    assert ds.vocab_size == vocab_size(task, 7) == 10
    lengths = set()
    for src, tgt in ds:
        assert src[-1] == EOS_ID and tgt[0] == BOS_ID and tgt[-1] == EOS_ID
        x, y = _symbols(src[:-1]), _symbols(tgt[1:-1])
        lengths.add(len(x))
        assert all(0 <= s < 7 for s in x)
        expected = {"copy": x, "reverse": x[::-1], "sort": sorted(x)}[task]
        assert y == expected
    assert lengths == set(range(2, 10))  # every length of the range occurs


@pytest.mark.parametrize("base", [10, 7])
def test_add_is_integer_addition_in_the_base(base):
    ds = SequenceDataset("add", 300, min_len=1, max_len=4, num_symbols=base, seed=1)
    plus = 3 + base
    for src, tgt in ds:
        text = "".join(tokens_to_text(src[:-1], task="add", num_symbols=base))
        a, b = text.split("+")
        assert 1 <= len(a) <= 4 and 1 <= len(b) <= 4 and (len(a) == 1 or a[0] != "0")
        total = "".join(tokens_to_text(tgt[1:-1], task="add", num_symbols=base))
        assert int(total, base) == int(a, base) + int(b, base)  # Python's int() as the reference
        assert int(src.max()) <= plus and (src == plus).sum() == 1


def test_seeded_and_held_out():
    a = SequenceDataset("reverse", 50, seed=5)
    b = SequenceDataset("reverse", 50, seed=5)
    assert a.pairs == b.pairs and a.pairs != SequenceDataset("reverse", 50, seed=6).pairs
    train, val = make_sequence_split("reverse", num_train=2000, num_val=300, max_len=12, seed=0)
    seen = train.sources
    # Lengths >= 4 have >= 10,000 possible sequences: none of those validation sources is in training.
    assert all(x not in seen for x, _ in val.pairs if len(x) >= 4)
    assert len(val) == 300


def test_pad_collate_pads_with_pad_id():
    ds = SequenceDataset("copy", 4, min_len=1, max_len=6, seed=0)
    src, tgt = pad_collate([ds[i] for i in range(4)])
    assert src.shape == (4, max(len(ds[i][0]) for i in range(4))) and src.dtype == torch.long
    for i in range(4):
        n = len(ds[i][0])
        assert torch.equal(src[i, :n], ds[i][0]) and torch.all(src[i, n:] == PAD_ID)
        m = len(ds[i][1])
        assert torch.equal(tgt[i, :m], ds[i][1]) and torch.all(tgt[i, m:] == PAD_ID)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="unknown sequence task 'revers'.*reverse"):
        SequenceDataset("revers", 10)
    with pytest.raises(ValueError, match="min_len"):
        SequenceDataset("copy", 10, min_len=5, max_len=3)
    with pytest.raises(ValueError, match="num_samples"):
        SequenceDataset("copy", 0)
    with pytest.raises(ValueError, match="num_symbols"):
        SequenceDataset("copy", 10, num_symbols=1)
