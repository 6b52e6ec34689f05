import json

import pytest

from sidrec.config import PRESETS, RunConfig, build_config, load_config
from sidrec.errors import ConfigError


def test_defaults_are_the_paper_settings():
    cfg = RunConfig()
    assert (cfg.tokenizer.num_levels, cfg.tokenizer.num_codes_per_level) == (3, 256)
    assert (cfg.model.num_layers, cfg.model.num_heads, cfg.model.d_model, cfg.model.d_ff) == (4, 6, 128, 1024)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.batch_size) == (5e-4, 1e-6, 256)
    assert (cfg.train.val_every, cfg.train.patience) == (100, 10)
    assert cfg.ks() == [5, 10]


def test_overrides_are_typed():
    cfg = build_config(["tokenizer.kind=rvq", "model.num_layers=2", "train.lr=0.01", "train.sliding_window=false"])
    assert cfg.tokenizer.kind == "rvq"
    assert cfg.model.num_layers == 2 and isinstance(cfg.model.num_layers, int)
    assert cfg.train.lr == 0.01
    assert cfg.train.sliding_window is False


def test_preset_then_command_line():
    cfg = build_config(["preset=tiny", "model.d_model=48"])
    assert cfg.tokenizer.num_codes_per_level == int(PRESETS["tiny"]["tokenizer.num_codes_per_level"])
    assert cfg.model.d_model == 48  # command line wins over the preset


@pytest.mark.parametrize(
    "arg, fragment",
    [
        ("model.nope=1", "unknown config key 'model.nope'"),
        ("model.num_layers=abc", "expected int"),
        ("train.sliding_window=maybe", "expected a boolean"),
        ("preset=huge", "unknown preset 'huge'"),
        ("model=3", "is a section"),
        ("no_equals_sign", "not key=value"),
    ],
)
def test_bad_overrides_name_the_key(arg, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        build_config([arg])


def test_config_round_trip(tmp_path):
    cfg = build_config(["preset=tiny", "seed=7"])
    (tmp_path / "config.json").write_text(cfg.to_json())
    assert load_config(tmp_path / "config.json") == cfg


def test_load_config_errors(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)
    bad.write_text(json.dumps({"model": {"layers": 3}}))
    with pytest.raises(ConfigError, match="unknown config key 'layers'"):
        load_config(bad)


def test_seeds_parse_as_count_or_list():
    from sidrec.config import parse_seeds

    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("1,5,9") == [1, 5, 9]
    with pytest.raises(ConfigError, match="seeds='x'"):
        parse_seeds("x")
    with pytest.raises(ConfigError, match="no seeds to run"):
        parse_seeds("0")
