"""``sidrec lookup`` (sidrec/baselines/lookup.py): the run directory, metrics recomputed by hand from
the run's own embeddings with a plain per-user loop, history exclusion, errors."""

import json
import math

import numpy as np
import pytest

from sidrec.baselines.lookup import run_lookup
from sidrec.cli import main
from sidrec.config import build_lookup_config
from sidrec.data.loaders import load_dataset

TINY_DATA = ["data.format=p5", "data.name=tiny"]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One embedding cache for the module's runs: the tiny catalog is embedded once."""
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture
def data(tiny_p5, shared_cache):
    return [*TINY_DATA, f"data.path={tiny_p5}", f"encoder.cache_dir={shared_cache}"]


def by_hand(unit: np.ndarray, history: list[int], k: int, exclude_history: bool) -> list[int]:
    scores = unit @ unit[history[-1]]
    excluded = set(history) if exclude_history else {history[-1]}
    order = [int(i) for i in np.argsort(-scores, kind="stable") if int(i) not in excluded]
    return order[:k]


def metrics_by_hand(ds, embeddings, exclude_history: bool) -> dict:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    out = {}
    for prefix, cut in (("", 1), ("val_", 2)):
        hits = []
        for u in range(ds.num_users):
            seq = ds.sequence(u).tolist()
            history, target = seq[:-cut], seq[-cut]
            ranked = by_hand(unit, history, 10, exclude_history)
            hits.append(ranked.index(target) if target in ranked else None)
        for k in (5, 10):
            inside = [r for r in hits if r is not None and r < k]
            out[f"{prefix}recall@{k}"] = len(inside) / len(hits)
            out[f"{prefix}ndcg@{k}"] = sum(1 / math.log2(r + 2) for r in inside) / len(hits)
    return out


@pytest.mark.parametrize("exclude", [True, False])
def test_metrics_match_a_per_user_loop_over_the_runs_embeddings(data, tmp_path, capsys, exclude):
    run_dir = tmp_path / "lookup"
    assert main(["lookup", *data, f"run_dir={run_dir}",
                 f"lookup.exclude_history={str(exclude).lower()}"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ["config.json", "items.jsonl", "sequences.npz", "dataset.json", "embeddings.npy", "embeddings.json"]:
        assert (run_dir / name).exists(), name
    cfg = build_lookup_config([*data, f"run_dir={run_dir}",
                               f"lookup.exclude_history={str(exclude).lower()}"])
    assert json.loads((run_dir / "config.json").read_text()) == cfg.to_dict()
    ds = load_dataset(cfg.data)
    expected = metrics_by_hand(ds, np.load(run_dir / "embeddings.npy"), exclude)
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)
    assert metrics["model"] == "lookup"
    assert "Text lookup test metrics" in capsys.readouterr().out


def test_history_exclusion_keeps_history_items_out_of_the_ranking(data, tmp_path, monkeypatch):
    """Users here repeat items, so keeping the history in changes what is ranked."""
    import sidrec.baselines.lookup as lookup

    ranked = {}
    real = lookup.text_lookup_rank

    def spy(embeddings, histories, k, *args, **kwargs):
        out = real(embeddings, histories, k, *args, **kwargs)
        ranked[kwargs["exclude_history"]] = (histories, out)
        return out

    monkeypatch.setattr(lookup, "text_lookup_rank", spy)
    for exclude in (True, False):
        run_lookup(build_lookup_config([*data, f"run_dir={tmp_path / str(exclude)}",
                                        f"lookup.exclude_history={exclude}", "eval.test=false"]), progress=False)
    histories, out = ranked[True]
    assert not any(set(h[h >= 0]) & set(r) for h, r in zip(histories, out))
    histories, out = ranked[False]
    assert not any(h[-1] in r for h, r in zip(histories, out))
    assert any(set(h[h >= 0]) & set(r) for h, r in zip(histories, out))


def test_last_n_changes_the_query_and_is_recorded(data, tmp_path):
    one = run_lookup(build_lookup_config([*data, f"run_dir={tmp_path / 'a'}"]),
                     progress=False)
    three = run_lookup(build_lookup_config([*data, f"run_dir={tmp_path / 'b'}",
                                            "lookup.last_n=3", "lookup.decay=0.8"]), progress=False)
    assert {k: v for k, v in one.items() if "@" in k} != {k: v for k, v in three.items() if "@" in k}
    assert json.loads((tmp_path / "b" / "config.json").read_text())["lookup"]["last_n"] == 3


@pytest.mark.parametrize("args, fragment", [
    (["lookup.nope=1"], "unknown config key"),
    (["lookup.last_n=0"], "lookup.last_n"),
    (["lookup.decay=0"], "lookup.decay"),
    (["lookup.decay=1.5"], "lookup.decay"),
    (["lookup.batch_size=0"], "lookup.batch_size"),
    (["lookup.exclude_history=maybe"], "boolean"),
    (["seeds=2"], "no seed"),
])
def test_bad_settings_are_one_line_errors(capsys, args, fragment):
    assert main(["lookup", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1


def test_help_lists_the_keys(capsys):
    assert main(["lookup", "--help"]) == 0
    out = capsys.readouterr().out
    assert "lookup.last_n=1" in out and "lookup.exclude_history=True" in out and "encoder.model=" in out
