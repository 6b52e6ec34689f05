"""Validation curves of finished (or running) runs, from their ``logs/metrics.csv`` (``sidrec run``)
or ``log.csv`` (``sidrec sasrec``, one row per epoch), as one PNG.

    python benchmarks/val_curves.py runs/a runs/b ... --out docs/figures/curves.png [--labels A,B] [--metric recall@10]

Two panels: the metric against training minutes (validation time included, as the runs spent it)
and against epochs. Prints one line per run: best value, where it was reached, and the last value.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from sidrec.layout import SASREC_LOG, TRAIN_LOG


def read_sasrec_curve(path: Path, metric: str) -> list[dict[str, float]]:
    with open(path, newline="") as fh:
        return [{"step": float(row["epoch"]), "value": float(row[f"val_{metric}"]), "minutes": float(row["minutes"]),
                 "epochs": float(row["epoch"])} for row in csv.DictReader(fh) if row.get(f"val_{metric}")]


def read_curve(run_dir: Path, metric: str) -> list[dict[str, float]]:
    path = run_dir / TRAIN_LOG
    if not path.exists() and (run_dir / SASREC_LOG).exists():
        return read_sasrec_curve(run_dir / SASREC_LOG, metric)
    if not path.exists():
        raise SystemExit(f"{path}: no training log (was the run started with train.loggers=csv?)")
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get(f"val/{metric}"):
                rows.append({"step": float(row["step"]), "value": float(row[f"val/{metric}"]),
                             "minutes": float(row.get("val/train_minutes") or "nan"),
                             "epochs": float(row.get("val/epochs") or "nan")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--labels", default="", help="comma-separated, one per run (default: directory names)")
    parser.add_argument("--metric", default="recall@10")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    labels = args.labels.split(",") if args.labels else [r.name for r in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit(f"--labels has {len(labels)} names for {len(args.runs)} runs")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_time, by_epoch) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for run, label in zip(args.runs, labels):
        curve = read_curve(run, args.metric)
        if not curve:
            print(f"{label}: no validation yet")
            continue
        best = max(curve, key=lambda r: r["value"])
        print(f"{label}: best val {args.metric} {best['value']:.4f} at step {best['step']:.0f} "
              f"({best['minutes']:.1f} min, {best['epochs']:.2f} epochs); last {curve[-1]['value']:.4f} "
              f"at {curve[-1]['minutes']:.1f} min")
        by_time.plot([r["minutes"] for r in curve], [r["value"] for r in curve], marker=".", label=label)
        by_epoch.plot([r["epochs"] for r in curve], [r["value"] for r in curve], marker=".", label=label)
    by_time.set_xlabel("training minutes (2-core CPU, validation included)")
    by_epoch.set_xlabel("epochs (training samples seen / samples per epoch)")
    by_time.set_ylabel(f"validation {args.metric}")
    for ax in (by_time, by_epoch):
        ax.grid(alpha=0.3)
    by_time.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
