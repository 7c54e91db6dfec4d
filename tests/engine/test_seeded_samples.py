"""Seeded random streams of training batches: augmentation that depends on (seed, epoch, samples) only."""

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nnatlas.engine.distributed import EpochKeys, EpochSampler, SeededSamples


class Draws(Dataset):
    """A sample is one draw from each global generator, as a random augmentation makes them."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        return torch.tensor([float(i), torch.rand(()).item(), random.random(), np.random.rand()])


def _epoch(workers, epoch, start=0, seed=3):
    sampler = EpochSampler(12, seed=seed)
    sampler.set_position(epoch, start)
    loader = DataLoader(
        SeededSamples(Draws(), seed), batch_size=4, sampler=EpochKeys(sampler), num_workers=workers
    )
    return torch.cat(list(loader))


def test_same_draws_with_or_without_workers_and_from_the_middle_of_an_epoch():
    main = _epoch(0, epoch=1)
    assert torch.equal(main, _epoch(2, epoch=1))
    assert torch.equal(main[4:], _epoch(1, epoch=1, start=4))  # a resumed epoch continues exactly
    assert not torch.equal(main[:, 1:], _epoch(0, epoch=2)[:, 1:])  # another epoch draws anew
    by_index = {int(r[0]): r for r in main}
    again = {int(r[0]): r for r in _epoch(0, epoch=1, seed=3)}
    assert all(torch.equal(by_index[i], again[i]) for i in by_index)
    assert not torch.equal(main, _epoch(0, epoch=1, seed=4))  # the run's seed matters


def test_the_callers_generators_are_left_as_they_were():
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    SeededSamples(Draws(), 7)[(0, 5)]
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


def test_draws_of_neighbouring_keys_are_unrelated():
    data = SeededSamples(Draws(), 0)
    values = torch.stack([data[(e, i)][1] for e in range(4) for i in range(12)])
    assert len(set(values.tolist())) == 48
    assert 0.35 < values.mean().item() < 0.65
