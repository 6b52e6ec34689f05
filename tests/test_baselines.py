"""``sidrec sasrec`` (sidrec/baselines/sasrec.py): the run directory, pinned metrics, seeds, errors."""

import json

import pytest

from sidrec.baselines import run_sasrec
from sidrec.model_file import load_model_file
from sidrec.cli import main
from sidrec.config import build_sasrec_config
from sidrec.data.loaders import load_dataset
from sidrec.data.split import evaluation_samples
from sidrec.errors import ConfigError
from sidrec.evaluate.metrics import compute_metrics
from sidrec.models.sasrec import SASRec
from sidrec.train.sasrec import rank_all_items

TINY_DATA = ["data.format=p5", "data.name=tiny"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cli_writes_metrics_on_the_leave_last_out_test_split(tiny_p5, tmp_path, capsys):
    run_dir = tmp_path / "sasrec"
    assert main(["sasrec", "preset=tiny", *TINY_DATA, f"data.path={tiny_p5}", f"run_dir={run_dir}"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ["recall@5", "recall@10", "ndcg@5", "ndcg@10"]:
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["recall@10"] >= metrics["recall@5"] and 1 <= metrics["epochs"] <= 3
    # a main run's layout, where SASRec has the artifact
    for name in ["config.json", "items.jsonl", "sequences.npz", "dataset.json", "log.csv", "model.pt"]:
        assert (run_dir / name).exists(), name
    assert "SASRec test metrics" in capsys.readouterr().out
    cfg = build_sasrec_config(["preset=tiny", *TINY_DATA, f"data.path={tiny_p5}", f"run_dir={run_dir}"])
    assert json.loads((run_dir / "config.json").read_text()) == cfg.to_dict()
    # model.pt rebuilds the network, which reproduces the test metrics on the split's test samples
    model, meta = load_model_file(run_dir / "model.pt")
    assert isinstance(model, SASRec) and meta["training"]["best_epoch"] == metrics["best_epoch"]
    test = evaluation_samples(load_dataset(cfg.data), 5, "test")
    again = compute_metrics(rank_all_items(model, test.histories, 10, 64, "cpu"), test.targets)
    assert again["ndcg@10"] == pytest.approx(metrics["ndcg@10"])


# A tiny run's test metrics, recorded before SASRec moved out of sidrec/baselines.py (issue #13):
# the refactor must not change what a fixed seed trains to.
PINNED = {
    (): {"recall@5": 0.15, "ndcg@5": 0.09037363214744235, "recall@10": 0.3333333333333333,
         "ndcg@10": 0.14734227902101676, "best_val": 0.14970240361494136, "best_epoch": 3, "epochs": 3},
    ("seed=3", "sasrec.max_epochs=5", "sasrec.dropout=0.1"): {
        "recall@5": 0.31666666666666665, "ndcg@5": 0.2227283569398212, "recall@10": 0.5,
        "ndcg@10": 0.28153734308946, "best_val": 0.20679325781460509, "best_epoch": 5, "epochs": 5},
}


@pytest.mark.parametrize("extra", list(PINNED), ids=["defaults", "seed 3"])
def test_a_fixed_seed_gives_the_pinned_metrics(tiny_p5, tmp_path, extra):
    run_dir = tmp_path / "pinned"
    assert main(["sasrec", "preset=tiny", *TINY_DATA, f"data.path={tiny_p5}", f"run_dir={run_dir}", *extra]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {k: metrics[k] for k in PINNED[extra]} == pytest.approx(PINNED[extra], abs=1e-6)
    assert (metrics["train_sequences"], metrics["parameters"], metrics["seed"], metrics["model"]) == (
        60, 2992, 3 if extra else 42, "sasrec")


def test_seeds_write_a_summary_and_reuse_finished_runs(tiny_p5, tmp_path, capsys):
    base = tmp_path / "multi"
    args = ["sasrec", "preset=tiny", *TINY_DATA, f"data.path={tiny_p5}", f"run_dir={base}", "seeds=2",
            "sasrec.max_epochs=1"]
    assert main(args) == 0
    summary = json.loads((base / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and set(summary["mean_std"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("reused") == 2


def test_bad_settings_are_one_line_errors(tiny_p5, tmp_path, capsys):
    assert main(["sasrec", "sasrec.nope=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="early_stop_metric"):
        run_sasrec(build_sasrec_config(["preset=tiny", *TINY_DATA, f"data.path={tiny_p5}",
                                        f"run_dir={tmp_path / 'x'}", "sasrec.early_stop_metric=mrr"]), progress=False)
