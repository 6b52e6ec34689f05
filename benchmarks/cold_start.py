"""Cold-start quality: items the model never saw in training, added afterwards with ``add-items``.

1. A seeded share of the catalog's items (``--share``, uniform at random) is held out: removed from
   the item table and from every user's sequence (users left with fewer than 3 interactions are
   dropped from training). The rest is written as a P5 dataset and trained on like any run.
2. The held-out items are added to the finished run with ``sidrec.cold_start.add_items`` (embedded
   with the run's encoder, coded by the frozen tokenizer, trie extended; no retraining).
3. Evaluated on the test users of the FULL dataset whose target (last item) is a held-out item, with
   their full history (held-out items in it are known by then), over the whole catalog, against two
   baselines on the same users: popularity (training interaction counts; held-out items have none,
   so it cannot hit a cold target by construction) and the nearest neighbours of the last history
   item by cosine similarity of the text embeddings. The model is scored as is (``model``); with
   ``decode.cold_start_share=--reserve`` (``model_reserved``: that share of the 10 slots filled by
   the model's ranking of the added items only); and as a hybrid with the text lookup
   (``hybrid``: the same reserved slots filled by the added items nearest to the last history
   item by text, ``decode.cold_start_fill=lookup``).
   For context all are also reported on a sample of warm test users (target seen in training).

    python benchmarks/cold_start.py [--share 0.1] [--run-dir runs/cold-start] [key=value ...]

Overrides are those of ``sidrec run`` (default ``preset=cpu``, always with
``tokenizer.dedup_reserve=8`` unless given); the data they name is the full dataset (default:
bundled Beauty). Re-running reuses a finished training run. Writes
``<run-dir>/cold_start.json``; ends with the line ``cold_start_recall@10: <x>`` (the model on the
cold users).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def hold_out(dataset, share: float, seed: int) -> np.ndarray:
    """Boolean mask over the items: True = held out."""
    if not 0 < share < 1:
        raise SystemExit(f"--share {share}: expected a number between 0 and 1")
    rng = np.random.default_rng(seed)
    count = max(1, round(share * dataset.num_items))
    held = np.zeros(dataset.num_items, dtype=bool)
    held[rng.choice(dataset.num_items, size=count, replace=False)] = True
    return held


def write_training_data(dataset, held: np.ndarray, directory: Path) -> dict:
    """P5 files of the dataset without the held-out items; new_items.jsonl holds those."""
    directory.mkdir(parents=True, exist_ok=True)
    users = np.repeat(np.arange(dataset.num_users), np.diff(dataset.seq_offsets))
    keep = ~held[dataset.seq_items]
    kept_items, kept_users = dataset.seq_items[keep], users[keep]
    lengths = np.bincount(kept_users, minlength=dataset.num_users)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    item_ids = [item["item_id"] for item in dataset.items]
    written = 0
    with open(directory / "sequences.txt", "w") as fh:
        for u in np.flatnonzero(lengths >= 3):
            seq = kept_items[bounds[u]:bounds[u + 1]]
            fh.write(" ".join([dataset.user_ids[u], *(item_ids[i] for i in seq)]) + "\n")
            written += 1
    with open(directory / "items.jsonl", "w") as fh, open(directory / "new_items.jsonl", "w") as new:
        for i, item in enumerate(dataset.items):
            (new if held[i] else fh).write(json.dumps(item, ensure_ascii=False) + "\n")
    return {"held_out_items": int(held.sum()), "training_users": written,
            "dropped_users": int(dataset.num_users - written),
            "removed_interactions": int((~keep).sum())}


def nearest_neighbours(embeddings: np.ndarray, last_items: np.ndarray, k: int, batch: int = 1024) -> np.ndarray:
    """Top-k items by cosine similarity to each last item, the item itself excluded."""
    unit = torch.from_numpy(np.asarray(embeddings, dtype=np.float32))
    unit = torch.nn.functional.normalize(unit, dim=1)
    out = []
    for start in range(0, len(last_items), batch):
        rows = torch.from_numpy(last_items[start:start + batch])
        sims = unit[rows] @ unit.T
        sims[torch.arange(len(rows)), rows] = -float("inf")
        out.append(sims.topk(k, dim=1).indices.numpy())
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def generate(rec, histories: list[list[str]], k: int, batch: int) -> np.ndarray:
    out = []
    for s in range(0, len(histories), batch):
        for recs in rec.recommend_many(histories[s:s + batch], k=k):
            out.append([r.index for r in recs] + [-1] * (k - len(recs)))
    return np.array(out, dtype=np.int64).reshape(-1, k)


def evaluate_users(models: dict, full, users: np.ndarray, popular: np.ndarray, embeddings: np.ndarray,
                   first_new: int, batch: int) -> dict:
    """The models (name -> Recommender), popularity and text-NN on ``users`` of ``full``; item
    indices are the run's, added items are those from ``first_new`` on."""
    from sidrec.evaluate.metrics import compute_metrics

    rec = next(iter(models.values()))
    h, k = rec.cfg.model.max_history, 10
    ids = [item["item_id"] for item in full.items]
    run_index = np.array([rec.index_of(i) for i in ids])  # full dataset index -> run catalog index
    histories, targets, last = [], [], []
    for u in users:
        seq = full.sequence(u)
        histories.append([ids[i] for i in seq[:-1][-h:]])
        targets.append(run_index[seq[-1]])
        last.append(run_index[seq[-2]])
    targets, last = np.array(targets), np.array(last)
    result, ranked = {"users": len(users)}, {}
    for name, model in models.items():
        start = time.perf_counter()
        ranked[name] = generate(model, histories, k, batch)
        result[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
    ranked.update(popularity=np.tile(popular[:k], (len(users), 1)), text_nn=nearest_neighbours(embeddings, last, k))
    for name, items in ranked.items():
        metrics = compute_metrics(items, targets, ks=[5, 10])
        valid = items >= 0
        metrics["new_item_share_of_top10"] = float((items[valid] >= first_new).mean()) if valid.any() else 0.0
        result[name] = metrics
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--share", type=float, default=0.1, help="share of items held out (default 0.1)")
    parser.add_argument("--run-dir", default="runs/cold-start")
    parser.add_argument("--seed", type=int, default=0, help="seeds the hold-out draw and the run")
    parser.add_argument("--warm-users", type=int, default=2000, help="warm test users sampled for context (0 = none)")
    parser.add_argument("--batch", type=int, default=256, help="users per beam search")
    parser.add_argument("--reserve", type=float, default=0.2,
                        help="decode.cold_start_share of the 'model_reserved' and 'hybrid' rows (0 = no such rows)")
    parser.add_argument("overrides", nargs="*", help="sidrec run overrides (default preset=cpu)")
    args = parser.parse_args(argv)

    from sidrec.cold_start import add_items, read_items_file
    from sidrec.config import build_config
    from sidrec.data.loaders import load_dataset
    from sidrec.layout import METRICS, load_metrics
    from sidrec.pipeline import run
    from sidrec.recommender import Recommender
    from sidrec.run import RunDir

    # Spare de-dup digit values so that held-out items colliding with full SID groups still fit.
    overrides = ["tokenizer.dedup_reserve=8", *(args.overrides or ["preset=cpu"])]
    run_dir = Path(args.run_dir)
    full = load_dataset(build_config(overrides).data)
    held = hold_out(full, args.share, args.seed)
    data_dir = run_dir / "data"
    split = write_training_data(full, held, data_dir)
    print(f"held out {split['held_out_items']} of {full.num_items} items; {split}", flush=True)

    cfg = build_config(overrides + ["data.format=p5", f"data.path={data_dir}", f"data.name={full.name}-cold",
                                    f"seed={args.seed}", f"run_dir={run_dir / 'run'}"])
    if not (run_dir / "run" / METRICS).exists():
        run(cfg)
    rec = Recommender.load(run_dir / "run")
    new_items = read_items_file(data_dir / "new_items.jsonl")
    if new_items[0]["item_id"] not in rec.item_index:  # not added by an earlier invocation
        start = time.perf_counter()
        add_items(run_dir / "run", new_items)
        print(f"added {len(new_items)} items in {time.perf_counter() - start:.1f} s", flush=True)
        rec = Recommender.load(run_dir / "run")
    popular = rec.ranker.fallback_items  # by training interactions, as for empty histories
    embeddings = np.array(RunDir(run_dir / "run").embeddings)  # a writable copy of the memory map

    last = full.seq_items[full.seq_offsets[1:] - 1]
    cold_users = np.flatnonzero(held[last])
    warm_users = np.flatnonzero(~held[last])
    rng = np.random.default_rng(args.seed)
    if 0 < args.warm_users < len(warm_users):
        warm_users = np.sort(rng.choice(warm_users, size=args.warm_users, replace=False))
    torch.manual_seed(args.seed)
    models = {"model": rec}
    if args.reserve > 0:
        share = f"decode.cold_start_share={args.reserve}"
        models["model_reserved"] = Recommender.load(run_dir / "run", overrides=[share])
        models["hybrid"] = Recommender.load(run_dir / "run", overrides=[share, "decode.cold_start_fill=lookup"])
    result = {"share": args.share, "seed": args.seed, "reserve": args.reserve, **split,
              "catalog_items": rec.dataset.num_items,
              "run_metrics": load_metrics(run_dir / "run"),
              "cold": evaluate_users(models, full, cold_users, popular, embeddings, rec.num_trained_items, args.batch)}
    if args.warm_users:
        result["warm"] = evaluate_users(models, full, warm_users, popular, embeddings, rec.num_trained_items,
                                        args.batch)
    (run_dir / "cold_start.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{'users':<6} {'method':<16} {'R@5':>7} {'R@10':>7} {'N@5':>7} {'N@10':>7}  new items in top-10")
    for group in ("cold", "warm"):
        for method in [*models, "popularity", "text_nn"]:
            if group in result:
                m = result[group][method]
                print(f"{group:<6} {method:<16} {m['recall@5']:7.4f} {m['recall@10']:7.4f} {m['ndcg@5']:7.4f} "
                      f"{m['ndcg@10']:7.4f}  {m['new_item_share_of_top10']:.1%}")
    print(f"({result['cold']['users']} cold users, {result.get('warm', {}).get('users', 0)} warm users)")
    print(f"cold_start_recall@10: {result['cold']['model']['recall@10']:.4f}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
