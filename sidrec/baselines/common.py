"""What every baseline command shares: its run directory, its two evaluation splits, its command
line (one run, or ``seeds=`` for the baselines that have a seed).

A baseline's run directory has a main run's layout where the baseline has the artifact:
config.json (the resolved config), items.jsonl + sequences.npz + dataset.json (the dataset, as
``sidrec.pipeline.prepare`` writes them) and, last, metrics.json. Every file is written atomically
(``sidrec.io``), so a run directory with metrics.json is a finished one.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

from sidrec.config import parse_overrides, parse_seeds
from sidrec.data.dataset import Dataset
from sidrec.data.split import Samples, evaluation_samples
from sidrec.errors import ArtifactError, ConfigError
from sidrec.evaluate.metrics import compute_metrics, mean_std
from sidrec.io import write_json
from sidrec.pipeline import check_reusable, format_metrics, make_run_dir, new_run_dir, prepare, save_config
from sidrec.layout import CONFIG, METRICS, SUMMARY, load_metrics


def start_run(cfg, kind: str, progress: bool = True) -> tuple[Path, Dataset]:
    """The run directory (``run_dir``, default ``runs/<kind>-<dataset>-<timestamp>``) with the
    config and the dataset written (a dataset already there is reused) and any earlier metrics.json
    removed; a directory of another command, or made with other data (or encoder) settings, refuses."""
    if not cfg.run_dir:
        cfg.run_dir = default_run_dir(kind, cfg)
    run_dir = Path(cfg.run_dir)
    make_run_dir(run_dir)
    if (run_dir / CONFIG).exists() and set(json.loads((run_dir / CONFIG).read_text())) != set(cfg.to_dict()):
        raise ArtifactError(f"{run_dir}: holds a run of another command (its {CONFIG} has other sections); "
                            "use a new run_dir")
    check_reusable(cfg, run_dir)
    (run_dir / METRICS).unlink(missing_ok=True)  # the run is redone: no stale result outlives a failure
    save_config(cfg, run_dir)
    dataset = prepare(cfg, run_dir)
    if progress:
        print(f"dataset: {dataset.stats()}")
    return run_dir, dataset


def default_run_dir(kind: str, cfg) -> str:
    return f"runs/{kind}-{cfg.data.name}-{datetime.now():%Y%m%d-%H%M%S}"


def finish_run(run_dir: Path, metrics: dict) -> dict:
    """metrics.json, written last; returns ``{"run_dir": ..., **metrics}``."""
    write_json(run_dir / METRICS, metrics)
    return {"run_dir": str(run_dir), **metrics}


def full_history(dataset: Dataset) -> int:
    """A history length that holds every user's whole history."""
    lengths = dataset.sequence_lengths()
    return max(int(lengths.max()) if len(lengths) else 1, 1)


def split_metrics(dataset: Dataset, rank: Callable[[Samples, int], np.ndarray], ks: list[int],
                  test: bool = True, max_history: int | None = None) -> dict:
    """Test metrics (``recall@10`` ...; only with ``test``, i.e. ``eval.test``) and validation
    metrics (``val_recall@10`` ...) of ``rank`` (samples, k -> (U, k) ranked items) on the
    leave-last-out split, whole histories unless ``max_history``."""
    h = full_history(dataset) if max_history is None else max_history
    metrics = {}
    for stage, prefix in ([("test", "")] if test else []) + [("valid", "val_")]:
        samples = evaluation_samples(dataset, h, stage)
        values = compute_metrics(rank(samples, max(ks)), samples.targets, ks=ks)
        metrics.update({f"{prefix}{k}": v for k, v in values.items()})
    metrics["users"] = int(dataset.num_users)
    return metrics


def report(result: dict, title: str, label: str = "") -> str:
    """The test metrics' table, then the validation metrics' if the result has them."""
    test = {k: v for k, v in result.items() if "@" in k and not k.startswith("val_")}
    valid = {k[4:]: v for k, v in result.items() if k.startswith("val_") and "@" in k}
    tables = [format_metrics(test, f"{title} test metrics ({label}run {result['run_dir']})")] if test else []
    if valid:
        tables.append(format_metrics(valid, f"{title} validation metrics" + ("" if test else f" (run {result['run_dir']})")))
    return "\n".join(tables)


def run_seeds(title: str, build: Callable[[list[str]], object], run: Callable[[object], dict],
              overrides: list[str], seeds: list[int], base: Path) -> dict:
    """One run per seed in ``base/seed-<s>`` (finished ones reused), then ``base/summary.json``
    with the mean ± std of each metric; prints the summary."""
    results = []
    for seed in seeds:
        run_dir = base / f"seed-{seed}"
        if (run_dir / METRICS).exists():
            print(f"seed {seed}: finished run {run_dir} reused")
            results.append(load_metrics(run_dir))
            continue
        results.append(run(build(overrides + [f"seed={seed}", f"run_dir={run_dir}"])))
    summary = mean_std([{k: v for k, v in r.items() if "@" in k} for r in results])
    write_json(base / SUMMARY, {"seeds": seeds, "mean_std": summary, "runs": results})
    lines = [f"{title} test metrics over {len(results)} seeds (mean ± std), {base}"]
    lines += [f"{k:<10}  {m:.4f} ± {sd:.4f}" for k, (m, sd) in summary.items()]
    print("\n".join(lines))
    return summary


def baseline_cli(args: list[str], kind: str, title: str, build: Callable[[list[str]], object],
                 run: Callable[[object], dict], seeded: bool = False) -> None:
    """``sidrec <kind> [key=value ...]``, plus ``seeds=N|a,b,c`` for a ``seeded`` baseline."""
    seeds, rest = None, []
    for key, value in parse_overrides(args):
        if key == "seeds":
            if not seeded:
                raise ConfigError(f"sidrec {kind} has no seed (its result is deterministic): drop seeds={value}")
            seeds = parse_seeds(value)
        else:
            rest.append(f"{key}={value}")
    cfg = build(rest)
    if seeds is None:
        cfg.run_dir = cfg.run_dir or default_run_dir(kind, cfg)
        with new_run_dir(Path(cfg.run_dir)):  # a failed run leaves no new directory behind
            result = run(cfg)
        print(report(result, title, f"seed {cfg.seed}, " if seeded else ""))
        return
    run_seeds(title, build, run, rest, seeds, Path(cfg.run_dir or f"runs/{kind}-{cfg.data.name}-seeds"))
