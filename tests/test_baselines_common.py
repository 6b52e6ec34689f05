"""sidrec/baselines/common.py: the baselines' run directory (atomic, refuses mixed runs) and splits."""

import json

import numpy as np
import pytest

import sidrec.io
from sidrec.baselines.common import full_history, split_metrics, start_run
from sidrec.baselines.popularity import run_popularity
from sidrec.config import build_lookup_config, build_popularity_config
from sidrec.data.loaders import load_dataset
from sidrec.errors import ArtifactError

TINY_DATA = ["data.format=p5", "data.name=tiny"]


def config(tiny_p5, run_dir, *extra):
    return build_popularity_config([*TINY_DATA, f"data.path={tiny_p5}", f"run_dir={run_dir}", *extra])


def test_metrics_json_is_written_atomically_and_last(tiny_p5, tmp_path, monkeypatch):
    run_dir = tmp_path / "pop"
    real_replace = sidrec.io.os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("metrics.json"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(sidrec.io.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        run_popularity(config(tiny_p5, run_dir), progress=False)
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["config.json", "dataset.json", "items.jsonl", "sequences.npz"]  # no temp file left
    monkeypatch.setattr(sidrec.io.os, "replace", real_replace)
    run_popularity(config(tiny_p5, run_dir), progress=False)  # the same run_dir finishes on a re-run
    assert json.loads((run_dir / "metrics.json").read_text())["model"] == "popularity"
    monkeypatch.setattr(sidrec.io.os, "replace", failing_replace)
    with pytest.raises(OSError):
        run_popularity(config(tiny_p5, run_dir, "eval.ks=3"), progress=False)
    assert not (run_dir / "metrics.json").exists()  # a failed re-run leaves no stale result beside its config


def test_a_run_directory_of_other_data_or_another_command_is_refused(tiny_p5, tmp_path):
    run_dir = tmp_path / "pop"
    run_popularity(config(tiny_p5, run_dir), progress=False)
    with pytest.raises(ArtifactError, match="data.name"):
        start_run(config(tiny_p5, run_dir, "data.name=other"), "popularity", progress=False)
    with pytest.raises(ArtifactError, match="another command"):
        start_run(build_lookup_config([*TINY_DATA, f"data.path={tiny_p5}", f"run_dir={run_dir}"]), "lookup",
                  progress=False)


def test_default_run_dir_names_the_baseline_and_the_dataset(tiny_p5, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = build_popularity_config([*TINY_DATA, f"data.path={tiny_p5}"])
    run_dir, _ = start_run(cfg, "popularity", progress=False)
    assert run_dir.parent.name == "runs" and run_dir.name.startswith("popularity-tiny-")


def test_split_metrics_uses_whole_histories_and_both_splits(tiny_p5):
    ds = load_dataset(config(tiny_p5, "").data)
    seen = {}

    def rank(samples, k):
        seen[len(seen)] = samples.history_lengths()
        return np.tile(samples.targets[:, None], (1, k))  # a perfect ranker

    metrics = split_metrics(ds, rank, [1, 5])
    assert metrics["recall@1"] == metrics["val_ndcg@5"] == 1.0 and metrics["users"] == ds.num_users
    lengths = ds.sequence_lengths()
    assert seen[0].tolist() == (lengths - 1).tolist() and seen[1].tolist() == (lengths - 2).tolist()
    assert full_history(ds) == lengths.max()
