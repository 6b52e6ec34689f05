"""The cold-start study, ``sidrec experiment cold_start``: how well items added after training are
recommended. Per seed (the seed draws the hold-out and seeds the run):

1. a share of the catalog's items (``share=``, default 0.1, uniform at random) is held out: removed
   from the item table and from every user's sequence (users left with fewer than 3 interactions
   are dropped from training); the rest is written as a P5 dataset and trained on like any run;
2. the held-out items are added to the finished run with ``sidrec.cold_start.add_items`` (embedded
   with the run's encoder, coded by the frozen tokenizer; no retraining);
3. every row of the study ranks the whole catalog for the test users of the full dataset whose
   target (last item) is a held-out item ("cold"), with their full history, and, for context, for a
   sample of the others ("warm", ``warm_users=``): the model as is, with ``reserve=`` of the slots
   kept for added items (``decode.cold_start_share``), the text lookup, the hybrid of the two
   (``decode.cold_start_fill=lookup``) and popularity.

    runs/experiments/cold_start-<dataset>/experiment.json
    runs/experiments/cold_start-<dataset>/seed-<s>/data/              training data (P5) + new_items.jsonl
    runs/experiments/cold_start-<dataset>/seed-<s>/run/               an ordinary run directory, items added
    runs/experiments/cold_start-<dataset>/seed-<s>/cold_start.json    per user group and row: metrics
    runs/experiments/cold_start-<dataset>/report.{md,csv}             mean ± std over the seeds

Resumable: a seed with its results is skipped; a trained run is not trained again, nor are its
items added twice. A seed that crashes writes ``error.log`` in its folder and the study goes on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from sidrec.data.dataset import MIN_SEQUENCE_LENGTH, Dataset
from sidrec.evaluate.metrics import compute_metrics, paired_difference
from sidrec.experiments.report import (NAMES, PAIRED_FIELDS, mean_and_std, paired_cell, paired_cells, read_experiment,
                                      stat_cell, write_rows_csv)
from sidrec.experiments.runner import Experiment, failures_recorded
from sidrec.experiments.studies import METRICS
from sidrec.io import write_json, write_text
from sidrec.layout import (COLD_START_DATA, COLD_START_RESULTS, COLD_START_RUN, EXPERIMENT, METRICS as METRICS_FILE,
                           NEW_ITEMS, REPORT, load_metrics)

GROUPS = ("cold", "warm")  # users whose target is an added item; a sample of the others
MODEL_FREE_ROWS = ("lookup", "popularity")  # rows that rank without the trained model
K = 10  # list length; metrics at 5 and 10
NEW_ITEM_SHARE = "new_item_share@10"  # share of the recommended items that are added items
BATCH = 256  # users per recommend_many call


# --- the data of a seed -------------------------------------------------------------------------
def hold_out(dataset: Dataset, share: float, seed: int) -> np.ndarray:
    """Boolean mask over the items, True = held out: ``share`` of them (at least one), drawn by ``seed``."""
    rng = np.random.default_rng(seed)
    held = np.zeros(dataset.num_items, dtype=bool)
    held[rng.choice(dataset.num_items, size=max(1, round(share * dataset.num_items)), replace=False)] = True
    return held


def write_training_data(dataset: Dataset, held: np.ndarray, directory: Path) -> dict:
    """The dataset without the held-out items as P5 files in ``directory``, the held-out items in
    ``NEW_ITEMS``. Returns counts."""
    from sidrec.data.loaders import write_p5

    item_ids = [item["item_id"] for item in dataset.items]
    user_ids, sequences, removed = [], [], 0
    for user in range(dataset.num_users):
        sequence = dataset.sequence(user)
        kept = sequence[~held[sequence]]
        removed += len(sequence) - len(kept)
        if len(kept) >= MIN_SEQUENCE_LENGTH:
            user_ids.append(dataset.user_ids[user])
            sequences.append([item_ids[i] for i in kept])
    write_p5(directory, user_ids, sequences, [item for item, out in zip(dataset.items, held) if not out])
    write_text(directory / NEW_ITEMS, "".join(json.dumps(item, ensure_ascii=False) + "\n"
                                              for item, out in zip(dataset.items, held) if out))
    return {"held_out_items": int(held.sum()), "training_users": len(user_ids),
            "dropped_users": dataset.num_users - len(user_ids), "removed_interactions": removed}


def seed_folder(exp: Experiment, seed: int) -> Path:
    return exp.directory / f"seed-{seed}"


def training_overrides(exp: Experiment, seed: int) -> list[str]:
    """The training run's config: the study's overrides on the seed's reduced dataset."""
    folder = seed_folder(exp, seed)
    return [*exp.overrides, "data.format=p5", f"data.path={folder / COLD_START_DATA}",
            f"data.name={exp.dataset}-cold", f"seed={seed}", f"run_dir={folder / COLD_START_RUN}"]


def test_users(dataset: Dataset, held: np.ndarray, warm_users: int, seed: int) -> dict[str, np.ndarray]:
    """``{"cold": users whose target is held out, "warm": a seeded sample of up to warm_users others}``."""
    last = dataset.seq_items[dataset.seq_offsets[1:] - 1]
    warm = np.flatnonzero(~held[last])
    if warm_users < len(warm):
        warm = np.sort(np.random.default_rng(seed).choice(warm, size=warm_users, replace=False))
    return {"cold": np.flatnonzero(held[last]), "warm": warm}


# --- ranking and scoring ------------------------------------------------------------------------
def _recommend(recommender, histories: list[list[str]]) -> np.ndarray:
    """(U, K) run-catalog indices from ``Recommender.recommend_many``, -1 where a list is shorter."""
    ranked = np.full((len(histories), K), -1, dtype=np.int64)
    for start in range(0, len(histories), BATCH):
        for r, recs in enumerate(recommender.recommend_many(histories[start:start + BATCH], k=K)):
            ranked[start + r, :len(recs)] = [rec.index for rec in recs]
    return ranked


def score_rows(exp: Experiment, run_dir: Path, full: Dataset, users: dict[str, np.ndarray]) -> dict:
    """Per user group: the number of users and, per row of the study, its metrics on them."""
    from sidrec.evaluate.lookup import text_lookup_rank
    from sidrec.recommender import Recommender

    recommenders = {row.name: Recommender.load(run_dir, overrides=row.overrides)
                    for row in exp.study.rows if row.name not in MODEL_FREE_ROWS}
    plain = recommenders.get("model") or next(iter(recommenders.values()))
    first_added = plain.num_trained_items
    to_run = np.array([plain.index_of(item["item_id"]) for item in full.items])  # full index -> run index
    embeddings = np.asarray(plain.unit_embeddings())
    out = {}
    for group, members in users.items():
        out[group] = {"users": len(members), "rows": {}}
        if not len(members):
            continue
        sequences = [full.sequence(u) for u in members]
        histories = [[full.items[i]["item_id"] for i in seq[:-1]] for seq in sequences]
        targets = np.array([to_run[seq[-1]] for seq in sequences])
        padded = np.full((len(sequences), max(len(s) - 1 for s in sequences)), -1, dtype=np.int64)
        for r, seq in enumerate(sequences):
            padded[r, padded.shape[1] - len(seq) + 1:] = to_run[seq[:-1]]
        for row in exp.study.rows:
            if row.name == "lookup":
                ranked = text_lookup_rank(embeddings, padded, K, exclude_history=True)
            elif row.name == "popularity":
                ranked = np.tile(plain.ranker.fallback_items[:K], (len(members), 1))
            else:
                ranked = _recommend(recommenders[row.name], histories)
            metrics = compute_metrics(ranked, targets, ks=(5, K))
            shown = ranked >= 0
            metrics[NEW_ITEM_SHARE] = float((ranked[shown] >= first_added).mean()) if shown.any() else 0.0
            out[group]["rows"][row.name] = metrics
    return out


def run_seed(exp: Experiment, full: Dataset, seed: int, where: str) -> dict:
    """Hold out, train (unless trained), add the held-out items (unless added), score every row."""
    from sidrec.cold_start import add_items, current_generation, read_items_file
    from sidrec.config import build_config
    from sidrec.pipeline import run

    folder = seed_folder(exp, seed)
    data, run_dir = folder / COLD_START_DATA, folder / COLD_START_RUN
    held = hold_out(full, exp.hold_out_share, seed)
    split = write_training_data(full, held, data)
    print(f"{where}: held out {split['held_out_items']} of {full.num_items} items, {split['training_users']} "
          f"users train ({split['dropped_users']} left with too few items)", flush=True)
    if not (run_dir / METRICS_FILE).exists():
        start = time.perf_counter()
        run(build_config(training_overrides(exp, seed)))
        print(f"{where}: trained in {time.perf_counter() - start:.0f} s", flush=True)
    if current_generation(run_dir) == 0:
        add_items(run_dir, read_items_file(data / NEW_ITEMS))
    users = test_users(full, held, exp.warm_users, seed)
    return {"seed": seed, "hold_out_share": exp.hold_out_share, **split, "catalog_items": full.num_items,
            "run_metrics": load_metrics(run_dir), "groups": score_rows(exp, run_dir, full, users)}


def run_cold_start_study(exp: Experiment) -> dict:
    """Every seed without results, then the report. Returns counts and report paths."""
    from sidrec.config import build_config
    from sidrec.data.loaders import load_dataset

    exp.directory.mkdir(parents=True, exist_ok=True)
    write_json(exp.directory / EXPERIMENT, exp.describe())
    counts = {"trained": 0, "reused": 0, "skipped": 0, "failed": 0, "timed": 0}
    full = None
    for i, seed in enumerate(exp.seeds):
        where = f"[{i + 1}/{len(exp.seeds)}] cold_start seed={seed}"
        folder = seed_folder(exp, seed)
        if (folder / COLD_START_RESULTS).exists():
            counts["skipped"] += 1
            print(f"{where}: finished, skipped ({folder})")
            continue
        trained_before = (folder / COLD_START_RUN / METRICS_FILE).exists()
        with failures_recorded(exp, folder, where, counts):
            if full is None:
                full = load_dataset(build_config(exp.overrides).data)
            write_json(folder / COLD_START_RESULTS, run_seed(exp, full, seed, where))
            counts["trained"] += not trained_before
    paths = write_cold_start_report(exp.directory)
    return {**counts, **{k: str(v) for k, v in paths.items()}}


# --- the report ---------------------------------------------------------------------------------
def collect_cold_start(study_dir: Path) -> tuple[dict, list[dict], list[dict]]:
    """experiment.json, the finished seeds' results, and per (group, row) the statistics over them
    with the paired difference to the default row (the model as is)."""
    exp = read_experiment(study_dir)
    seeds = [json.loads((study_dir / f"seed-{s}" / COLD_START_RESULTS).read_text()) for s in exp["seeds"]
             if (study_dir / f"seed-{s}" / COLD_START_RESULTS).exists()]
    rows = []
    for group in GROUPS:
        default = {r["seed"]: r["groups"][group]["rows"].get(exp["default_row"]) for r in seeds}
        for row in exp["rows"]:
            per_seed = {r["seed"]: r["groups"][group]["rows"][row["name"]] for r in seeds
                        if row["name"] in r["groups"][group]["rows"]}
            users = [r["groups"][group]["users"] for r in seeds if r["seed"] in per_seed]
            result = {"group": group, "name": row["name"], "label": row["label"], "seeds": sorted(per_seed),
                      "users": mean_and_std(users) if users else None, "default": row["name"] == exp["default_row"]}
            for m in (*METRICS, NEW_ITEM_SHARE):
                result[m] = mean_and_std([v[m] for v in per_seed.values()]) if per_seed else None
            result["paired"] = {m: None if result["default"] else paired_difference(
                {s: v[m] for s, v in per_seed.items()}, {s: v[m] for s, v in default.items() if v})
                for m in METRICS}
            rows.append(result)
    return exp, seeds, rows


def cold_start_markdown(exp: dict, seeds: list[dict], rows: list[dict]) -> str:
    share, warm = exp["hold_out_share"], exp["warm_users"]
    lines = [f"# Study `cold_start` on {exp['dataset']} ({exp['title']})", "",
             f"Budget `{exp['budget']}` (`{exp['overrides'][0]}`), seeds {', '.join(map(str, exp['seeds']))} "
             f"({len(seeds)} finished). Per seed, {share:.0%} of the items are held out of training (drawn by the "
             "seed), the model trains on the rest, and the held-out items are added with add-items (no "
             "retraining). **cold**: test users whose target is an added item; **warm**: up to "
             f"{warm} of the others, sampled, for context. Mean ± sample std over the finished seeds; full "
             "histories, whole catalog.", ""]
    if seeds:
        held = mean_and_std([r["held_out_items"] for r in seeds])
        own = mean_and_std([r["run_metrics"]["recall@10"] for r in seeds])
        lines += [f"Held out {held[0]:.0f} of {seeds[0]['catalog_items']} items per seed. The training run's "
                  f"own test Recall@10 (its catalog without them): {own[0]:.4f} ± {own[1]:.4f}.", ""]
    if exp.get("note"):
        lines += [exp["note"], ""]
    head = ["users", "row", "seeds", "users/seed", *(NAMES[m] for m in METRICS), "added items in the top 10"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        users = "—" if r["users"] is None else f"{r['users'][0]:.0f}"
        share_cell = "—" if r[NEW_ITEM_SHARE] is None else f"{r[NEW_ITEM_SHARE][0]:.1%}"
        lines.append("| " + " | ".join([r["group"], r["label"], str(len(r["seeds"])), users,
                                        *(stat_cell(r[m]) for m in METRICS), share_cell]) + " |")
    base = next(r["label"] for r in rows if r["default"])
    lines += ["", f"Paired differences to the default row ({base}) on the same seed's users, with the 95% "
              "confidence interval (Student's t; needs ≥ 2 seeds):", "",
              "| users | row | Δ Recall@10 [95% CI] | Δ NDCG@10 [95% CI] |", "|---|---|---|---|"]
    lines += [f"| {r['group']} | {r['label']} | {paired_cell(r['paired']['recall@10'])} | "
              f"{paired_cell(r['paired']['ndcg@10'])} |" for r in rows if not r["default"]]
    lines += ["", f"Overrides of the training runs: `{' '.join(exp['overrides'])}` (`data.*` names the full "
              "dataset; each seed's run trains on its copy without the held-out items, `seed-<s>/data/`). Rows: "
              + "; ".join(f"{r['name']}: `{' '.join(r['overrides'])}`" for r in exp["rows"] if r["overrides"]) + "."]
    return "\n".join(lines) + "\n"


def write_cold_start_csv(path: Path, rows: list[dict]) -> None:
    fields = ["group", "row", "label", "seeds", "users_mean"]
    fields += [f"{m}_{s}" for m in (*METRICS, NEW_ITEM_SHARE) for s in ("mean", "std")]
    out_rows = []
    for r in rows:
        out = {"group": r["group"], "row": r["name"], "label": r["label"],
               "seeds": " ".join(map(str, r["seeds"])), "users_mean": r["users"][0] if r["users"] else ""}
        for m in (*METRICS, NEW_ITEM_SHARE):
            out[f"{m}_mean"], out[f"{m}_std"] = r[m] if r[m] else ("", "")
        out_rows.append({**out, **paired_cells(r)})
    write_rows_csv(path, fields + PAIRED_FIELDS, out_rows)


def write_cold_start_report(study_dir: str | Path) -> dict[str, Path]:
    """report.md and report.csv of a cold-start study directory, from its finished seeds."""
    study_dir = Path(study_dir)
    exp, seeds, rows = collect_cold_start(study_dir)
    paths = {kind: study_dir / REPORT[kind] for kind in ("markdown", "csv")}
    text = cold_start_markdown(exp, seeds, rows)
    write_text(paths["markdown"], text)
    write_cold_start_csv(paths["csv"], rows)
    print(text)
    return paths
