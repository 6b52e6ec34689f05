import dataclasses
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


# --- the model plug-ins' options: model.<option> of model.arch's plug-in ---------------------------
def test_a_plugins_options_are_model_keys_whatever_their_order(tmp_path):
    from sidrec.models.item_sid.plugin import ItemSIDOptions

    for args in (["model.arch=item_sid", "model.head=levels"], ["model.head=levels", "model.arch=item_sid"]):
        cfg = build_config(args)
        assert type(cfg.model) is ItemSIDOptions and cfg.model.head == "levels"
    # a config file's options are those of the arch the run ends with (here the command line's)
    (tmp_path / "c.json").write_text(json.dumps({"model": {"head": "levels"}}))
    cfg = build_config([f"config={tmp_path / 'c.json'}", "model.arch=item_sid"])
    assert cfg.model.head == "levels"
    # every resolved option is written, and reads back
    saved = cfg.to_dict()["model"]
    assert list(saved) == [f.name for f in dataclasses.fields(ItemSIDOptions)] and saved["text_sim"] is False
    (tmp_path / "config.json").write_text(cfg.to_json())
    assert load_config(tmp_path / "config.json") == cfg


def test_a_preset_keeps_what_the_final_arch_has_and_skips_the_rest():
    from sidrec.models.encoder_decoder.plugin import EncoderDecoderOptions

    cfg = build_config(["preset=cpu", "model.arch=encoder_decoder"])  # item_sid's preset, other arch
    assert type(cfg.model) is EncoderDecoderOptions and (cfg.model.d_model, cfg.model.max_history) == (64, 50)
    assert "head" not in cfg.to_dict()["model"]
    cfg = build_config(["preset=tiny", "model.arch=item_sid"])  # tiny sets the SID generators' model.d_kv
    assert cfg.model.arch == "item_sid" and cfg.model.d_model == 32 and not hasattr(cfg.model, "d_kv")
    # encoder_decoder <-> decoder_only keep the options they share
    assert build_config(["preset=cpu-encdec", "model.arch=decoder_only"]).model.positions == "from_end"


@pytest.mark.parametrize("args, fragment", [
    (["model.head=levels"], "model.head is an option of model.arch=item_sid, not of model.arch=encoder_decoder"),
    (["preset=cpu", "model.d_kv=16"], "model.d_kv is an option of model.arch=encoder_decoder | decoder_only, "
                                      "not of model.arch=item_sid"),
    (["model.arch=item_sid", "model.num_user_tokens=4"], "model.num_user_tokens is an option of"),
    (["model.nope=1"], "unknown config key 'model.nope' (model.arch=encoder_decoder has: arch, "),
    (["model.arch=rnn"], "model.arch='rnn': expected one of encoder_decoder, decoder_only, item_sid"),
    (["model.moe_top_k=0"], "model.moe_top_k=0: expected an integer >= 1"),  # a plug-in's LIMITS
])
def test_an_option_the_arch_lacks_is_one_error_line_naming_key_and_arch(args, fragment, capsys, tmp_path):
    assert_one_error_line(args, fragment, capsys, tmp_path)


def test_an_old_config_json_holding_every_plugins_options_loads(tmp_path):
    """Until the plug-ins declared their own options, config.json held all of them, each arch
    reading its own (an arch switched after a preset kept the preset's values of the others): they
    are skipped. A key no plug-in has is still refused."""
    old_flat = {"arch": "encoder_decoder", "num_layers": 2, "num_heads": 4, "d_model": 128, "d_kv": 32,
                "d_ff": 512, "dropout": 0.1, "num_experts": 0, "moe_top_k": 2, "moe_aux_weight": 0.01,
                "num_user_tokens": 0, "max_history": 20, "positions": "from_end", "objective": "next_item",
                "head": "catalog", "item_inputs": "codes,text,id", "text_sim": True}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": old_flat}))
    cfg = load_config(path)
    assert cfg.to_dict()["model"] == {k: v for k, v in old_flat.items() if k not in ("head", "item_inputs", "text_sim")}
    path.write_text(json.dumps({"model": {**old_flat, "arch": "item_sid", "head": "levels"}}))
    cfg = load_config(path)
    assert (cfg.model.arch, cfg.model.head, cfg.model.text_sim, cfg.model.num_layers) == ("item_sid", "levels", True, 2)
    assert build_config([f"config={path}"]).model == cfg.model  # the same as a config= file
    path.write_text(json.dumps({"model": {**old_flat, "future_knob": 1}}))
    with pytest.raises(ConfigError, match="unknown config key 'model.future_knob'"):
        load_config(path)


def test_a_new_plugin_brings_its_options_without_an_edit_of_the_config(toy_plugin, tmp_path):
    """A throwaway plug-in (tests/conftest.py) registered as model.arch=toy: its own option is a
    model.* key on the command line and in files, range-checked, saved, and listed by --help."""
    from sidrec.cli import command_help

    cfg = build_config(["model.arch=toy", "model.toy_width=7", "model.d_model=16"])
    assert (type(cfg.model).__name__, cfg.model.toy_width, cfg.model.d_model) == ("ToyOptions", 7, 16)
    assert cfg.to_dict()["model"]["toy_width"] == 7
    (tmp_path / "config.json").write_text(cfg.to_json())
    assert load_config(tmp_path / "config.json") == cfg
    with pytest.raises(ConfigError, match=r"model.toy_width=0: expected an integer >= 1"):
        build_config(["model.arch=toy", "model.toy_width=0"])
    with pytest.raises(ConfigError, match="model.toy_width is an option of model.arch=toy, not of model.arch=item_sid"):
        build_config(["preset=cpu", "model.toy_width=2"])
    assert "model.d_kv" not in cfg.to_json() and build_config(["preset=tiny", "model.arch=toy"]).model.d_model == 32
    assert "  model.toy_width=3" in command_help("run")
    assert "(toy) the toy's own option: the width of its one layer" in command_help("run")


def test_help_lists_every_plugins_options_with_their_archs():
    from sidrec.cli import command_help

    lines = {line.split()[0].split("=")[0]: line for line in command_help("run").splitlines() if line.startswith("  model.")}
    assert {"model.arch", "model.d_model", "model.head", "model.d_kv", "model.positions"} <= set(lines)
    assert "model.head=catalog" in lines["model.head"] and "(item_sid) catalog: one softmax" in lines["model.head"]
    assert "(encoder_decoder, decoder_only) per-head dimension" in lines["model.d_kv"]


# --- the tokenizers' options: tokenizer.<option> of tokenizer.kind's class --------------------------
KIND_STEPS = {"rkmeans": "steps_per_level", "rvq": "steps_per_level", "rqvae": "rqvae_steps"}


@pytest.mark.parametrize("preset", ["cpu", "cpu-encdec", "tiny"])
@pytest.mark.parametrize("kind", ["rkmeans", "rvq", "rqvae"])
def test_a_preset_sets_each_kinds_own_options_and_skips_the_others(kind, preset):
    for args in ([f"preset={preset}", f"tokenizer.kind={kind}"], [f"tokenizer.kind={kind}", f"preset={preset}"]):
        saved = build_config(args).to_dict()["tokenizer"]
        steps = KIND_STEPS[kind]
        assert saved["kind"] == kind and saved[steps] == int(PRESETS[preset][f"tokenizer.{steps}"])
        assert {"steps_per_level", "rqvae_steps"} & set(saved) == {KIND_STEPS[kind]}
    assert ("lr" in saved) == (kind != "rkmeans")  # RK-Means has no learning rate


@pytest.mark.parametrize("args, fragment", [
    (["tokenizer.whiten=false"],
     "tokenizer.whiten is an option of tokenizer.kind=rqvae, not of tokenizer.kind=rkmeans"),
    (["tokenizer.steps_per_level=5", "tokenizer.kind=rqvae"],
     "tokenizer.steps_per_level is an option of tokenizer.kind=rkmeans | rvq, not of tokenizer.kind=rqvae"),
    (["tokenizer.lr=0.1"], "tokenizer.lr is an option of tokenizer.kind=rvq | rqvae, not of tokenizer.kind=rkmeans"),
    (["tokenizer.kind=rvq", "tokenizer.lr=0"], "tokenizer.lr=0.0: expected a number > 0"),  # the kind's LIMITS
    (["tokenizer.kind=rqvae", "tokenizer.rqvae_steps=0"], "tokenizer.rqvae_steps=0: expected an integer >= 1"),
    (["tokenizer.nope=1"], "unknown config key 'tokenizer.nope' (tokenizer.kind=rkmeans has: kind, "),
    (["tokenizer.kind=kmeans"], "tokenizer.kind='kmeans': expected one of rkmeans, rvq, rqvae"),
])
def test_an_option_the_kind_lacks_is_one_error_line_naming_key_and_kind(args, fragment, capsys, tmp_path):
    assert_one_error_line(args, fragment, capsys, tmp_path)


def assert_one_error_line(args, fragment, capsys, tmp_path):
    """``build_config(args)`` raises one line with ``fragment``; ``sidrec run`` prints just that
    ``error:`` line and leaves no run directory."""
    from sidrec.cli import main

    with pytest.raises(ConfigError) as info:
        build_config(args)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert main(["run", *args, f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and fragment in err[0], err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["rkmeans", "rvq", "rqvae"])
def test_an_old_config_json_holding_every_tokenizers_options_loads_as_the_new_one(kind, tmp_path):
    """Until the tokenizers declared their own options, config.json held all of them (a preset set
    them whatever the kind): the other kinds' are skipped, so an old run's config and a new one of
    the same settings are equal, and their SID stage's settings too (nothing is refitted or refused)."""
    from conftest import old_format

    from sidrec.layout import STAGES, changed_keys

    new = build_config(["preset=cpu-encdec", f"tokenizer.kind={kind}", "seed=3"])
    old = old_format(new.to_dict(), steps_per_level=300, rqvae_steps=2000)
    assert set(old["tokenizer"]) > set(new.to_dict()["tokenizer"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    assert load_config(path) == new and load_config(path).to_dict() == new.to_dict()
    assert build_config([f"config={path}"]) == new  # the same as a config= file
    assert all(not changed_keys(old, new.to_dict(), stage) for stage in STAGES)
    path.write_text(json.dumps({"tokenizer": {**old["tokenizer"], "future_knob": 1}}))
    with pytest.raises(ConfigError, match="unknown config key 'tokenizer.future_knob'"):
        load_config(path)


def test_a_new_tokenizer_brings_its_options_without_an_edit_of_the_config(toy_tokenizer, tmp_path):
    """A throwaway tokenizer (tests/conftest.py) registered as tokenizer.kind=toy: its own option is a
    tokenizer.* key on the command line and in files, range-checked, saved, and listed by --help."""
    from sidrec.cli import command_help

    cfg = build_config(["tokenizer.toy_scale=2.5", "tokenizer.kind=toy", "tokenizer.num_levels=2"])
    assert (type(cfg.tokenizer).__name__, cfg.tokenizer.toy_scale, cfg.tokenizer.num_levels) == (
        "ToyTokenizerOptions", 2.5, 2)
    assert cfg.to_dict()["tokenizer"]["toy_scale"] == 2.5 and "steps_per_level" not in cfg.to_json()
    (tmp_path / "config.json").write_text(cfg.to_json())
    assert load_config(tmp_path / "config.json") == cfg
    with pytest.raises(ConfigError, match=r"tokenizer.toy_scale=0.0: expected a number > 0"):
        build_config(["tokenizer.kind=toy", "tokenizer.toy_scale=0"])
    with pytest.raises(ConfigError, match="tokenizer.toy_scale is an option of tokenizer.kind=toy, not of "
                                          "tokenizer.kind=rvq"):
        build_config(["tokenizer.kind=rvq", "tokenizer.toy_scale=2"])
    tiny = build_config(["preset=tiny", "tokenizer.kind=toy"]).tokenizer  # tiny's steps skipped, W kept
    assert tiny.num_codes_per_level == 8 and not hasattr(tiny, "steps_per_level")
    assert "  tokenizer.toy_scale=4.0" in command_help("run")
    assert "(toy) the toy's own option" in command_help("run")


def test_help_lists_every_tokenizers_options_with_their_kinds():
    from sidrec.cli import command_help

    lines = {line.split()[0].split("=")[0]: line for line in command_help("run").splitlines()
             if line.startswith("  tokenizer.")}
    assert {"tokenizer.kind", "tokenizer.num_levels", "tokenizer.steps_per_level", "tokenizer.whiten"} <= set(lines)
    assert "(rkmeans, rvq) layer-wise training steps" in lines["tokenizer.steps_per_level"]
    assert "(rvq, rqvae)" in lines["tokenizer.lr"] and "(rqvae) input whitening" in lines["tokenizer.whiten"]
