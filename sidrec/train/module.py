"""Lightning drives training (loggers, checkpoints, early stopping, DDP); the network itself is a
plain PyTorch module from sidrec.models."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from sidrec.config import RunConfig
from sidrec.evaluate.metrics import compute_metrics
from sidrec.evaluate.runner import Ranker
from sidrec.vocab import PAD


class GenerativeRecommender(L.LightningModule):
    def __init__(self, model: torch.nn.Module, ranker: Ranker, cfg: RunConfig, artifact_meta: dict):
        super().__init__()
        self.model, self.ranker, self.cfg = model, ranker, cfg
        self.artifact_meta = artifact_meta  # model config, vocab, SID-table fingerprint: stored in checkpoints
        self.ks = cfg.ks()
        self._ranked: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []
        self.seen_sample_ids: list[torch.Tensor] = []

    def on_fit_start(self) -> None:
        self.ranker.to(self.device)

    def training_step(self, batch, batch_idx):
        input_ids, mask = self.ranker.batcher.inputs(batch["histories"], batch["users"])
        decoder_input_ids, labels = self.ranker.batcher.targets(batch["targets"])
        logits, aux_loss = self.model(input_ids, mask, decoder_input_ids)
        ce = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=PAD)
        loss = ce + self.cfg.model.moe_aux_weight * aux_loss
        self.log("train/loss", ce, prog_bar=True, batch_size=len(labels))
        if self.cfg.model.num_experts > 0:
            self.log("train/moe_aux_loss", aux_loss, batch_size=len(labels))
        if self.cfg.train.record_sample_ids:
            self.seen_sample_ids.append(batch["sample_ids"].cpu())
        return loss

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

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.cfg.train.lr, weight_decay=self.cfg.train.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["sidrec"] = self.artifact_meta
