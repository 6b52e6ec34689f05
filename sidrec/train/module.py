"""Lightning drives training (loggers, checkpoints, early stopping, DDP); the network itself is a
plain PyTorch module from sidrec.models."""

from __future__ import annotations

import math
import time

import lightning as L
import numpy as np
import torch

from sidrec.config import RunConfig
from sidrec.evaluate.metrics import compute_metrics
from sidrec.decode.ranker import Ranker
from sidrec.models import get_model


LR_SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(schedule: str, warmup_steps: int, step: int, progress: float) -> float:
    """Multiplier of the peak learning rate. ``progress`` in [0, 1] is the share of the run done
    (steps or wall-clock, whichever is further), so a time-capped run still ends annealed."""
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        decay = 1.0
    elif schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":
        decay = 1.0 - progress
    else:
        raise ValueError(f"unknown lr_schedule {schedule!r} ({' | '.join(LR_SCHEDULES)})")
    return warmup * decay


class GenerativeRecommender(L.LightningModule):
    def __init__(self, model: torch.nn.Module, ranker: Ranker, cfg: RunConfig, artifact_meta: dict):
        super().__init__()
        self.model, self.ranker, self.cfg = model, ranker, cfg
        self.plugin = get_model(cfg.model.arch)  # its training objective
        self.artifact_meta = artifact_meta  # model config, vocab, SID-table fingerprint: stored in checkpoints
        self.ks = cfg.ks()
        self._ranked: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []
        self.seen_sample_ids: list[torch.Tensor] = []
        self._train_start = time.monotonic()
        self._resume_state: dict | None = None
        self.num_train_samples = 1  # set by fit()
        self.train_sampler = None  # set by fit(): repositioned when training resumes from a checkpoint

    def on_fit_start(self) -> None:
        self.ranker.to(self.device)

    def progress(self) -> float:
        t = self.cfg.train
        shares = [self.global_step / t.max_steps]
        if t.max_minutes > 0:
            shares.append((time.monotonic() - self._train_start) / (60 * t.max_minutes))
        return max(shares)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        t = self.cfg.train
        lr = t.lr * lr_factor(t.lr_schedule, t.warmup_steps, self.global_step, self.progress())
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = lr

    def training_step(self, batch, batch_idx):
        loss, logged = self.plugin.loss(self.model, batch, self.ranker, self.cfg.model, self.cfg.train.label_smoothing)
        batch_size = len(batch["targets"])
        for name, value in logged.items():  # "loss": the next-item cross-entropy; a plug-in may add terms
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss", batch_size=batch_size)
        self.log("train/lr", self.optimizers().optimizer.param_groups[0]["lr"], batch_size=batch_size)
        if self.cfg.train.record_sample_ids:
            self.seen_sample_ids.append(batch["sample_ids"].cpu())
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        # Here, not Lightning's gradient_clip_val: its mixed-precision plugin refuses fused optimizers.
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)

    def validation_step(self, batch, batch_idx):
        rng = np.random.default_rng((self.cfg.seed, self.global_step, len(self._ranked)))
        ranked, _ = self.ranker.rank(self.model, batch["histories"], batch["users"], max(self.ks), rng)
        self._ranked.append(ranked)
        self._targets.append(batch["targets"].cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        ranked, targets = np.concatenate(self._ranked), np.concatenate(self._targets)
        self._ranked, self._targets = [], []
        metrics = compute_metrics(ranked, targets, ks=self.ks)
        # Sums, not means, are reduced across DDP ranks so uneven shards weigh correctly.
        count = torch.tensor(float(len(targets)), device=self.device)
        sums = torch.tensor([metrics[m] * len(targets) for m in sorted(metrics)], device=self.device)
        if self.trainer.world_size > 1:
            count, sums = self.trainer.strategy.reduce(count, reduce_op="sum"), self.trainer.strategy.reduce(sums, reduce_op="sum")
        for name, value in zip(sorted(metrics), (sums / count).tolist()):
            self.log(f"val/{name}", value, prog_bar=name.endswith("@10"), sync_dist=False)
        # For learning curves per CPU-minute and per epoch (validation time included in the minutes).
        self.log("val/train_minutes", (time.monotonic() - self._train_start) / 60, sync_dist=False)
        self.log("val/epochs", self.global_step * self.cfg.train.batch_size * self.trainer.world_size
                 / self.num_train_samples, sync_dist=False)

    def configure_optimizers(self):
        # fused: one pass per parameter instead of ~8 elementwise kernels (Adam was ~10% of a CPU step).
        return torch.optim.Adam(self.model.parameters(), lr=self.cfg.train.lr, weight_decay=self.cfg.train.weight_decay,
                                fused=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["sidrec"] = self.artifact_meta
        # What Lightning does not keep, so a resumed run continues exactly: the dropout RNG and the
        # training time already spent (the LR schedule of a time-capped run depends on it).
        checkpoint["sidrec_resume"] = {"torch_rng": torch.get_rng_state(),
                                       "train_seconds": time.monotonic() - self._train_start}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        print(f"resuming at step {checkpoint['global_step']}")
        self._resume_state = checkpoint.get("sidrec_resume")
        if self.train_sampler is not None:
            self.train_sampler.resume_at(checkpoint["global_step"])

    def on_train_start(self) -> None:
        self._train_start = time.monotonic()
        if self._resume_state is not None:
            self._train_start -= self._resume_state["train_seconds"]
            torch.set_rng_state(self._resume_state["torch_rng"])
            self._resume_state = None
