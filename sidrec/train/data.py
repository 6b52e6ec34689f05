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
    training), or all samples exactly once (evaluation).

    With ``lengths`` (bucketing): the rank's shuffled samples are cut into pools of ``pool_batches``
    batches, each pool is sorted by length and cut into batches, and the batches of the whole epoch
    are shuffled. Batches then hold histories of (nearly) one length, so little compute goes to
    padding, while every sample is still seen exactly once per epoch (the last batch may be short)."""

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool, seed: int, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True, lengths: np.ndarray | None = None,
                 pool_batches: int = 64):
        if lengths is not None and len(lengths) != num_samples:
            raise ValueError(f"{len(lengths)} lengths for {num_samples} samples")
        self.num_samples, self.batch_size, self.shuffle = num_samples, batch_size, shuffle
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.drop_last = drop_last and lengths is None
        self.lengths, self.pool_batches = lengths, pool_batches
        self.epoch = 0
        self.skip = 0  # batches of the next epoch already trained on (a resumed run)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, step: int) -> None:
        """Continue after ``step`` training steps: the epoch's batches are drawn again from the same
        seed, and the ones already trained on are skipped."""
        self.epoch, self.skip = divmod(step, len(self))

    def _indices(self, rng: np.random.Generator) -> np.ndarray:
        order = rng.permutation(self.num_samples) if self.shuffle else np.arange(self.num_samples)
        if self.drop_last or self.lengths is not None:  # equal shares: every rank runs as many steps
            per_rank = self.num_samples // self.world_size
            return order[self.rank * per_rank : (self.rank + 1) * per_rank]
        return order[self.rank :: self.world_size]

    def _batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch))
        indices = self._indices(rng)
        if self.lengths is None:
            n = len(indices)
            stop = n - n % self.batch_size if self.drop_last else n
            return [indices[start : start + self.batch_size] for start in range(0, stop, self.batch_size)]
        pool = self.pool_batches * self.batch_size
        batches = []
        for start in range(0, len(indices), pool):
            chunk = indices[start : start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self):
        skip, self.skip = self.skip, 0
        yield from self._batches()[skip:]
        self.epoch += 1

    def __len__(self) -> int:
        if self.lengths is not None:
            per_rank = self.num_samples // self.world_size
            pool = self.pool_batches * self.batch_size
            full, rest = divmod(per_rank, pool)
            return full * self.pool_batches + -(-rest // self.batch_size)
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
                 drop_last: bool, num_workers: int = 0, bucketed: bool = False) -> DataLoader:
    lengths = samples.history_lengths() if bucketed else None
    sampler = ShardedBatchSampler(len(samples), batch_size, shuffle, seed, rank, world_size, drop_last, lengths)
    # batch_size=None: the sampler already yields whole batches.
    return DataLoader(SampleBatches(samples), sampler=sampler, batch_size=None, num_workers=num_workers,
                      persistent_workers=num_workers > 0)
