"""``sidrec experiment cold_start``: hold items out, train, add them, score the rows on the users
whose target is an added item; resumable. One tiny study (2 seeds) is shared by the tests."""

import csv
import json

import numpy as np
import pytest

from conftest import write_tiny_p5
from sidrec.cli import main
from sidrec.cold_start import current_generation
from sidrec.data.loaders import load_p5
from sidrec.experiments.cold_start_study import hold_out, write_training_data
from sidrec.experiments.runner import parse_experiment_args, run_experiment

ROWS = ["model", "reserved", "lookup", "hybrid", "popularity"]


def _args(data, root, *extra):
    return ["cold_start", "dataset=tiny", "budget=tiny", "seeds=2", f"root={root}", "data.format=p5",
            f"data.path={data}", "train.max_steps=6", "train.val_every=3", "share=0.25", "warm_users=10", *extra]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    import os

    import torch

    root = tmp_path_factory.mktemp("cold")
    data = write_tiny_p5(root / "data")
    old_cache, old_threads = os.environ.get("SIDREC_CACHE_DIR"), torch.get_num_threads()
    os.environ["SIDREC_CACHE_DIR"] = str(root / "cache")
    torch.set_num_threads(1)
    try:
        assert main(["experiment", *_args(data, root / "runs")]) == 0
    finally:
        torch.set_num_threads(old_threads)
        if old_cache is None:
            os.environ.pop("SIDREC_CACHE_DIR", None)
        else:
            os.environ["SIDREC_CACHE_DIR"] = old_cache
    return {"data": data, "root": root / "runs", "dir": root / "runs" / "cold_start-tiny"}


def test_held_out_items_never_reach_training(tmp_path):
    full = load_p5(write_tiny_p5(tmp_path / "full"), "tiny")
    held = hold_out(full, 0.25, seed=0)
    assert held.sum() == 10 and np.array_equal(held, hold_out(full, 0.25, seed=0))
    assert not np.array_equal(held, hold_out(full, 0.25, seed=1))  # the seed draws the hold-out
    counts = write_training_data(full, held, tmp_path / "train")
    trained = load_p5(tmp_path / "train", "tiny")
    held_ids = {full.items[i]["item_id"] for i in np.flatnonzero(held)}
    assert held_ids.isdisjoint(item["item_id"] for item in trained.items)
    assert held_ids.isdisjoint(trained.items[i]["item_id"] for i in trained.seq_items)
    new = [json.loads(line)["item_id"] for line in (tmp_path / "train" / "new_items.jsonl").read_text().splitlines()]
    assert set(new) == held_ids
    assert counts["training_users"] == trained.num_users == full.num_users - counts["dropped_users"]
    assert counts["removed_interactions"] == int(held[full.seq_items].sum())


def test_every_row_is_scored_on_the_cold_and_warm_users(study):
    full = load_p5(study["data"], "tiny")
    for seed in (0, 1):
        result = json.loads((study["dir"] / f"seed-{seed}" / "cold_start.json").read_text())
        held = hold_out(full, 0.25, seed)
        last = full.seq_items[full.seq_offsets[1:] - 1]
        assert result["held_out_items"] == 10 and result["catalog_items"] == full.num_items
        cold, warm = result["groups"]["cold"], result["groups"]["warm"]
        assert cold["users"] == int(held[last].sum()) > 0 and warm["users"] == 10
        assert list(cold["rows"]) == ROWS
        assert cold["rows"]["popularity"]["recall@10"] == 0.0  # held-out items have no training counts
        for row in ("reserved", "hybrid"):  # 2 of 10 slots kept for added items
            assert cold["rows"][row]["new_item_share@10"] >= 0.2
        for metrics in cold["rows"].values():
            assert 0.0 <= metrics["ndcg@10"] <= metrics["recall@10"] <= 1.0
        run = study["dir"] / f"seed-{seed}" / "run"
        assert current_generation(run) == 1  # the held-out items were added once
        assert json.loads((run / "config.json").read_text())["seed"] == seed


def test_the_report_has_mean_and_std_per_group_and_row(study):
    with open(study["dir"] / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["group"], r["row"]) for r in rows] == [(g, r) for g in ("cold", "warm") for r in ROWS]
    assert all(r["seeds"] == "0 1" and r["recall@10_mean"] != "" for r in rows)
    model = next(r for r in rows if r["row"] == "model" and r["group"] == "cold")
    assert model["default"] == "1" and model["recall@10_paired_diff"] == ""
    hybrid = next(r for r in rows if r["row"] == "hybrid" and r["group"] == "cold")
    assert float(hybrid["recall@10_ci95_low"]) <= float(hybrid["recall@10_paired_diff"]) <= float(
        hybrid["recall@10_ci95_high"])
    text = (study["dir"] / "report.md").read_text()
    assert "| cold | Hybrid: the model, text lookup in the reserved slots | 2 |" in text
    assert "25% of the items are held out" in text


def test_a_second_run_trains_and_adds_nothing(study, monkeypatch, capsys):
    import sidrec.pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("done again")

    monkeypatch.setattr(sidrec.pipeline, "run", refuse)
    exp = parse_experiment_args(_args(study["data"], study["root"]))
    assert run_experiment(exp)["skipped"] == 2
    # results lost after training and adding: scored again, not trained or added again
    before = json.loads((study["dir"] / "seed-1" / "cold_start.json").read_text())
    (study["dir"] / "seed-1" / "cold_start.json").unlink()
    monkeypatch.setattr("sidrec.cold_start.add_items", refuse)
    result = run_experiment(exp)
    assert result["trained"] == 0 and result["skipped"] == 1 and result["failed"] == 0
    assert json.loads((study["dir"] / "seed-1" / "cold_start.json").read_text()) == before
    # the report is rebuilt by `sidrec report`
    (study["dir"] / "report.md").unlink()
    assert main(["report", str(study["dir"])]) == 0
    assert (study["dir"] / "report.md").exists() and "report.png" not in capsys.readouterr().out


def test_cold_start_options_are_checked(tmp_path, capsys):
    assert main(["experiment", "cold_start", "share=1.5", f"root={tmp_path}"]) == 2
    assert "share='1.5': expected a share between 0 and 1" in capsys.readouterr().err
    assert main(["experiment", "cold_start", "warm_users=-1", f"root={tmp_path}"]) == 2
    assert "warm_users='-1'" in capsys.readouterr().err
    assert main(["experiment", "decoding", "share=0.1", f"root={tmp_path}"]) == 2
    assert "share= is an option of the cold_start study, not of decoding" in capsys.readouterr().err
    assert main(["experiment", "cold_start", "parallel=2", f"root={tmp_path}"]) == 2
    assert "runs its seeds one after another" in capsys.readouterr().err
    exp = parse_experiment_args(["cold_start", "budget=cpu", "reserve=0.3", f"root={tmp_path}"])
    assert exp.overrides[:2] == ["preset=cpu", "tokenizer.dedup_reserve=8"]  # the main job's model
    assert [r.overrides for r in exp.study.rows if r.name == "hybrid"] == [
        ["decode.cold_start_share=0.3", "decode.cold_start_fill=lookup"]]
    assert main(["experiment", "list"]) == 0
    assert "cold_start    ours:" in capsys.readouterr().out


def test_the_training_data_is_p5_so_its_ids_are_integers(tmp_path):
    from sidrec.data.loaders import write_p5
    from sidrec.errors import DataError

    with pytest.raises(DataError, match="id 'B00X' is not a non-negative integer"):
        write_p5(tmp_path, ["1"], [["2", "B00X", "3"]], [])
