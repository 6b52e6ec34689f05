"""benchmarks/scale.py end to end at toy sizes (its figures come from the lead's runs, not from here)."""

import importlib.util
import json
from pathlib import Path

import numpy as np

from conftest import REPO


def _benchmark():
    spec = importlib.util.spec_from_file_location("scale_benchmark", REPO / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unit_embeddings_are_seeded_unit_rows():
    bench = _benchmark()
    x = bench.unit_embeddings(70_000, 8, "random", 0.0, seed=1)  # more rows than one chunk
    assert x.dtype == np.float32 and x.shape == (70_000, 8)
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    assert np.array_equal(x, bench.unit_embeddings(70_000, 8, "random", 0.0, seed=1))


def test_scale_benchmark_runs_every_stage_with_one_model(tmp_path, capsys):
    bench = _benchmark()
    png, out = tmp_path / "scale.png", tmp_path / "scale.json"
    results = bench.main(["--sizes", "300,600", "--steps", "3", "--users", "6", "--repeats", "1", "--threads", "1",
                          "--out", str(png), "--json", str(out)])
    assert [r["items"] for r in results] == [300, 600]
    assert all(set(r["seconds"]) >= set(bench.STAGES) for r in results)
    assert len({r["model_checksum"] for r in results}) == 1  # the same weights decode both catalogs
    assert all(r["found_top_k"] > 0.5 for r in results)  # beams on history items are dropped
    assert png.stat().st_size > 0 and json.loads(out.read_text())["results"] == results
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("decode_cost_ratio: ")
