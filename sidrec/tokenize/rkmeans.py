"""RK-Means: residual mini-batch k-means (Sculley 2010), trained level by level.

Each level: k-means++ seeding, then ``steps_per_level`` mini-batch steps in which a centroid moves
towards the mean of its batch points with rate (its points in this batch) / (its points so far),
and idle centroids are re-seeded (see ``reseed_idle``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from sidrec.tokenize.residual import (ResidualCodebookTokenizer, ResidualOptions, cluster_sums, nearest, reseed_idle,
                                      seed_codebook)


@dataclass
class RKMeansOptions(ResidualOptions):
    """tokenizer.* of tokenizer.kind=rkmeans."""

    kind: str = "rkmeans"


class RKMeansTokenizer(ResidualCodebookTokenizer):
    kind = "rkmeans"
    options = RKMeansOptions

    def _fit_level(self, r: torch.Tensor, gen: torch.Generator, bar: tqdm) -> torch.Tensor:
        n, k, batch = len(r), self.num_codes_per_level, min(self.cfg.batch_size, len(r))
        centroids = seed_codebook(r, k, gen)
        seen = torch.zeros(k, device=r.device)  # points assigned so far: the per-centroid step size is 1/seen
        idle = torch.zeros(k, dtype=torch.long, device=r.device)
        for _ in range(self.cfg.steps_per_level):
            xb = r[torch.randint(n, (batch,), generator=gen).to(r.device)]
            codes = nearest(xb, centroids)
            counts, sums = cluster_sums(xb, codes, k)
            seen += counts
            rate = (counts / seen.clamp_min(1))[:, None]
            centroids += rate * (sums / counts.clamp_min(1)[:, None] - centroids)
            seen[reseed_idle(centroids, idle, counts, xb, codes, gen)] = 0
            bar.update()
        return centroids
