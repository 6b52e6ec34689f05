"""Training batches without a per-sample Python loop: the sampler yields whole index batches and
the dataset gathers them with one numpy fancy-index each."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from sidrec.data.split import Samples


class ShardedBatchSampler(Sampler[np.ndarray]):
    """Shuffled index batches, sharded by rank so DDP ranks see disjoint samples.

    We shard here instead of letting Lightning inject a DistributedSampler, because our dataset is
    indexed by whole batches. Every rank gets the same number of batches (the tail is dropped in
    training), or all samples exactly once (evaluation)."""

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool, seed: int, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True):
        self.num_samples, self.batch_size, self.shuffle = num_samples, batch_size, shuffle
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        if self.drop_last:
            per_rank = self.num_samples // self.world_size
            return order[self.rank * per_rank : (self.rank + 1) * per_rank]
        return order[self.rank :: self.world_size]

    def __iter__(self):
        indices = self._indices()
        n = len(indices)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield indices[start : start + self.batch_size]
        self.epoch += 1

    def __len__(self) -> int:
        n = self.num_samples // self.world_size if self.drop_last else -(-(self.num_samples - self.rank) // self.world_size)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class SampleBatches(torch.utils.data.Dataset):
    def __init__(self, samples: Samples):
        self.users = torch.from_numpy(samples.users)
        self.histories = torch.from_numpy(samples.histories)
        self.targets = torch.from_numpy(samples.targets)
        self.index = torch.arange(len(samples))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, batch: np.ndarray) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(batch)
        return {"users": self.users[idx], "histories": self.histories[idx], "targets": self.targets[idx],
                "sample_ids": self.index[idx]}


def batch_loader(samples: Samples, batch_size: int, shuffle: bool, seed: int, rank: int, world_size: int,
                 drop_last: bool, num_workers: int = 0) -> DataLoader:
    sampler = ShardedBatchSampler(len(samples), batch_size, shuffle, seed, rank, world_size, drop_last)
    # batch_size=None: the sampler already yields whole batches.
    return DataLoader(SampleBatches(samples), sampler=sampler, batch_size=None, num_workers=num_workers,
                      persistent_workers=num_workers > 0)
