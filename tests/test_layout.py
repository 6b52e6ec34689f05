"""The run-directory contract: which config keys each stage's artifacts depend on."""

from sidrec.config import build_config
from sidrec.layout import STAGES, changed_keys, stage_keys, stage_values

STAGE = {s.name: s for s in STAGES}


def keys_of(overrides: list[str]) -> dict[str, str]:
    return {stage.name: key for stage, key in stage_keys(build_config(["preset=tiny", *overrides]).to_dict())}


def test_a_setting_changes_its_stage_and_every_later_one_only():
    base = keys_of([])
    text = keys_of(["data.max_text_chars=100"])  # what is embedded, not what is loaded
    assert text["data"] == base["data"] and text["emb"] != base["emb"] and text["sid"] != base["sid"]
    tok = keys_of(["tokenizer.num_codes_per_level=16"])
    assert tok["data"] == base["data"] and tok["emb"] == base["emb"] and tok["sid"] != base["sid"]
    assert keys_of(["seed=7"])["sid"] != base["sid"]  # the tokenizer's fit is seeded
    assert keys_of(["data.min_interactions=3"])["data"] != base["data"]


def test_where_and_how_fast_do_not_change_an_artifact():
    base = keys_of([])
    assert keys_of(["encoder.batch_size=7", "encoder.device=cpu", "tokenizer.batch_size=99",
                    "tokenizer.device=cpu", "train.lr=1"]) == base


def test_changed_keys_names_each_difference_of_a_stage():
    old = build_config(["preset=tiny"]).to_dict()
    new = build_config(["preset=tiny", "model.d_model=48", "train.loggers=csv,tensorboard", "train.lr=0.1"]).to_dict()
    assert changed_keys(old, new, STAGE["model"]) == [("model.d_model", 32, 48), ("train.lr", old["train"]["lr"], 0.1)]
    assert changed_keys(old, new, STAGE["sid"]) == []


def test_a_config_without_a_section_contributes_nothing_for_it():
    """The baselines' configs lack model and tokenizer sections."""
    assert stage_values({"data": {"name": "x"}}, STAGE["sid"]) == {}
    assert stage_values({"data": {"name": "x"}, "seed": 3}, STAGE["sid"]) == {"seed": 3}
