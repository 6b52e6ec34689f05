"""``sidrec popularity`` (sidrec/baselines/popularity.py): metrics recomputed by hand, the run
directory, errors."""

import json
import math
from collections import Counter

import pytest

from sidrec.baselines.popularity import popular_items, run_popularity
from sidrec.cli import main
from sidrec.config import build_popularity_config
from sidrec.data.loaders import load_dataset

TINY_DATA = ["data.format=p5", "data.name=tiny"]


def by_hand(ranking: list[int], targets: list[int], k: int) -> tuple[float, float]:
    """Recall@k and NDCG@k of one ranked list shared by all users, by the textbook definitions."""
    ranks = [ranking[:k].index(t) for t in targets if t in ranking[:k]]
    return len(ranks) / len(targets), sum(1 / math.log2(r + 2) for r in ranks) / len(targets)


def test_metrics_match_training_counts_ranked_by_hand(tiny_p5, tmp_path, capsys):
    run_dir = tmp_path / "pop"
    assert main(["popularity", *TINY_DATA, f"data.path={tiny_p5}", f"run_dir={run_dir}", "eval.ks=3,10"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ds = load_dataset(build_popularity_config([*TINY_DATA, f"data.path={tiny_p5}"]).data)
    seqs = [ds.sequence(u).tolist() for u in range(ds.num_users)]
    counts = Counter(i for s in seqs for i in s[:-2])  # training part only
    ranking = sorted(range(ds.num_items), key=lambda i: (-counts[i], i))
    assert popular_items(ds).tolist() == ranking
    for prefix, targets in (("", [s[-1] for s in seqs]), ("val_", [s[-2] for s in seqs])):
        for k in (3, 10):
            recall, ndcg = by_hand(ranking, targets, k)
            assert metrics[f"{prefix}recall@{k}"] == pytest.approx(recall)
            assert metrics[f"{prefix}ndcg@{k}"] == pytest.approx(ndcg)
    assert metrics["model"] == "popularity" and metrics["users"] == ds.num_users
    out = capsys.readouterr().out
    assert "Popularity test metrics" in out and "Popularity validation metrics" in out
    for name in ["config.json", "items.jsonl", "sequences.npz", "dataset.json"]:
        assert (run_dir / name).exists(), name
    cfg = build_popularity_config([*TINY_DATA, f"data.path={tiny_p5}", f"run_dir={run_dir}", "eval.ks=3,10"])
    assert json.loads((run_dir / "config.json").read_text()) == cfg.to_dict()


def test_a_catalog_smaller_than_k_pads_the_list(tiny_p5, tmp_path):
    result = run_popularity(build_popularity_config([*TINY_DATA, f"data.path={tiny_p5}", "eval.ks=50",
                                                     f"run_dir={tmp_path / 'pop'}"]), progress=False)
    assert result["recall@50"] == 1.0  # 40 items: every target is in the padded list


def test_eval_test_false_reports_validation_only(tiny_p5, tmp_path):
    result = run_popularity(build_popularity_config([*TINY_DATA, f"data.path={tiny_p5}", "eval.test=false",
                                                     f"run_dir={tmp_path / 'pop'}"]), progress=False)
    assert "recall@10" not in result and "val_recall@10" in result


@pytest.mark.parametrize("args, fragment", [
    (["popularity.top=3"], "unknown config key"),
    (["seeds=3"], "no seed"),
    (["seed=3"], "unknown config key"),
    (["preset=tiny"], "unknown preset"),
    (["eval.ks=0"], "eval.ks"),
])
def test_bad_settings_are_one_line_errors(capsys, args, fragment):
    assert main(["popularity", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1


def test_help_lists_the_keys(capsys):
    assert main(["popularity", "--help"]) == 0
    out = capsys.readouterr().out
    assert "data.path=" in out and "eval.ks=5,10" in out and "sasrec." not in out
