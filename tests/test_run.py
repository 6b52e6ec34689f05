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
