"""R-VQ: residual vector quantisation with codebooks learnt by gradient, level by level.

Each level: k-means++ seeding, then ``steps_per_level`` Adam steps on the quantisation loss
mean_b |r_b - C[nearest(r_b)]|^2 (the residuals are data here, there is no encoder to train), with
idle codewords re-seeded (see ``reseed_idle``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from tqdm.auto import tqdm

from sidrec.config import POSITIVE
from sidrec.tokenize.residual import (ResidualCodebookTokenizer, ResidualOptions, cluster_sums, nearest, reseed_idle,
                                      seed_codebook)


@dataclass
class RVQOptions(ResidualOptions):
    """tokenizer.* of tokenizer.kind=rvq: ResidualOptions and the codebooks' learning rate."""

    kind: str = "rvq"
    lr: float = 1e-3  # learning rate (R-VQ: Adam on the codebooks; RQ-VAE: AdaGrad on the whole model)

    LIMITS: ClassVar[dict[str, tuple]] = {**ResidualOptions.LIMITS, "lr": POSITIVE}


class RVQTokenizer(ResidualCodebookTokenizer):
    kind = "rvq"
    options = RVQOptions

    def _fit_level(self, r: torch.Tensor, gen: torch.Generator, bar: tqdm) -> torch.Tensor:
        n, k, batch = len(r), self.num_codes_per_level, min(self.cfg.batch_size, len(r))
        codebook = torch.nn.Parameter(seed_codebook(r, k, gen))
        opt = torch.optim.Adam([codebook], lr=self.cfg.lr)
        idle = torch.zeros(k, dtype=torch.long, device=r.device)
        for _ in range(self.cfg.steps_per_level):
            xb = r[torch.randint(n, (batch,), generator=gen).to(r.device)]
            codes = nearest(xb, codebook.detach())
            counts, sums = cluster_sums(xb, codes, k)
            # The loss gradient written out, d/dC_k = 2 (n_k C_k - sum of its points) / B: cheaper
            # than autograd through a lookup, and deterministic on GPU.
            codebook.grad = 2 * (counts[:, None] * codebook.detach() - sums) / batch
            opt.step()
            reseed_idle(codebook.data, idle, counts, xb, codes, gen)
            bar.update()
        return codebook.detach()
