"""RQ-VAE (TIGER): MLP encoder -> residual quantiser (L codebooks of W in the latent space) -> MLP
decoder, trained jointly for ``rqvae_steps`` AdaGrad steps (paper) on

    |x - dec(z_q)|^2 + sum_l |sg[r_l] - e_l|^2 + beta * |r_l - sg[e_l]|^2

with the straight-through estimator z_q = z + sg[sum_l e_l - z].

Defences against codebook collapse: inputs are whitened (paper), the codebooks start as k-means of
the first batch's encodings, and idle codewords are re-seeded on current batch residuals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from sidrec.config import POSITIVE, TokenizerConfig, at_least
from sidrec.errors import ConfigError
from sidrec.tokenize.base import Tokenizer
from sidrec.tokenize.residual import lloyd, nearest, reseed_idle, seed_codebook

WHITEN_EPS = 1e-3  # added to covariance eigenvalues, relative to their mean: no blow-up of null directions
INIT_KMEANS_ITERS = 10


def mlp(widths: list[int]) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    def __init__(self, dim: int, hidden: list[int], latent: int, levels: int, codes: int):
        super().__init__()
        self.encoder = mlp([dim, *hidden, latent])
        self.decoder = mlp([latent, *reversed(hidden), dim])
        self.codebooks = nn.Parameter(torch.zeros(levels, codes, latent))

    def quantise(self, z: torch.Tensor) -> tuple:
        """z (B, latent) -> codes (B, L), quantised z (B, latent), the residual each level quantised,
        codebook loss, commitment loss."""
        codes, residuals, z_q = [], [], torch.zeros_like(z)
        codebook_loss = commit_loss = z.new_zeros(())
        r = z
        for codebook in self.codebooks:
            c = nearest(r.detach(), codebook.detach())
            e = F.one_hot(c, len(codebook)).to(z.dtype) @ codebook  # matmul lookup: deterministic backward on GPU
            codebook_loss = codebook_loss + F.mse_loss(e, r.detach())
            commit_loss = commit_loss + F.mse_loss(r, e.detach())
            codes.append(c)
            residuals.append(r)
            z_q = z_q + e
            r = r - e.detach()  # each codebook is trained by its own level's loss only
        return torch.stack(codes, 1), z_q, residuals, codebook_loss, commit_loss


def whitening(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ZCA whitening: mean, whitening matrix, and its inverse (to map reconstructions back)."""
    mean = x.mean(0)
    xc = (x - mean).double()
    evals, evecs = torch.linalg.eigh(xc.T @ xc / max(len(x) - 1, 1))
    evals = evals.clamp_min(0) + WHITEN_EPS * evals.clamp_min(0).mean()
    whiten = (evecs * evals.rsqrt()) @ evecs.T
    unwhiten = (evecs * evals.sqrt()) @ evecs.T
    return mean, whiten.float(), unwhiten.float()


@dataclass
class RQVAEOptions(TokenizerConfig):
    """tokenizer.* of tokenizer.kind=rqvae: TokenizerConfig's options and these."""

    kind: str = "rqvae"
    lr: float = 1e-3  # learning rate (R-VQ: Adam on the codebooks; RQ-VAE: AdaGrad on the whole model)
    rqvae_steps: int = 15000  # paper: 15k total steps
    rqvae_hidden: str = "512,256"  # MLP encoder widths; decoder mirrors them
    rqvae_latent_dim: int = 64
    rqvae_beta: float = 0.25  # commitment loss weight
    whiten: bool = True  # input whitening (paper)

    LIMITS: ClassVar[dict[str, tuple]] = {"lr": POSITIVE, "rqvae_beta": at_least(0),
                                          **{name: at_least(1) for name in ("rqvae_steps", "rqvae_latent_dim")}}


class RQVAETokenizer(Tokenizer):
    kind = "rqvae"
    options = RQVAEOptions

    def __init__(self, cfg):
        super().__init__(cfg)
        try:
            self.hidden = [int(w) for w in cfg.rqvae_hidden.split(",") if w.strip()]
        except ValueError:
            raise ConfigError(
                f"tokenizer.rqvae_hidden={cfg.rqvae_hidden!r}: expected comma-separated widths, e.g. 512,256"
            ) from None

    def _new_model(self) -> RQVAE:
        model = RQVAE(self.dim, self.hidden, self.cfg.rqvae_latent_dim, self.num_levels, self.num_codes_per_level)
        return model.to(self.device)

    def _fit(self, x: torch.Tensor, gen: torch.Generator, progress: bool) -> None:
        cfg, n = self.cfg, len(x)
        if cfg.whiten:
            self.mean, self.whiten, self.unwhiten = whitening(x)
        else:
            eye = torch.eye(self.dim, device=x.device)
            self.mean, self.whiten, self.unwhiten = x.new_zeros(self.dim), eye, eye
        xw = (x - self.mean) @ self.whiten
        with torch.random.fork_rng(devices=[]):  # weight init from our seed, without touching global RNG state
            torch.manual_seed(torch.randint(2**62, (1,), generator=gen).item())
            self.model = self._new_model()
        batch = min(cfg.batch_size, n)
        self._init_codebooks(xw[torch.randint(n, (batch,), generator=gen).to(x.device)], gen)
        opt = torch.optim.Adagrad(self.model.parameters(), lr=cfg.lr)
        idle = torch.zeros(self.num_levels, self.num_codes_per_level, dtype=torch.long, device=x.device)
        bar = tqdm(range(cfg.rqvae_steps), desc="rqvae tokenizer", disable=not progress)
        for step in bar:
            xb = xw[torch.randint(n, (batch,), generator=gen).to(x.device)]
            z = self.model.encoder(xb)
            codes, z_q, residuals, codebook_loss, commit_loss = self.model.quantise(z)
            recon = self.model.decoder(z + (z_q - z).detach())
            recon_loss = F.mse_loss(recon, xb)
            loss = recon_loss + codebook_loss + cfg.rqvae_beta * commit_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for level, r in enumerate(residuals):
                counts = torch.bincount(codes[:, level], minlength=self.num_codes_per_level)
                reseed_idle(self.model.codebooks.data[level], idle[level], counts, r.detach(), codes[:, level], gen)
            if step % 100 == 0:
                bar.set_postfix(recon=f"{recon_loss.item():.4f}", commit=f"{commit_loss.item():.4f}")
        self.model.eval()

    @torch.no_grad()
    def _init_codebooks(self, xb: torch.Tensor, gen: torch.Generator) -> None:
        r = self.model.encoder(xb)
        for codebook in self.model.codebooks.data:
            codebook.copy_(lloyd(r, seed_codebook(r, self.num_codes_per_level, gen), INIT_KMEANS_ITERS))
            r = r - codebook[nearest(r, codebook)]

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.quantise(self.model.encoder((x - self.mean) @ self.whiten))[0]

    def _reconstruct(self, codes: torch.Tensor) -> torch.Tensor:
        z_q = sum(self.model.codebooks[level][codes[:, level]] for level in range(self.num_levels))
        return self.model.decoder(z_q) @ self.unwhiten + self.mean

    def _state(self) -> dict[str, torch.Tensor]:
        model = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        return {"mean": self.mean, "whiten": self.whiten, "unwhiten": self.unwhiten, **model}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.mean, self.whiten, self.unwhiten = state["mean"], state["whiten"], state["unwhiten"]
        shapes = (tuple(self.mean.shape), tuple(self.whiten.shape), tuple(self.unwhiten.shape))
        if shapes != ((self.dim,), (self.dim, self.dim), (self.dim, self.dim)):
            raise ValueError(f"whitening stats of shapes {shapes} for {self.dim}-dim embeddings")
        self.model = self._new_model()
        self.model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
        self.model.eval()
