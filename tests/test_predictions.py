import json

import numpy as np
import pytest

from sidrec.cli import main
from sidrec.errors import DataError
from sidrec.evaluate.metrics import compute_metrics
from sidrec.evaluate.predictions import PredictionWriter, read_histories_file, read_predictions
from sidrec.recommender import Recommender
from sidrec.run import RunDir


def metrics_from_file(path, run: RunDir) -> dict:
    """Recall/NDCG recomputed from predictions.jsonl alone (item ids -> indices, ranked lists padded)."""
    index = run.dataset.item_index()
    lines = read_predictions(path)
    ranked = np.full((len(lines), 10), -1)
    for r, line in enumerate(lines):
        ranked[r, : len(line["items"])] = [index[i] for i in line["items"]]
    targets = np.array([index[line["target"]] for line in lines])
    return compute_metrics(ranked, targets, ks=[5, 10])


def test_predict_writes_one_line_per_test_user_and_its_metrics_match_metrics_json(finished_run, tmp_path, capsys):
    out = tmp_path / "predictions.jsonl"
    assert main(["predict", f"run_dir={finished_run}", f"out={out}"]) == 0
    run = RunDir(finished_run)
    lines = read_predictions(out)
    assert sorted(line["user_id"] for line in lines) == sorted(run.dataset.user_ids)
    assert all(len(line["items"]) == len(line["scores"]) <= 10 for line in lines)
    assert all(line["scores"] == sorted(line["scores"], reverse=True) for line in lines)
    recomputed = metrics_from_file(out, run)
    stored = run.metrics()
    assert recomputed == pytest.approx({k: stored[k] for k in recomputed}, abs=1e-12)
    # `sidrec evaluate predictions=...` writes the same file
    again = tmp_path / "again.jsonl"
    assert main(["evaluate", f"run_dir={finished_run}", f"predictions={again}"]) == 0
    assert again.read_text() == out.read_text()


def test_predict_for_given_histories_matches_the_python_api(finished_run, tmp_path):
    users = tmp_path / "users.jsonl"
    histories = [["1", "5", "9"], ["B000000003", "7"], []]
    users.write_text("".join(json.dumps({"user_id": f"u{i}", "history": h}) + "\n" for i, h in enumerate(histories)))
    out = tmp_path / "p.jsonl"
    assert main(["predict", f"run_dir={finished_run}", f"users={users}", f"out={out}", "k=5"]) == 0
    lines = read_predictions(out)
    rec = Recommender.load(finished_run)
    assert [line["user_id"] for line in lines] == ["u0", "u1", "u2"]
    for line, history, user in zip(lines, histories, ["u0", "u1", "u2"]):
        assert line["items"] == [r.item_id for r in rec.recommend(history, k=5, user_id=user)]
    assert lines[2]["scores"] == [None] * len(lines[2]["items"])  # empty history: popularity fallback


def test_bad_users_file_is_one_error_line_and_writes_nothing(finished_run, tmp_path, capsys):
    users = tmp_path / "users.jsonl"
    users.write_text('{"user_id": "u0", "history": ["1"]}\n{"user_id": "u1"}\n')
    out = tmp_path / "p.jsonl"
    assert main(["predict", f"run_dir={finished_run}", f"users={users}", f"out={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "users.jsonl:2" in err[0] and "'history'" in err[0]
    assert not out.exists()
    with pytest.raises(DataError, match="not found"):
        read_histories_file(tmp_path / "missing.jsonl")


def test_a_failed_write_leaves_no_file(tmp_path):
    out = tmp_path / "p.jsonl"
    with pytest.raises(RuntimeError):
        with PredictionWriter(out, ["a", "b"], ["u"]) as writer:
            writer.write(np.array([0]), np.array([[1, -1]]), np.array([[-0.5, -np.inf]]), np.array([0]))
            raise RuntimeError("crash mid-way")
    assert not out.exists() and not list(tmp_path.iterdir())
    with PredictionWriter(out, ["a", "b"], ["u"]) as writer:
        writer.write(np.array([0]), np.array([[1, -1]]), np.array([[-0.5, -np.inf]]), np.array([0]))
    assert read_predictions(out) == [{"user_id": "u", "items": ["b"], "scores": [-0.5], "target": "a"}]
