"""``sidrec findings``: the paper's claims judged from study directories. The studies here are fake
(experiment.json + seed-N/metrics.json written by hand), so every verdict branch is reached in
milliseconds."""

import csv
import json

import pytest

from sidrec.cli import main
from sidrec.experiments.findings import (CONFIRMED, CSV_COLUMNS, FINDINGS, INCONCLUSIVE, NOT_RUN, REFUTED,
                                         verdict)
from sidrec.experiments.runner import parse_experiment_args
from sidrec.experiments.studies import METRICS


def fake_study(root, study, recall_at_10: dict[str, list[float]], budget="cpu"):
    """A study directory whose rows finished with these Recall@10 values, one per seed (0, 1, ...)."""
    seeds = max(len(v) for v in recall_at_10.values())
    exp = parse_experiment_args([study, "dataset=beauty", f"budget={budget}", f"seeds={seeds}", f"root={root}"])
    exp.directory.mkdir(parents=True)
    (exp.directory / "experiment.json").write_text(json.dumps(exp.describe()))
    for row, values in recall_at_10.items():
        for seed, value in enumerate(values):
            run = exp.run_dir(row, seed)
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({**{m: value / 2 for m in METRICS}, "recall@10": value}))
    return exp.directory


@pytest.mark.parametrize("direction, low, high, expected", [
    ("worse", -0.02, -0.01, CONFIRMED),
    ("worse", 0.01, 0.02, REFUTED),
    ("worse", -0.01, 0.01, INCONCLUSIVE),
    ("better", 0.01, 0.02, CONFIRMED),
    ("better", -0.02, -0.01, REFUTED),
    ("on_par", -0.004, 0.003, CONFIRMED),  # margin 0.005: the whole interval inside
    ("on_par", 0.006, 0.02, REFUTED),  # wholly outside, above
    ("on_par", -0.03, -0.006, REFUTED),  # wholly outside, below
    ("on_par", -0.001, 0.02, INCONCLUSIVE),  # straddles the margin
    ("on_par", 0.001, 0.008, INCONCLUSIVE),  # excludes 0 but not the margin: not shown to differ by more
])
def test_the_verdict_follows_from_the_interval(direction, low, high, expected):
    assert verdict(direction, {"low": low, "high": high}, margin=0.005) == expected


def test_no_interval_is_inconclusive_and_a_bad_direction_is_refused():
    assert verdict("worse", None) == INCONCLUSIVE
    with pytest.raises(ValueError, match="direction 'same'"):
        verdict("same", {"low": 0, "high": 0})


def _read_csv(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_findings_from_study_directories(tmp_path, capsys):
    root = tmp_path / "runs"
    # no augmentation is behind on every seed: the claim "worse" is confirmed
    fake_study(root, "augmentation", {"sliding_window": [0.060, 0.064, 0.058],
                                      "no_augmentation": [0.045, 0.047, 0.044]})
    # RQ-VAE ahead of RK-Means on every seed: refuted; vs R-VQ it straddles 0: inconclusive
    fake_study(root, "tokenizer", {"rkmeans": [0.050, 0.052, 0.051], "rvq": [0.060, 0.050, 0.055],
                                   "rqvae": [0.055, 0.058, 0.056]})
    # free-form within 1% of constrained: on par, confirmed; random 30% behind: on par refuted
    fake_study(root, "decoding", {"constrained": [0.060, 0.062, 0.061], "free_form": [0.0601, 0.0619, 0.0611]})
    fake_study(root, "dedup", {"extra_digit": [0.060, 0.062, 0.061], "random": [0.040, 0.043, 0.041]})
    # one seed: no interval
    lookup = fake_study(root, "architecture", {"encoder_decoder": [0.06], "decoder_only": [0.04]}, budget="tiny") \
        / "baselines" / "lookup"
    lookup.mkdir(parents=True)
    (lookup / "metrics.json").write_text(json.dumps({m: 0.0614 for m in METRICS}))

    out = tmp_path / "docs"
    assert main(["findings", f"root={root}", f"out={out}"]) == 0
    assert str(out / "findings.md") in capsys.readouterr().out
    columns, rows = _read_csv(out / "findings.csv")
    assert tuple(columns) == CSV_COLUMNS
    assert [(r["study"], r["claim"]) for r in rows] == [(f.study, f.claim) for f in FINDINGS]
    verdicts = {(r["study"], r["claim"].split()[0]): r["verdict"] for r in rows}
    assert verdicts[("augmentation", "Sliding-window")] == CONFIRMED
    assert verdicts[("tokenizer", "RK-Means")] == REFUTED
    assert verdicts[("tokenizer", "R-VQ")] == INCONCLUSIVE
    assert verdicts[("decoding", "Constrained")] == CONFIRMED
    assert verdicts[("dedup", "The")] == REFUTED
    assert verdicts[("architecture", "The")] == INCONCLUSIVE
    assert {r["verdict"] for r in rows if r["study"] in ("sid_shape", "user_tokens")} == {NOT_RUN}

    aug = next(r for r in rows if r["study"] == "augmentation")
    assert aug["paper_table"] == "6" and float(aug["paper_value"]) == 0.0447  # the paper's No Augmentation row
    assert float(aug["our_mean"]) == pytest.approx(0.136 / 3) and aug["seeds"] == "0 1 2" and aug["budget"] == "cpu"
    assert float(aug["paired_diff"]) == pytest.approx(-0.046 / 3)
    assert float(aug["ci95_low"]) < float(aug["paired_diff"]) < float(aug["ci95_high"]) < 0
    arch = next(r for r in rows if r["study"] == "architecture")
    assert arch["budget"] == "tiny" and arch["seeds"] == "0" and arch["paired_diff"] == ""
    not_run = next(r for r in rows if r["study"] == "sid_shape")
    assert not_run["our_mean"] == not_run["paired_diff"] == not_run["budget"] == "" and not_run["paper_value"]

    page = (out / "findings.md").read_text()
    assert "**2 confirmed, 2 refuted, 2 inconclusive, 9 not run** of 15" in page
    assert "Not run yet: `sid_shape`, `user_tokens`" in page
    assert "equivalence margin of ±10%" in page and "(margin ±0.0061)" in page
    assert "| `architecture` | `tiny` | — | 0.0614 | — |" in page  # the lookup baseline, for scale
    assert main(["findings", f"root={root}", f"out={out}", "metric=ndcg@10"]) == 0
    assert "Metric: NDCG@10; the primary metric is Recall@10" in (out / "findings.md").read_text()


def test_nothing_run_gives_every_finding_as_not_run(tmp_path):
    (tmp_path / "runs").mkdir()
    assert main(["findings", f"root={tmp_path / 'runs'}", f"out={tmp_path}"]) == 0
    columns, rows = _read_csv(tmp_path / "findings.csv")
    assert len(rows) == len(FINDINGS) and {r["verdict"] for r in rows} == {NOT_RUN}
    assert all(r["paper_value"] for r in rows)  # the paper's numbers are there all the same
    assert "None yet" in (tmp_path / "findings.md").read_text()


def test_bad_input_is_one_error_line(tmp_path, capsys):
    assert main(["findings", f"root={tmp_path / 'nope'}", f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: root={tmp_path / 'nope'}: no such directory") and err.count("\n") == 1
    assert main(["findings", f"root={tmp_path}", "metric=mrr"]) == 2
    assert "metric='mrr': expected one of" in capsys.readouterr().err
    assert main(["findings", "rot=runs"]) == 2
    assert "unknown option rot=" in capsys.readouterr().err
