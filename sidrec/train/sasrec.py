"""Training the SASRec baseline (sidrec/models/sasrec.py) under the generative model's protocol.

Same leave-last-out split (``sidrec.data.split``), same metrics (``compute_metrics``: full-catalog
Recall@K / NDCG@K, one target per user, nothing excluded), early stopping on validation NDCG@10, the
best validation epoch kept.

Training uses each user's training part (``training_samples(..., sliding_window=False)``: history +
last training item, i.e. the last ``max_len + 1`` training items) with a next-item cross-entropy over
all items at every position, which for a causal model is the sliding-window augmentation in one pass.
A plain loop, not Lightning: a few hundred steps an epoch on whole user sequences need none of it.
"""

from __future__ import annotations

import copy
import csv
import time
from pathlib import Path

import numpy as np
import torch

from sidrec.config import SASRecConfig, SASRecRunConfig
from sidrec.data.dataset import Dataset
from sidrec.data.split import Samples, evaluation_samples, training_samples
from sidrec.decode.ranker import exclude_items_
from sidrec.devices import resolve_device
from sidrec.layout import SASREC_LOG
from sidrec.errors import ConfigError
from sidrec.evaluate.metrics import compute_metrics
from sidrec.models.sasrec import SASRec


def network_config(s: SASRecConfig, num_items: int) -> dict:
    """SASRec's constructor arguments (also stored in model.pt to rebuild it)."""
    return {"num_items": num_items, "max_len": s.max_len, "d_model": s.d_model, "num_layers": s.num_layers,
            "num_heads": s.num_heads, "d_ff": s.d_ff, "dropout": s.dropout}


def device_for(name: str) -> torch.device:
    return resolve_device(name, "sasrec.device")


@torch.no_grad()
def rank_all_items(model, histories: np.ndarray, k: int, batch_size: int, device,
                   exclude_history: bool = False) -> np.ndarray:
    """(U, H) left-padded histories -> (U, k) item indices by score over the whole catalog, best first;
    ``exclude_history``: never an item of the user's history."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(histories), batch_size):
        h = torch.from_numpy(histories[start:start + batch_size]).to(device)
        scores = model.score_last(h)
        if exclude_history:
            exclude_items_(scores, h)
        out.append(scores.topk(k, dim=1).indices.cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def evaluate_sasrec(model, samples: Samples, ks: list[int], batch_size: int, device,
                    exclude_history: bool = False) -> dict[str, float]:
    ranked = rank_all_items(model, samples.histories, max(ks), batch_size, device, exclude_history)
    return compute_metrics(ranked, samples.targets, ks=ks)


def training_sequences(dataset: Dataset, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels), both (S, max_len): inputs are the training items before the last one,
    labels the next item at every position (-1 where the input is padding)."""
    train = training_samples(dataset, max_len, sliding_window=False)
    seqs = np.concatenate([train.histories, train.targets[:, None]], axis=1)
    inputs, labels = seqs[:, :-1], seqs[:, 1:].copy()
    labels[inputs < 0] = -1
    return inputs, labels


def train_sasrec(cfg: SASRecRunConfig, dataset: Dataset, run_dir: Path | None = None,
                 progress: bool = True) -> tuple[SASRec, dict]:
    """Train with early stopping on validation; return the best-validation model and a summary.
    Writes ``log.csv`` (per epoch loss and validation metrics) into ``run_dir`` when given."""
    s = cfg.sasrec
    if s.early_stop_metric not in {f"{m}@{k}" for m in ("recall", "ndcg") for k in cfg.ks()}:
        raise ConfigError(f"sasrec.early_stop_metric={s.early_stop_metric!r} is not one of the metrics "
                          f"computed for eval.ks={cfg.eval.ks}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = device_for(s.device)
    inputs, labels = training_sequences(dataset, s.max_len)
    if len(inputs) == 0:
        raise ConfigError(f"dataset {dataset.name}: no user has 2 or more training items")
    valid = evaluation_samples(dataset, s.max_len, "valid")
    model = SASRec(**network_config(s, dataset.num_items)).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    ks = cfg.ks()
    best_score, best_state, best_epoch, bad, history = -1.0, None, 0, 0, []
    start = time.perf_counter()
    epoch = 0
    for epoch in range(1, s.max_epochs + 1):
        model.train()
        order = rng.permutation(len(inputs))
        losses = []
        for b in range(0, len(order), s.batch_size):
            idx = order[b:b + s.batch_size]
            x, y = inputs[idx], labels[idx]
            width = int((x >= 0).sum(axis=1).max())  # drop the columns that are padding in every row
            x = torch.from_numpy(x[:, -width:]).to(device)
            y = torch.from_numpy(y[:, -width:]).to(device)
            loss = model.loss(x, y)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            losses.append(loss.item())
        val = evaluate_sasrec(model, valid, ks, s.eval_batch_size, device, s.exclude_history)
        score = val[s.early_stop_metric]
        minutes = (time.perf_counter() - start) / 60
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), **{f"val_{k}": v for k, v in val.items()},
                        "minutes": round(minutes, 3)})
        if progress:
            print(f"epoch {epoch:3d}  loss {np.mean(losses):.4f}  val {s.early_stop_metric} {score:.4f}  "
                  f"recall@10 {val.get('recall@10', float('nan')):.4f}  {minutes:.1f} min", flush=True)
        if score > best_score:
            best_score, best_epoch, bad = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        if bad >= s.patience:
            break
        if s.max_minutes > 0 and minutes >= s.max_minutes:
            if progress:
                print(f"stopping: sasrec.max_minutes={s.max_minutes} reached")
            break
    model.load_state_dict(best_state)
    if run_dir is not None and history:
        with open(run_dir / SASREC_LOG, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
    summary = {"best_val": best_score, "best_epoch": best_epoch, "epochs": epoch,
               "train_sequences": int(len(inputs)), "train_minutes": round((time.perf_counter() - start) / 60, 2),
               "parameters": sum(p.numel() for p in model.parameters())}
    return model, summary
