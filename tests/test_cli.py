"""The command line (sidrec/cli.py): every setting checked before any work, one ``error:`` line per
refusal, and no run directory left behind by a failed command."""

import pytest

# Lightning (which the commands import) binds a console log handler to the stderr of its import:
# let that be the session's, not the stream of a test's capsys, closed when the test ends.
import sidrec.pipeline  # noqa: F401
from sidrec.cli import main

from conftest import TINY


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), captured.err
    return err[0]


@pytest.mark.parametrize("args, fragment", [
    (["model.num_layers=-1"], "model.num_layers=-1: expected an integer >= 1"),
    (["model.arch=transformerz"], "model.arch='transformerz'"),
    (["model.arch=item_sid", "model.num_heads=5"], "divisible"),
    (["train.lr_schedule=step"], "train.lr_schedule='step'"),
    (["train.select_metric=recall@20"], "train.select_metric='recall@20'"),
    (["tokenizer.kind=kmeans"], "tokenizer.kind='kmeans'"),
    (["tokenizer.dedup=none"], "tokenizer.dedup 'none'"),
    (["encoder.kind=onnx"], "encoder.kind='onnx'"),
    (["decode.unknown_items=drop"], "decode.unknown_items='drop'"),
], ids=lambda value: value[-1] if isinstance(value, list) else None)
def test_a_bad_setting_fails_at_once_in_one_line(tiny_p5, tmp_path, monkeypatch, capsys, args, fragment):
    """Before any output or work: no run directory, nothing on stdout (not even the preset note)."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", *TINY, f"data.path={tiny_p5}", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert fragment in captured.err
    assert not (tmp_path / "runs").exists()


def test_a_repeated_key_is_refused(tiny_p5, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = [*TINY, f"data.path={tiny_p5}", f"run_dir={run_dir}", "train.lr=1e-3", "train.lr=2e-3"]
    assert main(["prepare", *args]) == 2
    assert "train.lr is given twice (train.lr='1e-3' and train.lr='2e-3')" in one_error_line(capsys)
    assert not run_dir.exists()
    assert main(["evaluate", f"run_dir={run_dir}", "stage=valid", "stage=test"]) == 2
    assert "stage is given twice" in one_error_line(capsys)


def test_the_refusal_of_a_conflicting_run_directory_is_the_first_line(tiny_p5, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = [*TINY, f"data.path={tiny_p5}", f"run_dir={run_dir}"]
    assert main(["prepare", *args]) == 0
    capsys.readouterr()
    assert main(["run", *args, "data.min_interactions=7"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # the preset note and the config come after the checks
    assert captured.err.count("\n") == 1 and "data.min_interactions=5, not 7" in captured.err
    assert main(["prepare", *args, "data.min_interactions=7"]) == 2  # prepare refuses as well
    assert "data.min_interactions=5, not 7" in one_error_line(capsys)


def test_a_failed_command_leaves_no_new_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "sequences.txt").write_text("1 1 2 3\n2 2 3 1\n")
    (bad / "items.jsonl").write_text('{"item_id": 1}\n{"item_id": 2}\n')
    data = ["preset=tiny", "data.format=p5", f"data.path={bad}"]
    for command in ("prepare", "run", "tokenize"):
        assert main([command, *data, "run_dir=new/run"]) == 2
        assert "unknown item '3'" in one_error_line(capsys)
        assert not (tmp_path / "new").exists(), command
    assert main(["prepare", *data]) == 2  # the default run directory, under ./runs
    one_error_line(capsys)
    assert not (tmp_path / "runs").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(["prepare", *data, f"run_dir={kept}"]) == 2
    one_error_line(capsys)
    assert (kept / "notes.txt").read_text() == "mine"
    assert main(["popularity", *data[1:], "run_dir=new/popularity"]) == 2  # the baselines too
    one_error_line(capsys)
    assert not (tmp_path / "new").exists()


def test_a_run_dir_under_a_file_is_one_line(tiny_p5, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for run_dir in (tmp_path / "file" / "run", tmp_path / "file"):
        assert main(["prepare", *TINY, f"data.path={tiny_p5}", f"run_dir={run_dir}"]) == 2
        assert f"{tmp_path / 'file'} is a file, not a directory" in one_error_line(capsys)


def test_an_unwritable_output_file_is_refused_before_the_work(finished_run, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for out, fragment in [(tmp_path / "file" / "p.jsonl", "is a file, not a directory"),
                          (tmp_path, "is a directory"), ("", "expected a file name")]:
        assert main(["predict", f"run_dir={finished_run}", f"out={out}"]) == 2
        line = one_error_line(capsys)
        assert line.startswith(f"error: out={str(out)!r}: ") and fragment in line
    assert main(["evaluate", f"run_dir={finished_run}", f"predictions={tmp_path / 'file' / 'p.jsonl'}"]) == 2
    assert "is a file, not a directory" in one_error_line(capsys)
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_seeds_in_subprocesses_give_each_run_its_own_seed_and_directory(monkeypatch, tmp_path):
    """The per-seed command lines name seed and run_dir once, although the user's has them too."""
    import subprocess

    import sidrec.cli as cli

    commands = []

    class Done:
        returncode = 1

        def __init__(self, cmd, **kwargs):
            commands.append(cmd)

        def wait(self):
            return 1

    monkeypatch.setattr(subprocess, "Popen", Done)
    cli._run_seeds_in_subprocesses(["preset=tiny", "seed=5", f"run_dir={tmp_path}"], [0, 1], tmp_path, 2)
    for seed, cmd in enumerate(commands):
        keys = [arg.split("=")[0] for arg in cmd[4:]]
        assert sorted(keys) == ["preset", "run_dir", "seed"]
        assert f"seed={seed}" in cmd and f"run_dir={tmp_path / f'seed-{seed}'}" in cmd
