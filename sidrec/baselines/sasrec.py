"""``sidrec sasrec``: the SASRec baseline's run, under exactly the generative model's protocol.

    sidrec sasrec                              # bundled Beauty, CPU ok (a few minutes)
    sidrec sasrec seeds=3 sasrec.dropout=0.5   # several seeds -> summary.json with mean ± std

Settings: ``SASRecRunConfig`` in sidrec/config.py (``data.*``, ``eval.*``, ``sasrec.*``); network:
sidrec/models/sasrec.py; training: sidrec/train/sasrec.py. The run directory has a main run's layout
where SASRec has the artifact: config.json (resolved config), items.jsonl + sequences.npz +
dataset.json (the dataset), model.pt (``sidrec.model_file`` format), log.csv (per epoch loss and
validation metrics), metrics.json (test).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sidrec.config import SASRecRunConfig, build_sasrec_config, parse_overrides, parse_seeds
from sidrec.data.loaders import load_dataset
from sidrec.data.split import evaluation_samples
from sidrec.evaluate.metrics import mean_std
from sidrec.io import write_json
from sidrec.model_file import sasrec_meta, save_model_file
from sidrec.pipeline import format_metrics, save_config
from sidrec.run import load_metrics
from sidrec.train.sasrec import device_for, evaluate_sasrec, network_config, train_sasrec


def run_sasrec(cfg: SASRecRunConfig, progress: bool = True) -> dict:
    """Load data -> train -> test, writing the run directory as it goes."""
    if not cfg.run_dir:
        cfg.run_dir = f"runs/sasrec-{cfg.data.name}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir)
    dataset = load_dataset(cfg.data)
    dataset.save(run_dir)
    write_json(run_dir / "dataset.json", dataset.stats())
    if progress:
        print(f"dataset: {dataset.stats()}")
    model, summary = train_sasrec(cfg, dataset, run_dir, progress)
    save_model_file(run_dir / "model.pt", model, sasrec_meta(network_config(cfg.sasrec, dataset.num_items), summary))
    test = evaluation_samples(dataset, cfg.sasrec.max_len, "test")
    metrics = evaluate_sasrec(model, test, cfg.ks(), cfg.sasrec.eval_batch_size, device_for(cfg.sasrec.device))
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
        print(format_metrics(result, f"SASRec test metrics (seed {cfg.seed}, run {result['run_dir']})"))
        return
    base = Path(cfg.run_dir or f"runs/sasrec-{cfg.data.name}-seeds")
    results = []
    for seed in seeds:
        run_dir = base / f"seed-{seed}"
        if (run_dir / "metrics.json").exists():
            print(f"seed {seed}: finished run {run_dir} reused")
            results.append(load_metrics(run_dir))
            continue
        results.append(run_sasrec(build_sasrec_config(rest + [f"seed={seed}", f"run_dir={run_dir}"])))
    summary = mean_std([{k: v for k, v in r.items() if "@" in k} for r in results])
    write_json(base / "summary.json", {"seeds": seeds, "mean_std": summary, "runs": results})
    lines = [f"SASRec test metrics over {len(results)} seeds (mean ± std), {base}"]
    lines += [f"{k:<10}  {m:.4f} ± {sd:.4f}" for k, (m, sd) in summary.items()]
    print("\n".join(lines))
