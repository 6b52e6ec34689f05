import json

import pytest

from sidrec.errors import ArtifactError, ConfigError
from sidrec.run import RunDir, check_split
from sidrec.tokenize.vocab import SIDVocab


def test_opens_every_artifact_of_a_finished_run(finished_run):
    run = RunDir(finished_run)
    assert run.config.to_dict() == json.loads((finished_run / "config.json").read_text())
    assert run.dataset.num_items == run.sid_table.num_items == len(run.embeddings)
    assert run.vocab == SIDVocab.for_table(run.sid_table, run.config.model.num_user_tokens)
    model, meta = run.model()
    assert not model.training and meta["num_items"] == run.sid_table.num_items
    assert run.metrics() == json.loads((finished_run / "metrics.json").read_text())
    assert len(run.samples("test")) == run.dataset.num_users


def test_overrides_reach_the_ranker_and_model_settings_are_refused(finished_run):
    run = RunDir(finished_run, ["decode.num_beams=17", "decode.exclude_history=true"])
    ranker = run.ranker()
    assert (ranker.num_beams, ranker.exclude_history, ranker.constrained) == (17, True, True)
    assert RunDir(finished_run, ["decode.constrained=false"]).ranker().trie is None
    with pytest.raises(ConfigError, match="model.d_model=64: .* was trained with"):
        RunDir(finished_run, ["model.d_model=64"]).model()


def test_a_directory_that_is_not_a_run_is_one_clear_error(tmp_path, finished_run):
    with pytest.raises(ArtifactError, match="not a run directory"):
        RunDir(tmp_path)
    with pytest.raises(ConfigError, match="split='train'"):
        RunDir(finished_run).samples("train")
    assert check_split("valid") == "valid"


def test_a_run_directory_written_before_the_plugins_declared_their_options_opens(finished_run, tmp_path, capsys):
    """Until each model plug-in declared its own options, config.json and model.pt held every model
    option (item_sid's in an encoder-decoder run, with the values a preset gave them when the arch
    was switched on the command line): such a run opens, evaluates and is reused as before."""
    import shutil

    import torch

    from sidrec.cli import main
    from conftest import TINY

    run_dir = shutil.copytree(finished_run, tmp_path / "old")
    other_archs = {"head": "catalog", "item_inputs": "codes,text,id", "text_sim": True}
    config = json.loads((run_dir / "config.json").read_text())
    config["model"].update(other_archs)
    (run_dir / "config.json").write_text(json.dumps(config))
    blob = torch.load(run_dir / "model.pt", weights_only=True)
    blob["sidrec"]["model_config"].update(other_archs)
    torch.save(blob, run_dir / "model.pt")

    run = RunDir(run_dir)
    assert run.config.to_dict() == json.loads((finished_run / "config.json").read_text())
    model, meta = run.model()
    assert meta["model_config"]["text_sim"] is True and not model.training
    assert main(["evaluate", f"run_dir={run_dir}"]) == 0
    assert main(["evaluate", f"run_dir={finished_run}"]) == 0
    metrics = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("recall@", "ndcg@"))]
    assert metrics and metrics[: len(metrics) // 2] == metrics[len(metrics) // 2:]  # the same model, the same metrics
    data = finished_run.parent / "data"
    assert main(["run", *TINY, f"data.path={data}", f"run_dir={run_dir}"]) == 0
    assert "finished run, reusing its metrics.json" in capsys.readouterr().out
