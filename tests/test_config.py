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
        ("decode.precision=fp16", "decode.precision='fp16': expected fp32 or bf16"),
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
    with pytest.raises(ConfigError, match="unknown config key 'model.layers'"):
        load_config(bad)


def test_seeds_parse_as_count_or_list():
    from sidrec.config import parse_seeds

    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("1,5,9") == [1, 5, 9]
    with pytest.raises(ConfigError, match="seeds='x'"):
        parse_seeds("x")
    with pytest.raises(ConfigError, match="no seeds to run"):
        parse_seeds("0")


def test_config_file_is_the_base_and_the_command_line_wins(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("preset: tiny\nmodel:\n  d_model: 48\n  num_layers: 3\ntrain:\n  lr: 1\n  sliding_window: false\n")
    cfg = build_config([f"config={path}", "model.num_layers=2"])
    assert cfg.preset == "tiny" and cfg.train.max_steps == int(PRESETS["tiny"]["train.max_steps"])
    assert cfg.model.d_model == 48  # the file wins over its preset
    assert cfg.model.num_layers == 2  # the command line wins over the file
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.train.sliding_window is False
    json_path = tmp_path / "exp.json"
    json_path.write_text(json.dumps({"model": {"d_model": 48}}))
    assert build_config([f"config={json_path}"]).model.d_model == 48


@pytest.mark.parametrize("text, fragment", [
    ("model:\n  num_layers: '4'\n", "exp.yaml: model.num_layers: expected int, got str '4'"),
    ("train:\n  lr: true\n", "train.lr: expected float, got bool True"),
    ("train:\n  sliding_window: 1\n", "expected bool, got int 1"),
    ("data:\n  path: 3\n", "data.path: expected str"),
    ("model: 3\n", "model: expected a mapping"),
    ("- a\n- b\n", "the top level: expected a mapping of config keys, got list"),
    ("model:\n  layers: 3\n", "unknown config key 'model.layers'"),
    ("model: [\n", "not valid YAML at line"),
    ("preset: 3\n", "preset: expected a string"),
], ids=["str for int", "bool for float", "int for bool", "int for str", "section not a mapping", "a list",
        "unknown key", "bad YAML", "preset not a string"])
def test_config_files_are_type_checked(tmp_path, text, fragment):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        build_config([f"config={path}"])
    assert fragment in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="config file not found"):
        build_config([f"config={tmp_path / 'nope.yaml'}"])


def test_paths_expand_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = build_config(["data.path=~/amazon", "run_dir=~/runs/a", "encoder.model=all-MiniLM-L6-v2"])
    assert cfg.data.path == str(tmp_path / "amazon") and cfg.run_dir == str(tmp_path / "runs/a")
    assert cfg.encoder.model == "all-MiniLM-L6-v2"
    (tmp_path / "c.yaml").write_text("model:\n  d_model: 40\n")
    assert build_config(["config=~/c.yaml"]).model.d_model == 40


def test_a_resolved_base_is_not_reset_by_its_preset():
    base = build_config(["preset=tiny", "model.max_history=8"])
    again = build_config(["decode.num_beams=20"], base=base)
    assert again.model.max_history == 8 and again.decode.num_beams == 20


def test_malformed_eval_ks_is_one_line():
    with pytest.raises(ConfigError, match="eval.ks='5,x'"):
        build_config(["eval.ks=5,x"])


@pytest.mark.parametrize("arg, fragment", [
    ("model.num_layers=-1", "model.num_layers=-1: expected an integer >= 1"),
    ("model.dropout=1.5", "model.dropout=1.5: expected a number in [0, 1)"),
    ("train.lr=0", "train.lr=0.0: expected a number > 0"),
    ("train.max_steps=0", "train.max_steps=0"),
    ("tokenizer.num_codes_per_level=1", "tokenizer.num_codes_per_level=1: expected an integer >= 2"),
    ("decode.num_beams=0", "decode.num_beams=0"),
    ("seed=-1", "seed=-1"),
])
def test_numeric_settings_out_of_range_fail_when_the_config_is_built(arg, fragment):
    with pytest.raises(ConfigError) as info:
        build_config([arg])
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_every_preset_is_within_the_limits():
    for preset in PRESETS:
        build_config([f"preset={preset}"])


def test_a_command_line_names_each_key_once_and_composed_overrides_keep_the_last():
    from sidrec.config import merge_overrides, refuse_repeated_keys

    with pytest.raises(ConfigError, match=r"train.lr is given twice \(train.lr='1e-3' and train.lr='2e-3'\)"):
        refuse_repeated_keys(["train.lr=1e-3", "model.d_model=48", "train.lr=2e-3"])
    refuse_repeated_keys(["tokenizer", "train.lr=1e-3", "tokenizer"])  # a study name is no key
    assert merge_overrides(["preset=tiny", "run_dir=a", "seed=1", "run_dir=a/seed-0"]) == \
        ["preset=tiny", "run_dir=a/seed-0", "seed=1"]
