"""Train with Lightning; keep the checkpoint with the best validation metric."""

from __future__ import annotations

import os
import sys
import time
import zipfile
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from sidrec.config import RunConfig
from sidrec.data.split import Samples
from sidrec.decode.ranker import Ranker
from sidrec.devices import resolve_device
from sidrec.layout import CHECKPOINTS, LOGS, TENSORBOARD, TRAIN_SAMPLE_IDS
from sidrec.train.data import ShardedBatchSampler, batch_loader
from sidrec.errors import ArtifactError, ConfigError
from sidrec.train.module import LR_SCHEDULES, GenerativeRecommender


# train.precision: "auto" (``resolve_precision``) or one of Lightning's names.
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "transformer-engine",
              "transformer-engine-float16", "32", "16", "bf16", "64")


def cpu_has_bf16() -> bool:
    """Native bf16 matrix units (AVX512-BF16 / AMX): there bf16 autocast pays; elsewhere it is emulated."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(setting: str, accelerator: str) -> str:
    if setting != "auto":
        return setting
    if accelerator == "gpu" or cpu_has_bf16():
        return "bf16-mixed"
    print("precision: this CPU has no native bf16, training in fp32 (32-true)")
    return "32-true"


def _loggers(cfg: RunConfig, run_dir: Path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    names = {n.strip() for n in cfg.train.loggers.split(",") if n.strip()}
    loggers = []
    if "csv" in names:
        loggers.append(CSVLogger(run_dir, name=LOGS, version=""))
    if "tensorboard" in names:
        loggers.append(TensorBoardLogger(run_dir, name=TENSORBOARD, version=""))
    return loggers or False


@dataclass
class FitResult:
    best_checkpoint: str  # "" when no validation ran
    best_score: float
    steps: int
    is_global_zero: bool
    stopped: str = "budget"  # budget | early_stop | time_limit (train.max_minutes)


class AtomicCheckpoint(ModelCheckpoint):
    """Writes each checkpoint to a temporary file and renames it into place, so a run killed while
    saving keeps the previous ``last.ckpt`` / ``best.ckpt`` intact."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        partial = f"{filepath}.partial"
        super()._save_checkpoint(trainer, partial)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
        self._last_checkpoint_saved = filepath


class LogProgress(Callback):
    """Plain progress lines for logs (output not on a terminal, where the progress bar shows nothing):
    one every ``share`` of the budget and one per validation."""

    def __init__(self, max_steps: int, steps_per_epoch: int, share: float = 0.05):
        self.max_steps, self.steps_per_epoch = max_steps, steps_per_epoch
        self.every = max(1, round(share * max_steps))
        self.start = time.monotonic()
        self.first_step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.start, self.first_step = time.monotonic(), trainer.global_step  # a resumed run counts from here

    def _line(self, trainer, what: str) -> str:
        step = trainer.global_step
        minutes = (time.monotonic() - self.start) / 60
        done = (step - self.first_step) / max(1, self.max_steps - self.first_step)
        eta = minutes / done * (1 - done) if done > 0 else float("nan")
        loss = trainer.callback_metrics.get("train/loss")
        loss = f", loss {float(loss):.4f}" if loss is not None else ""
        return (f"{what}: step {step}/{self.max_steps} ({100 * step / self.max_steps:.0f}%), epoch "
                f"{step / self.steps_per_epoch:.2f}{loss}, {minutes:.1f} min elapsed, ETA {eta:.1f} min")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.is_global_zero and trainer.global_step % self.every == 0:
            print(self._line(trainer, "training"), flush=True)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            metrics = {k.removeprefix("val/"): float(v) for k, v in trainer.callback_metrics.items()
                       if k.startswith("val/") and "@" in k}
            shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
            print(self._line(trainer, "validation") + f", {shown}", flush=True)


def steps_per_epoch(cfg: RunConfig, num_samples: int) -> int:
    """Optimizer steps in one pass over ``num_samples`` training samples (per DDP rank)."""
    lengths = np.zeros(num_samples) if cfg.train.bucketed else None  # only the count matters here
    return max(1, len(ShardedBatchSampler(num_samples, cfg.train.batch_size, True, cfg.seed, 0,
                                          max(1, cfg.train.devices), True, lengths)))


def resolve_budget(cfg: RunConfig, num_samples: int) -> RunConfig:
    """``train.max_epochs`` / ``train.val_every_epochs`` turned into steps for this dataset (a copy)."""
    t = cfg.train
    if t.max_epochs < 0 or t.val_every_epochs < 0:
        raise ConfigError(f"train.max_epochs={t.max_epochs}, train.val_every_epochs={t.val_every_epochs}: "
                          "expected >= 0 (0 = use the step counts)")
    per_epoch = steps_per_epoch(cfg, num_samples)
    max_steps = max(1, round(t.max_epochs * per_epoch)) if t.max_epochs > 0 else t.max_steps
    val_every = max(1, round(t.val_every_epochs * per_epoch)) if t.val_every_epochs > 0 else t.val_every
    if max_steps < 1 or val_every < 1:
        raise ConfigError(f"train.max_steps={max_steps}, train.val_every={val_every}: expected >= 1")
    print(f"budget: {max_steps} steps ({max_steps / per_epoch:g} epochs of {per_epoch} steps), "
          f"validation every {val_every} steps"
          + (f", wall-clock limit {t.max_minutes:g} min" if t.max_minutes > 0 else ""))
    return replace(cfg, train=replace(t, max_steps=max_steps, val_every=val_every))


def check_train_config(cfg: RunConfig) -> None:
    """The train.* names that Lightning or the validation loop would refuse only when training starts."""
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    t = cfg.train

    def one_of(key: str, value: str, choices) -> None:
        if value not in choices:
            raise ConfigError(f"train.{key}={value!r}: expected one of {', '.join(choices)}")

    one_of("lr_schedule", t.lr_schedule, LR_SCHEDULES)
    one_of("precision", t.precision, PRECISIONS)
    one_of("accelerator", t.accelerator, ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())))
    one_of("strategy", t.strategy, ("auto", *StrategyRegistry.available_strategies()))
    if t.accelerator in ("gpu", "cuda"):
        resolve_device(t.accelerator, "train.accelerator")  # there must be one
    metrics = [f"{m}@{k}" for k in cfg.ks() for m in ("recall", "ndcg")]
    one_of("select_metric", t.select_metric, metrics)
    one_of("early_stop_metric", t.early_stop_metric, metrics)
    for name in (n.strip() for n in t.loggers.split(",") if n.strip()):
        one_of("loggers", name, ("csv", "tensorboard"))


def check_checkpoint(path: Path) -> None:
    """A checkpoint to resume from is whole (torch writes a zip archive, each entry with a CRC), so
    a damaged one is refused in one line rather than in Lightning's traceback."""
    try:
        with zipfile.ZipFile(path) as archive:
            entry = archive.testzip()
        damaged = None if entry is None else f"its entry {entry} fails its CRC check"
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        damaged = " ".join(str(exc).split())
    if damaged is not None:
        raise ArtifactError(f"{path}: corrupted checkpoint ({damaged}); delete it to train from the start")


def fit(cfg: RunConfig, run_dir: Path, model: torch.nn.Module, ranker: Ranker, train: Samples, valid: Samples,
        meta: dict, resume_from: Path | None = None) -> FitResult:
    """Lightning fit; on return ``model`` holds the weights of the best validation checkpoint.

    A last checkpoint (model, optimizer, step, sampler position, dropout RNG, early-stopping and
    best-checkpoint state, time spent) is kept at every validation; when ``resume_from`` exists,
    training continues from it."""
    check_train_config(cfg)
    cfg = resolve_budget(cfg, len(train))
    module = GenerativeRecommender(model, ranker, cfg, meta)
    module.num_train_samples = len(train)
    accelerator = cfg.train.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if resolve_device("auto", "train.accelerator").type == "cuda" else "cpu"
    precision = resolve_precision(cfg.train.precision, accelerator)
    print(f"training: {accelerator}, precision {precision}, "
          f"{'length-bucketed' if cfg.train.bucketed else 'random'} batches of {cfg.train.batch_size}, "
          f"lr {cfg.train.lr} ({cfg.train.lr_schedule}, warm-up {cfg.train.warmup_steps} steps), "
          f"{len(train)} samples/epoch")
    trainer_kwargs = dict(
        accelerator=accelerator, devices=cfg.train.devices, strategy=cfg.train.strategy,
        precision=precision, max_steps=cfg.train.max_steps, max_epochs=-1,
        val_check_interval=cfg.train.val_every, check_val_every_n_epoch=None,
        num_sanity_val_steps=0, logger=_loggers(cfg, run_dir), use_distributed_sampler=False,
        default_root_dir=run_dir, log_every_n_steps=min(50, cfg.train.val_every), enable_model_summary=False,
    )
    if cfg.train.max_minutes > 0:
        trainer_kwargs["max_time"] = timedelta(minutes=cfg.train.max_minutes)
    checkpoint = AtomicCheckpoint(dirpath=run_dir / CHECKPOINTS, filename="best", monitor=f"val/{cfg.train.select_metric}",
                                  mode="max", save_top_k=1, save_last=True, enable_version_counter=False)
    early_stop = EarlyStopping(monitor=f"val/{cfg.train.early_stop_metric}", mode="max", patience=cfg.train.patience,
                               check_on_train_epoch_end=False)
    callbacks = [checkpoint, early_stop]
    if not sys.stdout.isatty():
        callbacks.append(LogProgress(cfg.train.max_steps, steps_per_epoch(cfg, len(train))))
    trainer = L.Trainer(callbacks=callbacks, **trainer_kwargs)
    rank, world = trainer.global_rank, trainer.world_size
    train_loader = batch_loader(train, cfg.train.batch_size, True, cfg.seed, rank, world, True, cfg.train.num_workers,
                                bucketed=cfg.train.bucketed)
    module.train_sampler = train_loader.sampler
    resume = resume_from if resume_from is not None and resume_from.exists() else None
    if resume is not None:
        check_checkpoint(resume)
        print(f"resuming training from {resume}")
    trainer.fit(module, train_dataloaders=train_loader,
                # Sorted by history length: little padding per batch (the metrics are means over users).
                val_dataloaders=batch_loader(valid.subset(np.argsort(valid.history_lengths(), kind="stable")),
                                             cfg.decode.batch_size, False, cfg.seed, rank, world, False),
                ckpt_path=str(resume) if resume is not None else None)
    if cfg.train.record_sample_ids and module.seen_sample_ids:
        np.save(run_dir / TRAIN_SAMPLE_IDS.format(trainer.global_rank), torch.cat(module.seen_sample_ids).numpy())
    best = checkpoint.best_model_path or ""
    if best:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    score = checkpoint.best_model_score
    steps = int(trainer.global_step)
    stopped = ("budget" if steps >= cfg.train.max_steps else
               "early_stop" if early_stop.wait_count >= early_stop.patience else "time_limit")
    if stopped == "time_limit":
        print(f"stopped by the wall-clock limit train.max_minutes={cfg.train.max_minutes:g} after {steps} of "
              f"{cfg.train.max_steps} steps: this result depends on the machine's speed and load")
    return FitResult(best, float(score) if score is not None else float("nan"), steps, trainer.is_global_zero,
                     stopped)


def validation_subset(samples: Samples, max_users: int, seed: int) -> Samples:
    if max_users <= 0 or max_users >= len(samples):
        return samples
    keep = np.sort(np.random.default_rng(seed).choice(len(samples), size=max_users, replace=False))
    return samples.subset(keep)
