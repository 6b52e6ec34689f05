"""SASRec baseline under exactly the generative model's protocol.

Same data loading (``data.*`` config), same leave-last-out split (``sidrec.data.split``), same
metrics (``compute_metrics``: full-catalog Recall@K / NDCG@K, one target per user, nothing excluded),
early stopping on validation NDCG@10, test with the best validation checkpoint.

Training uses each user's training part (``training_samples(..., sliding_window=False)``: history +
last training item, i.e. the last ``max_len + 1`` training items) with a next-item cross-entropy over
all items at every position, which for a causal model is the sliding-window augmentation in one pass.

    sidrec sasrec                              # bundled Beauty, CPU ok (a few minutes)
    sidrec sasrec seeds=3 sasrec.dropout=0.5   # several seeds -> summary.json with mean ± std
"""

from __future__ import annotations

import copy
import csv
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from sidrec.config import DataConfig, EvalConfig, build_config, parse_overrides, parse_seeds
from sidrec.data.dataset import Dataset
from sidrec.data.split import evaluation_samples, training_samples
from sidrec.errors import ConfigError
from sidrec.evaluate.metrics import compute_metrics, mean_std
from sidrec.io import write_json, write_text


@dataclass
class SASRecConfig:
    max_len: int = 50  # last N items of the history
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 1
    d_ff: int = 256
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128  # user sequences per step
    max_epochs: int = 200
    patience: int = 5  # stop after N validations without improvement of early_stop_metric
    early_stop_metric: str = "ndcg@10"
    max_minutes: float = 15.0  # wall-clock cap on training (0 = none)
    eval_batch_size: int = 1024
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class SASRecRunConfig:
    seed: int = 42
    run_dir: str = ""  # "" = runs/sasrec-<dataset>-<timestamp>
    preset: str = ""  # see SASREC_PRESETS
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)

    def ks(self) -> list[int]:
        return [int(k) for k in self.eval.ks.split(",") if k.strip()]


SASREC_PRESETS: dict[str, dict[str, str]] = {
    "paper": {},
    "cpu": {},  # the defaults already train on 2 CPU cores in minutes
    # Seconds-long runs for tests and CI.
    "tiny": {"sasrec.max_len": "5", "sasrec.d_model": "16", "sasrec.d_ff": "32", "sasrec.num_layers": "1",
             "sasrec.batch_size": "16", "sasrec.max_epochs": "3", "sasrec.patience": "2"},
}


def build_sasrec_config(overrides: list[str] | None = None) -> SASRecRunConfig:
    """Defaults, the preset, a ``config=`` file, then the command line (the rules of ``build_config``)."""
    return build_config(overrides, presets=SASREC_PRESETS, factory=SASRecRunConfig)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def rank_all_items(model, histories: np.ndarray, k: int, batch_size: int, device) -> np.ndarray:
    """(U, H) left-padded histories -> (U, k) item indices by score over the whole catalog, best first."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(histories), batch_size):
        h = torch.from_numpy(histories[start:start + batch_size]).to(device)
        out.append(model.score_last(h).topk(k, dim=1).indices.cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def evaluate_sasrec(model, samples, ks: list[int], batch_size: int, device) -> dict[str, float]:
    ranked = rank_all_items(model, samples.histories, max(ks), batch_size, device)
    return compute_metrics(ranked, samples.targets, ks=ks)


def _sequences(dataset: Dataset, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels), both (S, max_len): inputs are the training items before the last one,
    labels the next item at every position (-1 where the input is padding)."""
    train = training_samples(dataset, max_len, sliding_window=False)
    seqs = np.concatenate([train.histories, train.targets[:, None]], axis=1)
    inputs, labels = seqs[:, :-1], seqs[:, 1:].copy()
    labels[inputs < 0] = -1
    return inputs, labels


def train_sasrec(cfg: SASRecRunConfig, dataset: Dataset, run_dir: Path | None = None,
                 progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train with early stopping on validation; return the best-validation model and a summary."""
    from sidrec.models.sasrec import SASRec

    s = cfg.sasrec
    if s.early_stop_metric not in {f"{m}@{k}" for m in ("recall", "ndcg") for k in cfg.ks()}:
        raise ConfigError(f"sasrec.early_stop_metric={s.early_stop_metric!r} is not one of the metrics "
                          f"computed for eval.ks={cfg.eval.ks}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = _device(s.device)
    inputs, labels = _sequences(dataset, s.max_len)
    if len(inputs) == 0:
        raise ConfigError(f"dataset {dataset.name}: no user has 2 or more training items")
    valid = evaluation_samples(dataset, s.max_len, "valid")
    model = SASRec(dataset.num_items, s.max_len, s.d_model, s.num_layers, s.num_heads, s.d_ff, s.dropout).to(device)
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
        val = evaluate_sasrec(model, valid, ks, s.eval_batch_size, device)
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
        with open(run_dir / "log.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
    summary = {"best_val": best_score, "best_epoch": best_epoch, "epochs": epoch,
               "train_sequences": int(len(inputs)), "train_minutes": round((time.perf_counter() - start) / 60, 2),
               "parameters": sum(p.numel() for p in model.parameters())}
    return model, summary


def run_sasrec(cfg: SASRecRunConfig, progress: bool = True) -> dict:
    """Load data -> train -> test; writes config.json, dataset.json, log.csv, sasrec.pt, metrics.json."""
    from sidrec.data.loaders import load_dataset

    if not cfg.run_dir:
        cfg.run_dir = f"runs/sasrec-{cfg.data.name}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")
    dataset = load_dataset(cfg.data)
    write_json(run_dir / "dataset.json", dataset.stats())
    if progress:
        print(f"dataset: {dataset.stats()}")
    model, summary = train_sasrec(cfg, dataset, run_dir, progress)
    torch.save(model.state_dict(), run_dir / "sasrec.pt")
    test = evaluation_samples(dataset, cfg.sasrec.max_len, "test")
    metrics = evaluate_sasrec(model, test, cfg.ks(), cfg.sasrec.eval_batch_size, _device(cfg.sasrec.device))
    metrics.update(summary, seed=cfg.seed, model="sasrec")
    write_json(run_dir / "metrics.json", metrics)
    return {"run_dir": str(run_dir), **metrics}


def cli(args: list[str]) -> None:
    """``sidrec sasrec [seeds=N|a,b,c] [key=value ...]``"""
    seeds, rest = None, []
    for key, value in parse_overrides(args):
        if key == "seeds":
            seeds = parse_seeds(value)
        else:
            rest.append(f"{key}={value}")
    cfg = build_sasrec_config(rest)
    if seeds is None:
        result = run_sasrec(cfg)
        print(_format(result, f"SASRec test metrics (seed {cfg.seed}, run {result['run_dir']})"))
        return
    base = Path(cfg.run_dir or f"runs/sasrec-{cfg.data.name}-seeds")
    results = []
    for seed in seeds:
        run_dir = base / f"seed-{seed}"
        if (run_dir / "metrics.json").exists():
            print(f"seed {seed}: finished run {run_dir} reused")
            results.append(json.loads((run_dir / "metrics.json").read_text()))
            continue
        results.append(run_sasrec(build_sasrec_config(rest + [f"seed={seed}", f"run_dir={run_dir}"])))
    summary = mean_std([{k: v for k, v in r.items() if "@" in k} for r in results])
    write_json(base / "summary.json", {"seeds": seeds, "mean_std": summary, "runs": results})
    lines = [f"SASRec test metrics over {len(results)} seeds (mean ± std), {base}"]
    lines += [f"{k:<10}  {m:.4f} ± {sd:.4f}" for k, (m, sd) in summary.items()]
    print("\n".join(lines))


def _format(metrics: dict, title: str) -> str:
    keys = [k for k in metrics if "@" in k]
    return "\n".join([title, "-" * 24] + [f"{k:<10}  {metrics[k]:.4f}" for k in keys])
