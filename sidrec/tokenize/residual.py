"""Residual quantisation shared by the tokenizers: nearest-code search, seeded sampling,
k-means++ / Lloyd, and the codebook-in-input-space tokenizer that RK-Means and R-VQ both are.

Residual normalisation (paper): before level l quantises the residual r_l, r_l is scaled to unit
norm; the next residual is r_{l+1} = r_l/|r_l| - C_l[c_l]. Codes alone cannot say |r_l|, so the
reconstruction uses the mean norm seen in training ("gain") of each level:

    x_hat = g_0 * (C_0[c_0] + g_1 * (C_1[c_1] + g_2 * C_2[c_2]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sidrec.config import TokenizerConfig, at_least
from sidrec.tokenize.base import ENCODE_CHUNK, Tokenizer

DEAD_AFTER = 20  # steps without a point; at batch 2048 and W=256 a live codeword gets ~8 a step
SEED_SAMPLE_PER_CODE = 16  # k-means++ seeding (O(N * W * d)) runs on at most 16 W points


def nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(B, d), (K, d) -> (B,) index of the closest codeword (|x|^2 is the same for every codeword)."""
    dist = torch.addmm((codebook * codebook).sum(1), x, codebook.T, alpha=-2.0)
    return dist.argmin(1)


def sq_dist_to_codes(x: torch.Tensor, codebook: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    return ((x - codebook[codes]) ** 2).sum(1)


def seed_codebook(r: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ on a random subsample of at most SEED_SAMPLE_PER_CODE * k rows."""
    sample = torch.randperm(len(r), generator=gen)[: SEED_SAMPLE_PER_CODE * k].to(r.device)
    return kmeans_plus_plus(r[sample], k, gen)


def sample_weighted(weights: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k distinct indices drawn with probability proportional to ``weights`` (Gumbel top-k). The
    noise comes from a CPU generator so the draw is the same on any device."""
    u = torch.rand(len(weights), generator=gen, dtype=torch.float64).to(weights.device)
    keys = weights.double().clamp_min(1e-300).log() - (-u.clamp_min(1e-300).log()).log()
    return keys.topk(k).indices


def kmeans_plus_plus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre is a point drawn with probability ~ squared distance to
    the closest centre so far."""
    sq_norms = (x * x).sum(1)
    chosen = [torch.randint(len(x), (1,), generator=gen).item()]
    d2 = torch.full_like(sq_norms, float("inf"))
    for _ in range(k - 1):
        d2 = torch.minimum(d2, (sq_norms + sq_norms[chosen[-1]] - 2 * (x @ x[chosen[-1]])).clamp_min(0))
        chosen.append(sample_weighted(d2, 1, gen).item())
    return x[chosen]


def cluster_sums(x: torch.Tensor, codes: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster point counts (k,) and sums (k, d)."""
    counts = torch.bincount(codes, minlength=k).to(x.dtype)
    if x.is_cuda:  # index_add_'s float atomics would make GPU runs differ; a one-hot matmul is cheap there
        return counts, F.one_hot(codes, k).to(x.dtype).T @ x
    return counts, torch.zeros(k, x.shape[1], dtype=x.dtype).index_add_(0, codes, x)


def lloyd(x: torch.Tensor, centres: torch.Tensor, iters: int) -> torch.Tensor:
    """Full-batch k-means steps; a centre that loses all its points stays where it was."""
    for _ in range(iters):
        codes = nearest(x, centres)
        counts, sums = cluster_sums(x, codes, len(centres))
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
    return centres


@torch.no_grad()
def reseed_idle(codebook: torch.Tensor, idle: torch.Tensor, counts: torch.Tensor, xb: torch.Tensor,
                codes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Dead-code defence. ``idle`` counts steps since each codeword last won a batch point; a
    codeword idle for DEAD_AFTER steps moves onto a batch point drawn with probability ~ squared
    distance to that point's codeword, i.e. where the fit is worst. Returns the moved indices."""
    idle.copy_(torch.where(counts > 0, 0, idle + 1))
    dead = (idle >= DEAD_AFTER).nonzero().squeeze(1)
    if len(dead):
        codebook[dead] = xb[sample_weighted(sq_dist_to_codes(xb, codebook, codes), len(dead), gen)]
        idle[dead] = 0
    return dead


@dataclass
class ResidualOptions(TokenizerConfig):
    """tokenizer.* of the residual codebook tokenizers (RK-Means, R-VQ): TokenizerConfig's and these."""

    normalize_residuals: bool = True  # scale each level's residuals to unit norm first (paper)
    steps_per_level: int = 1000  # layer-wise training steps (paper)

    LIMITS: ClassVar[dict[str, tuple]] = {"steps_per_level": at_least(1)}


class ResidualCodebookTokenizer(Tokenizer):
    """L codebooks of W vectors in the embedding space itself. Subclasses provide ``_fit_level``:
    learn one (W, d) codebook for the given (already normalised) residuals."""

    def _fit(self, x: torch.Tensor, gen: torch.Generator, progress: bool) -> None:
        steps = self.cfg.steps_per_level
        bar = tqdm(total=self.num_levels * steps, desc=f"{self.kind} tokenizer", disable=not progress)
        # One working copy of x, normalised and reduced to the next residual in place (same values
        # bit for bit): out-of-place steps held four (N, d) tensors at once, 6 GiB at 10^6 x 384.
        codebooks, gains, r = [], [], x.clone()
        for level in range(self.num_levels):
            bar.set_postfix(level=level)
            gains.append(self._normalise_(r))
            codebook = self._fit_level(r, gen, bar)
            for chunk in r.split(ENCODE_CHUNK):  # views: sub_ writes into r
                chunk.sub_(codebook[nearest(chunk, codebook)])
            codebooks.append(codebook)
        bar.close()
        self.codebooks = torch.stack(codebooks)  # (L, W, d)
        self.gains = torch.stack(gains)  # (L,)

    def _fit_level(self, r: torch.Tensor, gen: torch.Generator, bar: tqdm) -> torch.Tensor:
        raise NotImplementedError

    def _normalise_(self, r: torch.Tensor) -> torch.Tensor:
        """Scales the rows of ``r`` to unit norm in place; returns their mean norm before (the gain)."""
        if not self.cfg.normalize_residuals:
            return torch.ones((), device=r.device)
        gain = r.norm(dim=1).mean()
        F.normalize(r, dim=1, out=r)
        return gain

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        codes, r = [], x
        for codebook in self.codebooks:
            if self.cfg.normalize_residuals:
                r = F.normalize(r, dim=1)
            c = nearest(r, codebook)
            codes.append(c)
            r = r - codebook[c]
        return torch.stack(codes, 1)

    def _reconstruct(self, codes: torch.Tensor) -> torch.Tensor:
        x_hat = torch.zeros(len(codes), self.codebooks.shape[2], device=codes.device)
        for level in reversed(range(self.num_levels)):
            x_hat = self.gains[level] * (self.codebooks[level][codes[:, level]] + x_hat)
        return x_hat

    def _state(self) -> dict[str, torch.Tensor]:
        return {"codebooks": self.codebooks, "gains": self.gains}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        codebooks, gains = state["codebooks"], state["gains"]
        expected = (self.num_levels, self.num_codes_per_level, self.dim)
        if codebooks.shape != expected or gains.shape != (self.num_levels,):
            raise ValueError(f"codebooks {tuple(codebooks.shape)}, gains {tuple(gains.shape)}")
        self.codebooks, self.gains = codebooks.float(), gains.float()
