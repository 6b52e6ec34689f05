"""Report of a study directory: mean ± std over seeds per row beside the paper's number, as
``report.md`` (table), ``report.csv`` and ``report.png`` (bars with error bars, paper values marked).
Reads only ``experiment.json`` and the finished runs, so ``sidrec report <dir>`` can rebuild it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from sidrec.errors import ArtifactError
from sidrec.evaluate.metrics import paired_difference
from sidrec.experiments.studies import METRICS, paper_value
from sidrec.io import atomic_path, write_text
from sidrec.layout import BASELINES, EXPERIMENT, METRICS as METRICS_FILE, REPORT, SUMMARY, TIMING, load_metrics

NAMES = {"recall@5": "Recall@5", "recall@10": "Recall@10", "ndcg@5": "NDCG@5", "ndcg@10": "NDCG@10"}


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def read_experiment(study_dir: Path) -> dict:
    """A study directory's experiment.json (what was asked), the one reader of it."""
    path = Path(study_dir) / EXPERIMENT
    if not path.exists():
        raise ArtifactError(f"{path}: not a study directory (no {EXPERIMENT}); run `sidrec experiment` first")
    return json.loads(path.read_text())


def collect(study_dir: Path) -> tuple[dict, list[dict]]:
    """experiment.json and, per row, the finished seeds' metrics (and decoding times where timed)."""
    exp = read_experiment(study_dir)
    rows = []
    for row in exp["rows"]:
        seeds, runs, times, per_seed = [], [], [], {}
        for seed in exp["seeds"]:
            run_dir = study_dir / row["name"] / f"seed-{seed}"
            if not (run_dir / METRICS_FILE).exists():
                continue
            seeds.append(seed)
            runs.append(load_metrics(run_dir))
            per_seed[seed] = runs[-1]
            if (run_dir / TIMING).exists():
                times.append(json.loads((run_dir / TIMING).read_text())["decode_ms_per_user"])
        result = {"name": row["name"], "label": row["label"], "paper_row": row["paper_row"], "seeds": seeds,
                  "per_seed": per_seed,
                  "paper": paper_value(exp["table"], exp["paper_dataset"], row["paper_row"])}
        for m in METRICS:
            result[m] = mean_and_std([r[m] for r in runs]) if runs else None
        result["decode_ms_per_user"] = mean_and_std(times) if times else None
        for key in ("steps", "minutes"):  # training steps; train + test wall time of a run
            values = [r[key] for r in runs if key in r]
            result[key] = mean_and_std(values) if values else None
        rows.append(result)
    default = exp.get("default_row") or exp["rows"][0]["name"]  # older experiment.json: the first row
    base = next(r for r in rows if r["name"] == default)
    for r in rows:
        r["default"] = r is base
        r["paired"] = {m: None if r is base else paired_difference({s: v[m] for s, v in r["per_seed"].items()},
                                                                   {s: v[m] for s, v in base["per_seed"].items()})
                       for m in METRICS}
    return exp, rows


BASELINE_LABELS = {"popularity": "Most popular (`sidrec popularity`)",
                   "lookup": "Text lookup, last item, history excluded (`sidrec lookup`)",
                   "sasrec": "SASRec (`sidrec sasrec`)"}


def collect_baselines(study_dir: Path) -> list[dict]:
    """The finished baseline runs under ``<study>/baselines/`` (``run_baselines``), in a fixed order:
    one run (popularity, lookup; SASRec run by hand) or, for SASRec, the seeds its ``summary.json``
    averages (``metric`` = the mean, ``metric_std``, ``seeds``)."""
    rows = []
    for name, label in BASELINE_LABELS.items():
        run_dir = study_dir / BASELINES / name
        if (run_dir / SUMMARY).exists():
            summary = json.loads((run_dir / SUMMARY).read_text())
            row = {"name": name, "label": label, "seeds": summary["seeds"]}
            for m, (mean, std) in summary["mean_std"].items():
                row[m], row[f"{m}_std"] = mean, std
            rows.append(row)
        elif (run_dir / METRICS_FILE).exists():
            rows.append({"name": name, "label": label, **load_metrics(run_dir)})
    return rows


def baseline_cell(b: dict, m: str) -> str:
    if m not in b:
        return "—"
    return f"{b[m]:.4f} ± {b[f'{m}_std']:.4f}" if f"{m}_std" in b else f"{b[m]:.4f}"


def stat_cell(stat) -> str:
    return "—" if stat is None else f"{stat[0]:.4f} ± {stat[1]:.4f}"


def paired_cell(p: dict | None) -> str:
    return "—" if p is None else f"{p['diff']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}]"


def markdown(exp: dict, rows: list[dict], baselines: list[dict] | None = None) -> str:
    timing = any(r["decode_ms_per_user"] for r in rows)
    head = ["row", "seeds"] + [h for m in METRICS for h in (NAMES[m], "paper")] + (["decode ms/user"] if timing else [])
    head += ["steps", "min/run"]
    lines = [f"# Study `{exp['study']}` on {exp['dataset']} (paper Table {exp['table']}: {exp['title']})", "",
             f"Budget `{exp['budget']}`, seeds {', '.join(map(str, exp['seeds']))}; mean ± std (sample std) over the "
             f"finished seeds; paper values are the paper's {exp['paper_dataset']} numbers "
             "(`sidrec/experiments/paper_tables.json`, averages of 5 seeds).", ""]
    if exp["budget"] != "paper":
        lines += [f"Reduced budget (`{exp['budget']}` preset): compare rows with each other, not with the paper's "
                  "absolute numbers.", ""]
    if exp.get("note"):
        lines += [exp["note"], ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], str(len(r["seeds"]))]
        for m in METRICS:
            cells += [stat_cell(r[m]), "—" if r["paper"] is None else f"{r['paper'][m]:.4f}"]
        if timing:
            t = r["decode_ms_per_user"]
            cells.append("—" if t is None else f"{t[0]:.2f} ± {t[1]:.2f}")
        cells += ["—" if r["steps"] is None else f"{r['steps'][0]:.0f}",
                  "—" if r["minutes"] is None else f"{r['minutes'][0]:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    paired = [r for r in rows if not r["default"]]
    if paired:
        base = next(r["label"] for r in rows if r["default"])
        lines += ["", f"Paired differences to the default row ({base}): the mean over seeds of (row − default) "
                  "on the same seed, with its 95% confidence interval (Student's t; needs ≥ 2 seeds both rows finished). "
                  "An interval that excludes 0 is a difference this budget resolves.", "",
                  "| row | pairs | " + " | ".join(f"Δ {NAMES[m]} [95% CI]" for m in METRICS) + " |",
                  "|---|---|" + "---|" * len(METRICS)]
        for r in paired:
            cells = [r["label"], str(max((p["pairs"] for p in r["paired"].values() if p), default=0))]
            cells += [paired_cell(r["paired"][m]) for m in METRICS]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "steps: training steps (mean over seeds); min/run: training + test wall time of one run, "
              "embedding and tokenization not included.", "",
              f"Overrides for every run: `{' '.join(exp['overrides'])}`. Per row: "
              + "; ".join(f"{r['name']}: `{' '.join(o['overrides'])}`" for r, o in zip(rows, exp["rows"])) + "."]
    if baselines:
        lines += ["", "Baselines on the same data, split and metrics. Popularity and the lookup do not train "
                  "(deterministic: no seeds); SASRec trains with its own defaults (early stopping on validation "
                  "NDCG@10, no time limit), mean ± std over the seeds shown:", "",
                  "| baseline | seeds | " + " | ".join(NAMES[m] for m in METRICS) + " |",
                  "|---|---|" + "---|" * len(METRICS)]
        lines += ["| " + " | ".join([b["label"], " ".join(map(str, b["seeds"])) if "seeds" in b else "—",
                                     *(baseline_cell(b, m) for m in METRICS)]) + " |" for b in baselines]
    return "\n".join(lines) + "\n"


PAIRED_FIELDS = ["default"] + [f"{m}_{s}" for m in METRICS for s in ("paired_diff", "ci95_low", "ci95_high")]


def paired_cells(row: dict) -> dict:
    """The PAIRED_FIELDS of a collected row (empty where it has no interval)."""
    out = {"default": int(row["default"])}
    for m in METRICS:
        p = row["paired"][m]
        out[f"{m}_paired_diff"], out[f"{m}_ci95_low"], out[f"{m}_ci95_high"] = \
            (p["diff"], p["low"], p["high"]) if p else ("", "", "")
    return out


def write_rows_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    """A CSV of ``rows`` (dicts keyed by ``fields``), written to a temp file and renamed."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


def write_csv(path: Path, rows: list[dict]) -> None:
    fields = ["row", "label", "paper_row", "seeds"]
    fields += [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "paper")]
    fields += ["decode_ms_per_user_mean", "decode_ms_per_user_std", "steps_mean", "minutes_mean", "minutes_std"]
    out_rows = []
    for r in rows:
        out = {"row": r["name"], "label": r["label"], "paper_row": r["paper_row"] or "",
               "seeds": " ".join(map(str, r["seeds"]))}
        for m in METRICS:
            out[f"{m}_mean"], out[f"{m}_std"] = r[m] if r[m] else ("", "")
            out[f"{m}_paper"] = r["paper"][m] if r["paper"] else ""
        t = r["decode_ms_per_user"]
        out["decode_ms_per_user_mean"], out["decode_ms_per_user_std"] = t if t else ("", "")
        out["steps_mean"] = r["steps"][0] if r["steps"] else ""
        out["minutes_mean"], out["minutes_std"] = r["minutes"] if r["minutes"] else ("", "")
        out_rows.append({**out, **paired_cells(r)})
    write_rows_csv(path, fields + PAIRED_FIELDS, out_rows)


def plot(path: Path, exp: dict, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(METRICS) + (["decode_ms_per_user"] if any(r["decode_ms_per_user"] for r in rows) else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 0.8, 3.6), squeeze=False)
    x = np.arange(len(rows))
    labels = [r["name"] for r in rows]
    for ax, m in zip(axes[0], panels):
        means = [r[m][0] if r[m] else np.nan for r in rows]
        stds = [r[m][1] if r[m] else 0.0 for r in rows]
        ax.bar(x, np.nan_to_num(means), yerr=stds, capsize=4, color="#4C72B0", label="ours (mean ± std)")
        if m in METRICS:
            paper = [r["paper"][m] if r["paper"] else np.nan for r in rows]
            if not np.all(np.isnan(paper)):
                ax.scatter(x, paper, marker="D", color="#C44E52", zorder=3, label="paper")
        ax.set_title(NAMES.get(m, "decode ms / user"))
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{exp['study']} on {exp['dataset']} (budget {exp['budget']}, paper Table {exp['table']})", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_report(study_dir: str | Path) -> dict[str, Path]:
    study_dir = Path(study_dir)
    exp, rows = collect(study_dir)
    paths = {kind: study_dir / name for kind, name in REPORT.items()}
    text = markdown(exp, rows, collect_baselines(study_dir))
    write_text(paths["markdown"], text)
    write_csv(paths["csv"], rows)
    plot(paths["plot"], exp, rows)
    print(text)
    return paths
