"""Experiment harness: a whole study at budget=tiny (table, CSV, plot, decoding time), resume,
shared artifacts, the report's paper column, every study's rows, the paper tables as data."""

import csv
import json
import os

import pytest

from sidrec.cli import main
from sidrec.errors import ConfigError
from sidrec.experiments import paper_tables, paper_value
from sidrec.experiments.runner import parse_experiment_args, run_experiment
from sidrec.experiments.studies import METRICS, STUDIES

from conftest import write_tiny_p5


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the subprocesses of parallel=N too


def _args(study, data, root, *extra):
    return [study, "dataset=tiny", "paper_dataset=beauty", "budget=tiny", "seeds=1", f"root={root}",
            "data.format=p5", f"data.path={data}", "train.max_steps=6", "train.val_every=3", *extra]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The decoding study (2 rows, decoding time per user) run once through the CLI."""
    root = tmp_path_factory.mktemp("exp")
    data = write_tiny_p5(root / "data")
    old = os.environ.get("SIDREC_CACHE_DIR")
    os.environ["SIDREC_CACHE_DIR"] = str(root / "cache")
    try:
        assert main(["experiment", *_args("decoding", data, root / "runs")]) == 0
    finally:
        if old is None:
            os.environ.pop("SIDREC_CACHE_DIR", None)
        else:
            os.environ["SIDREC_CACHE_DIR"] = old
    return {"root": root / "runs", "data": data, "dir": root / "runs" / "decoding-tiny"}


def _read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_study_writes_runs_table_csv_and_plot(study):
    d = study["dir"]
    for row in ("constrained", "free_form"):
        run = d / row / "seed-0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert 0 <= metrics["recall@10"] <= 1
        timing = json.loads((run / "timing.json").read_text())
        assert timing["decode_ms_per_user"] > 0 and timing["users"] == 60
        # the timed pass ranks exactly like the run's own test
        assert timing["timed_metrics"]["recall@10"] == pytest.approx(metrics["recall@10"])
    assert json.loads((d / "constrained" / "seed-0" / "config.json").read_text())["decode"]["constrained"] is True
    assert json.loads((d / "free_form" / "seed-0" / "config.json").read_text())["decode"]["constrained"] is False
    text = (d / "report.md").read_text()
    assert "| Constrained | 1 |" in text and "| Free-form | 1 |" in text and "decode ms/user" in text
    assert "Reduced budget" in text
    rows = _read_csv(d / "report.csv")
    assert [r["row"] for r in rows] == ["constrained", "free_form"]
    assert float(rows[0]["recall@10_mean"]) == pytest.approx(
        json.loads((d / "constrained" / "seed-0" / "metrics.json").read_text())["recall@10"])
    assert float(rows[1]["decode_ms_per_user_mean"]) > 0
    assert float(rows[0]["steps_mean"]) == 6 and float(rows[0]["minutes_mean"]) >= 0
    assert (d / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_has_the_baselines_on_the_same_data(study):
    d = study["dir"]
    text = (d / "report.md").read_text()
    for name, label in (("popularity", "Most popular"), ("lookup", "Text lookup")):
        metrics = json.loads((d / "baselines" / name / "metrics.json").read_text())
        assert metrics["model"] == name
        config = json.loads((d / "baselines" / name / "config.json").read_text())
        assert config["data"]["path"] == str(study["data"]) and config["data"]["name"] == "tiny"
        line = next(line for line in text.splitlines() if line.startswith(f"| {label}"))
        assert line.endswith(" | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    assert [r["row"] for r in _read_csv(d / "report.csv")] == ["constrained", "free_form"]  # study rows only


def test_the_study_trains_sasrec_at_its_seeds_without_a_time_limit(study):
    base = study["dir"] / "baselines" / "sasrec"
    metrics = json.loads((base / "seed-0" / "metrics.json").read_text())
    config = json.loads((base / "seed-0" / "config.json").read_text())
    assert metrics["model"] == "sasrec" and metrics["seed"] == 0
    assert config["preset"] == "tiny" and config["sasrec"]["max_minutes"] == 0
    assert config["data"]["path"] == str(study["data"]) and config["eval"]["ks"] == "5,10"
    summary = json.loads((base / "summary.json").read_text())
    assert summary["seeds"] == [0] and summary["mean_std"]["recall@10"][0] == metrics["recall@10"]
    line = next(line for line in (study["dir"] / "report.md").read_text().splitlines()
                if line.startswith("| SASRec"))
    assert line.startswith("| SASRec (`sidrec sasrec`) | 0 | ")
    assert line.endswith(" | ".join(f"{metrics[m]:.4f} ± 0.0000" for m in METRICS) + " |")


def test_report_paper_column_matches_the_stored_tables(study):
    rows = _read_csv(study["dir"] / "report.csv")
    text = (study["dir"] / "report.md").read_text()
    for row in rows:
        paper = paper_value(8, "beauty", row["paper_row"])
        assert paper is not None
        for m in METRICS:
            assert float(row[f"{m}_paper"]) == paper[m]
    stored = {r["row"]: r for r in paper_tables()["tables"]["8"]["results"] if r["dataset"] == "beauty"}
    line = next(line for line in text.splitlines() if line.startswith("| Free-form |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert [float(cells[i]) for i in (3, 5, 7, 9)] == [stored["Free-form"][m] for m in METRICS]


def test_rows_share_dataset_embeddings_and_sids(study):
    d = study["dir"]
    a, b = d / "constrained" / "seed-0", d / "free_form" / "seed-0"
    # decoding rows differ only at decoding: same dataset, embeddings and SID table, stored once
    for name in ("sequences.npz", "embeddings.npy", "sid_table.npz", "tokenizer.pt"):
        assert os.path.samefile(a / name, b / name), name
    assert len(list((study["root"] / "_shared").glob("sid-*"))) == 1


def test_second_run_trains_nothing_and_report_command_rebuilds(study, monkeypatch, capsys):
    import sidrec.pipeline

    def no_training(cfg, stages="all"):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sidrec.pipeline, "run", no_training)
    exp = parse_experiment_args(_args("decoding", study["data"], study["root"]))
    result = run_experiment(exp)
    assert result["trained"] == 0 and result["skipped"] == 2 and result["failed"] == 0
    # a run interrupted after training but before timing only redoes the timing
    (study["dir"] / "free_form" / "seed-0" / "timing.json").unlink()
    result = run_experiment(exp)
    assert result["trained"] == 0 and result["timed"] == 1 and result["skipped"] == 1
    for name in ("report.md", "report.csv", "report.png"):
        (study["dir"] / name).unlink()
    capsys.readouterr()
    assert main(["report", str(study["dir"])]) == 0
    assert all((study["dir"] / n).exists() for n in ("report.md", "report.csv", "report.png"))
    assert "| Constrained | 1 |" in capsys.readouterr().out


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    return {"root": root / "runs", "data": write_tiny_p5(root / "data"), "cache": root / "cache"}


@pytest.mark.parametrize("name", [s for s in STUDIES if s != "decoding"])
def test_each_study_runs_end_to_end_at_the_tiny_budget(name, shared_root, monkeypatch):
    monkeypatch.setenv("SIDREC_CACHE_DIR", str(shared_root["cache"]))
    exp = parse_experiment_args(_args(name, shared_root["data"], shared_root["root"], "train.max_steps=4",
                                      "train.val_every=2"))
    result = run_experiment(exp, progress=False)
    # the default row of most studies is the same run: trained once, then reused
    assert result["failed"] == 0 and result["trained"] + result["reused"] == len(exp.study.rows)
    rows = _read_csv(exp.directory / "report.csv")
    assert [r["row"] for r in rows] == [r.name for r in exp.study.rows]
    assert all(r["seeds"] == "0" and 0 <= float(r["recall@10_mean"]) <= 1 for r in rows)
    text = (exp.directory / "report.md").read_text()
    assert all(f"| {r.label} | 1 |" in text for r in exp.study.rows)
    assert (exp.directory / "report.png").stat().st_size > 1000


def test_a_row_identical_to_a_finished_run_of_another_study_reuses_it(shared_root, tmp_path, monkeypatch):
    import sidrec.pipeline

    monkeypatch.setenv("SIDREC_CACHE_DIR", str(shared_root["cache"]))
    root = tmp_path / "runs"
    extra = ("train.max_steps=4", "train.val_every=2")
    first = run_experiment(parse_experiment_args(_args("augmentation", shared_root["data"], root, *extra)))
    assert first["trained"] == 2 and first["reused"] == 0
    trained = []
    real_run = sidrec.pipeline.run
    monkeypatch.setattr(sidrec.pipeline, "run", lambda cfg, stages="all": trained.append(cfg) or real_run(cfg, stages))
    exp = parse_experiment_args(_args("dedup", shared_root["data"], root, *extra))
    result = run_experiment(exp)
    # extra_digit (the default) = the augmentation study's sliding_window run; random is new
    assert result["reused"] == 1 and result["trained"] == 1 and [c.tokenizer.dedup for c in trained] == ["random"]
    twin, adopted = root / "augmentation-tiny" / "sliding_window" / "seed-0", exp.run_dir("extra_digit", 0)
    assert os.path.samefile(twin / "model.pt", adopted / "model.pt")
    metrics = json.loads((adopted / "metrics.json").read_text())
    assert metrics.pop("reused_from") == str(twin) and metrics == json.loads((twin / "metrics.json").read_text())
    assert json.loads((adopted / "config.json").read_text())["run_dir"] == str(adopted)
    # so is the SASRec baseline, trained by the first study
    sasrec = exp.directory / "baselines" / "sasrec" / "seed-0"
    assert json.loads((sasrec / "metrics.json").read_text())["reused_from"] == str(
        root / "augmentation-tiny" / "baselines" / "sasrec" / "seed-0")
    # a different seed is a different run; sasrec=false leaves SASRec out
    exp = parse_experiment_args(_args("dedup", shared_root["data"], root, *extra, "seeds=1,2", "sasrec=false"))
    assert run_experiment(exp)["reused"] == 0
    assert not (exp.directory / "baselines" / "sasrec" / "seed-1").exists()
    assert json.loads((exp.directory / "baselines" / "sasrec" / "summary.json").read_text())["seeds"] == [0]


def test_parallel_runs_in_subprocesses_share_the_first_runs_artifacts(shared_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIDREC_CACHE_DIR", str(shared_root["cache"]))
    exp = parse_experiment_args(_args("architecture", shared_root["data"], tmp_path / "runs", "parallel=2",
                                      "train.max_steps=4", "train.val_every=2"))
    assert exp.parallel == 2
    result = run_experiment(exp)
    assert result["trained"] == 5 and result["failed"] == 0
    runs = [exp.run_dir(r.name, 0) for r in exp.study.rows]
    assert [(run / "run.log").exists() for run in runs] == [False, True, True, True, True]  # the first in-process
    for name in ("embeddings.npy", "sid_table.npz"):
        assert all(os.path.samefile(runs[0] / name, run / name) for run in runs)
    assert len(_read_csv(exp.directory / "report.csv")) == 5
    # SASRec trained in the same pool as the rows, before them (the longest job first), not after them alone
    out = capsys.readouterr().out
    sasrec = exp.directory / "baselines" / "sasrec" / "seed-0"
    assert (sasrec / "run.log").exists() and (sasrec / "metrics.json").exists()
    assert out.index("baseline sasrec seed=0: started") < out.index("row=decoder_only seed=0: started")
    assert "| SASRec (`sidrec sasrec`) | 0 | " in (exp.directory / "report.md").read_text()
    # once the dataset and embeddings are published, no run waits alone for them: all go to the pool
    more = parse_experiment_args(_args("architecture", shared_root["data"], tmp_path / "runs", "parallel=2",
                                       "seeds=0,1", "rows=encoder_decoder,decoder_only", "sasrec=false",
                                       "train.max_steps=4", "train.val_every=2"))
    assert run_experiment(more)["trained"] == 2
    assert all((more.run_dir(r, 1) / "run.log").exists() for r in ("encoder_decoder", "decoder_only"))


def test_parallel_trains_the_sasrec_seeds_in_subprocesses(shared_root, tmp_path, monkeypatch):
    from sidrec.experiments.runner import run_baselines

    monkeypatch.setenv("SIDREC_CACHE_DIR", str(shared_root["cache"]))
    exp = parse_experiment_args(_args("decoding", shared_root["data"], tmp_path / "runs", "seeds=2", "parallel=2"))
    run_baselines(exp)
    base = exp.directory / "baselines" / "sasrec"
    assert all((base / f"seed-{s}" / "run.log").exists() for s in (0, 1))
    summary = json.loads((base / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and [r["seed"] for r in summary["runs"]] == [0, 1]


def test_rows_trains_only_the_named_rows_and_the_report_keeps_every_row(shared_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SIDREC_CACHE_DIR", str(shared_root["cache"]))
    exp = parse_experiment_args(_args("augmentation", shared_root["data"], tmp_path / "runs", "rows=no_augmentation",
                                      "sasrec=false", "train.max_steps=4", "train.val_every=2"))
    result = run_experiment(exp)
    assert result["trained"] == 1 and not exp.run_dir("sliding_window", 0).exists()
    rows = _read_csv(exp.directory / "report.csv")
    assert [(r["row"], r["seeds"]) for r in rows] == [("sliding_window", ""), ("no_augmentation", "0")]
    with pytest.raises(ConfigError, match=r"rows=sliding_window,nope: 'nope' is not a row of augmentation "
                                          r"\(rows: sliding_window, no_augmentation\)"):
        parse_experiment_args(["augmentation", "rows=sliding_window,nope", f"root={tmp_path}"])
    with pytest.raises(ConfigError, match="cold_start"):
        parse_experiment_args(["cold_start", "rows=model", f"root={tmp_path}"])


def test_a_half_finished_study_reports_what_finished(tmp_path):
    data = write_tiny_p5(tmp_path / "data")
    exp = parse_experiment_args(_args("augmentation", data, tmp_path / "runs", "seeds=2"))
    exp.directory.mkdir(parents=True)
    (exp.directory / "experiment.json").write_text(json.dumps(exp.describe()))
    run = exp.run_dir("sliding_window", 1)
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({m: 0.5 for m in METRICS}))
    from sidrec.experiments.report import write_report

    write_report(exp.directory)
    rows = _read_csv(exp.directory / "report.csv")
    assert rows[0]["seeds"] == "1" and float(rows[0]["recall@5_mean"]) == 0.5
    assert rows[1]["seeds"] == "" and rows[1]["recall@5_mean"] == ""
    assert "| No Augmentation | 0 | — |" in (exp.directory / "report.md").read_text()


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_has_valid_rows_with_paper_counterparts(name, tmp_path):
    extra = ["encoders=all-MiniLM-L6-v2,google/flan-t5-large,google/flan-t5-xl,google/flan-t5-xxl"]
    for budget in ("tiny", "paper"):
        exp = parse_experiment_args([name, "dataset=beauty", f"budget={budget}", f"root={tmp_path}", *extra])
        names = [r.name for r in exp.study.rows]
        assert len(set(names)) == len(names)
        for row in exp.study.rows:
            cfg = exp.config(row, 3)  # every override is a valid config key and value
            assert cfg.seed == 3 and cfg.run_dir.endswith(f"{name}-beauty/{row.name}/seed-3")
            if row.paper_row is not None:
                assert paper_value(exp.study.table, "beauty", row.paper_row) is not None, row.paper_row
    with_paper = [r for r in exp.study.rows if r.paper_row]
    assert len(with_paper) >= (3 if name in ("tokenizer", "encoder") else 2)


def test_encoder_rows_from_local_folders_match_the_papers_flan_t5_rows(tmp_path):
    """docs/experiments.md: checkpoints saved to folders are matched to the paper's rows by name."""
    encoders = "/models/flan-t5-large,/models/Flan-T5-XL/,/models/flan-t5-xxl,all-MiniLM-L6-v2"
    exp = parse_experiment_args(["encoder", "budget=tiny", f"root={tmp_path}", f"encoders={encoders}"])
    assert [(r.name, r.paper_row) for r in exp.study.rows] == [
        ("flan-t5-large", "Flan-T5-Large"), ("Flan-T5-XL", "Flan-T5-XL"), ("flan-t5-xxl", "Flan-T5-XXL"),
        ("all-MiniLM-L6-v2", None)]
    assert exp.config(exp.study.rows[1], 0).encoder.model == "/models/Flan-T5-XL/"


def test_sid_shape_rows_scale_codebooks_only_for_the_tiny_budget(tmp_path):
    tiny = parse_experiment_args(["sid_shape", "budget=tiny", f"root={tmp_path}"])
    paper = parse_experiment_args(["sid_shape", "budget=paper", f"root={tmp_path}"])
    assert [tiny.config(r, 0).tokenizer.num_codes_per_level for r in tiny.study.rows] == [4, 8, 16, 8, 8, 8]
    assert [paper.config(r, 0).tokenizer.num_codes_per_level for r in paper.study.rows] == [128, 256, 512, 256, 256, 256]
    assert [paper.config(r, 0).tokenizer.num_levels for r in paper.study.rows] == [3, 3, 3, 2, 4, 5]


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["experiment", "nope", f"root={tmp_path}"]) == 2
    assert "unknown study 'nope'" in capsys.readouterr().err
    assert main(["experiment", "tokenizer", "dataset=sports", f"root={tmp_path}"]) == 2
    assert "data.format=p5" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown config key"):
        parse_experiment_args(["tokenizer", "model.nope=1", f"root={tmp_path}"])
    with pytest.raises(ConfigError, match="budget"):
        parse_experiment_args(["tokenizer", "budget=huge", f"root={tmp_path}"])
    with pytest.raises(ConfigError, match="sasrec='maybe'"):
        parse_experiment_args(["tokenizer", "sasrec=maybe", f"root={tmp_path}"])
    assert main(["report", str(tmp_path)]) == 2
    assert "experiment.json" in capsys.readouterr().err
    assert main(["experiment", "list"]) == 0
    assert "sid_shape" in capsys.readouterr().out


def test_a_dataset_without_item_text_stops_with_a_clear_message(tmp_path, capsys):
    data = write_tiny_p5(tmp_path / "data")
    (data / "items.jsonl").unlink()  # like the P5 Sports files: sequences only
    assert main(["experiment", *_args("tokenizer", data, tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "study tokenizer on tiny" in err and "no text" in err and "data.missing_text=id" in err


def test_paper_tables_hold_tables_1_to_8():
    tables = paper_tables()["tables"]
    assert sorted(int(t) for t in tables) == list(range(1, 9))
    assert {t["study"] for t in tables.values()} == set(STUDIES)
    assert sum(len(t["results"]) for t in tables.values()) == 53
    assert paper_value(1, "beauty", "RK-Means") == {"recall@5": 0.0422, "recall@10": 0.0639, "ndcg@5": 0.0277,
                                                    "ndcg@10": 0.0347}
    assert paper_value(5, "sports", "Dec-only")["ndcg@5"] == 0.00979
    assert paper_value(4, "beauty", "8000")["ndcg@10"] == 0.0335
    assert paper_value(3, "beauty", "5x256")["recall@10"] == 0.0596
    assert paper_value(1, "beauty", "nope") is None


def test_the_report_pairs_each_row_with_the_default_row_by_seed(tmp_path):
    data = write_tiny_p5(tmp_path / "data")
    exp = parse_experiment_args(_args("augmentation", data, tmp_path / "runs", "seeds=0,1,2"))
    exp.directory.mkdir(parents=True)
    (exp.directory / "experiment.json").write_text(json.dumps(exp.describe()))
    # the seed moves both rows alike; the row is 0.010 behind on every seed
    for seed, level in ((0, 0.30), (1, 0.50), (2, 0.40)):
        for row, shift in (("sliding_window", 0.0), ("no_augmentation", -0.010 + 0.001 * seed)):
            run = exp.run_dir(row, seed)
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({m: level + shift for m in METRICS}))
    from sidrec.experiments.report import write_report

    write_report(exp.directory)
    rows = {r["row"]: r for r in _read_csv(exp.directory / "report.csv")}
    assert rows["sliding_window"]["default"] == "1" and rows["sliding_window"]["recall@10_paired_diff"] == ""
    no_aug = rows["no_augmentation"]
    assert float(no_aug["recall@10_paired_diff"]) == pytest.approx(-0.009)
    # diffs -0.010, -0.009, -0.008: sd 0.001, half-width t(2) * 0.001 / sqrt(3)
    half = 4.303 * 0.001 / 3 ** 0.5
    assert float(no_aug["recall@10_ci95_low"]) == pytest.approx(-0.009 - half)
    assert float(no_aug["recall@10_ci95_high"]) == pytest.approx(-0.009 + half)
    assert float(no_aug["recall@10_std"]) > 0.08  # the unpaired spread hides what the pairs resolve
    text = (exp.directory / "report.md").read_text()
    assert "| No Augmentation | 3 | -0.0090 [-0.0115, -0.0065]" in text


def test_a_row_that_differs_only_in_decoding_tests_the_finished_model_again(shared_root, tmp_path, monkeypatch):
    import sidrec.train.fit

    monkeypatch.setenv("SIDREC_CACHE_DIR", str(shared_root["cache"]))
    root = tmp_path / "runs"
    extra = ("train.max_steps=4", "train.val_every=2")
    run_experiment(parse_experiment_args(_args("augmentation", shared_root["data"], root, *extra)))
    fits = []
    real_fit = sidrec.train.fit.fit
    monkeypatch.setattr(sidrec.train.fit, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    exp = parse_experiment_args(_args("decoding", shared_root["data"], root, *extra))
    result = run_experiment(exp)
    assert result["reused"] == 2 and result["trained"] == 0 and not fits  # no model trained again
    twin = root / "augmentation-tiny" / "sliding_window" / "seed-0"
    free = exp.run_dir("free_form", 0)
    assert os.path.samefile(twin / "model.pt", free / "model.pt")
    metrics = json.loads((free / "metrics.json").read_text())
    assert metrics["reused_from"] == str(twin) and set(METRICS) <= set(metrics)
    assert json.loads((free / "config.json").read_text())["decode"]["constrained"] is False


@pytest.mark.parametrize("kind", ["rkmeans", "rvq", "rqvae"])
def test_a_run_written_before_the_tokenizers_declared_their_options_is_still_a_twin(kind, tmp_path):
    """A finished study run's config.json holds every tokenizer kind's options (a preset set them all):
    loaded, it equals the config a row makes now, so the row reuses that run (``find_twin``)."""
    from pathlib import Path

    from conftest import old_format
    from sidrec.config import build_config
    from sidrec.experiments.runner import find_twin

    root = tmp_path / "runs"
    twin = root / "tokenizer-beauty" / kind / "seed-0"
    twin.mkdir(parents=True)
    old = build_config(["preset=cpu-encdec", f"tokenizer.kind={kind}", f"run_dir={twin}"]).to_dict()
    (twin / "config.json").write_text(json.dumps(old_format(old, steps_per_level=300, rqvae_steps=2000)))
    (twin / "metrics.json").write_text("{}")
    for test_setting in ([], ["decode.num_beams=20"]):  # the same config; a model trained the same
        run_dir = root / "other-beauty" / kind / "seed-0"
        cfg = build_config(["preset=cpu-encdec", f"tokenizer.kind={kind}", f"run_dir={run_dir}", *test_setting])
        assert find_twin(root, cfg, Path(run_dir)) == twin
    cfg = build_config(["preset=cpu-encdec", f"tokenizer.kind={kind}", "tokenizer.num_levels=4"])
    assert find_twin(root, cfg, root / "x") is None


def test_the_extra_rqvae_row_keeps_the_papers_step_ratio_at_every_budget(tmp_path):
    def rows(*args):
        exp = parse_experiment_args(["tokenizer", f"root={tmp_path}", *args])
        return {r.name: exp.config(r, 0).tokenizer for r in exp.study.rows}

    cpu = rows("budget=cpu")
    assert cpu["rqvae_5x"].rqvae_steps == 5 * 3 * cpu["rkmeans"].steps_per_level == 4500
    assert cpu["rqvae"].rqvae_steps == 2000  # the preset's own RQ-VAE row is unchanged
    paper = rows("budget=paper")  # the paper's 15k: the same run as the rqvae row
    assert paper["rqvae_5x"] == paper["rqvae"]
    assert rows("budget=cpu", "tokenizer.num_levels=2")["rqvae_5x"].rqvae_steps == 5 * 2 * 300
