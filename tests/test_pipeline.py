"""End to end on a tiny dataset: CLI, artifacts, re-evaluation, mismatched/corrupted artifacts, DDP."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from sidrec.model_file import check_meta, load_model_file
from sidrec.cli import main
from sidrec.errors import ArtifactError
from sidrec.tokenize.sid_table import SIDTable
from sidrec.tokenize.vocab import SIDVocab

from conftest import TINY, tiny_args


def test_run_writes_every_artifact_and_metrics(finished_run, capsys):
    for name in ["config.json", "items.jsonl", "sequences.npz", "dataset.json", "embeddings.npy", "embeddings.json",
                 "tokenizer.pt", "sid_table.npz", "sid_diagnostics.json", "model.pt", "metrics.json",
                 "checkpoints/best.ckpt", "logs/metrics.csv"]:
        assert (finished_run / name).exists(), name
    metrics = json.loads((finished_run / "metrics.json").read_text())
    for key in ["recall@5", "recall@10", "ndcg@5", "ndcg@10"]:
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["recall@10"] >= metrics["recall@5"] and metrics["steps"] == 12
    config = json.loads((finished_run / "config.json").read_text())
    assert config["train"]["max_steps"] == 12 and config["data"]["name"] == "tiny"
    # no temp files left behind by atomic writes
    assert not list(finished_run.glob(".*.tmp"))
    log = (finished_run / "run.log").read_text()
    assert "INFO sidrec: sidrec " in log and '"max_steps": 12' in log and "test metrics" in log


def test_evaluate_reproduces_the_run_and_accepts_decode_overrides(finished_run, capsys):
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert main(["evaluate", f"run_dir={finished_run}"]) == 0
    out = capsys.readouterr().out
    assert f"recall@10  {metrics['recall@10']:.4f}" in out
    assert main(["evaluate", f"run_dir={finished_run}", "decode.constrained=false", "stage=valid"]) == 0
    assert "valid metrics" in capsys.readouterr().out


def test_model_file_round_trip_gives_identical_logits(finished_run):
    model, meta = load_model_file(finished_run / "model.pt")
    again, _ = load_model_file(finished_run / "model.pt")
    ids = torch.randint(2, 10, (2, 6))
    mask = torch.ones_like(ids, dtype=torch.bool)
    dec = torch.ones(2, 1, dtype=torch.long)
    assert torch.equal(model(ids, mask, dec)[0], again(ids, mask, dec)[0])


def test_checkpoint_from_another_sid_table_is_refused(finished_run):
    _, meta = load_model_file(finished_run / "model.pt")
    table = SIDTable.load(finished_run / "sid_table.npz")
    vocab = SIDVocab(tuple(table.level_sizes), 0)
    check_meta(meta, table.sids, vocab, "model.pt")  # matching table: fine
    shuffled = table.sids[::-1].copy()
    with pytest.raises(ArtifactError, match="another SID table"):
        check_meta(meta, shuffled, vocab, "model.pt")
    with pytest.raises(ArtifactError, match="vocabulary"):
        check_meta(meta, table.sids, SIDVocab(tuple(table.level_sizes), 100), "model.pt")


def test_corrupted_model_file_is_one_clear_error(finished_run, tmp_path, capsys):
    broken = tmp_path / "broken_run"
    broken.mkdir()
    for f in finished_run.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.pt").write_bytes(b"not a checkpoint")
    assert main(["evaluate", f"run_dir={broken}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.pt" in err[0] and "corrupted" in err[0]


def copy_run(finished_run, to):
    """The finished run's files (and checkpoints) in a directory of its own, to break."""
    shutil.copytree(finished_run, to)
    return to


def test_a_model_file_with_an_unknown_config_key_is_one_clear_error(finished_run, tmp_path, capsys):
    run_dir = copy_run(finished_run, tmp_path / "run")
    blob = torch.load(run_dir / "model.pt", weights_only=True)
    blob["sidrec"]["model_config"]["future_knob"] = 1
    torch.save(blob, run_dir / "model.pt")
    assert main(["evaluate", f"run_dir={run_dir}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.pt: unknown model config key(s) ['future_knob']" in err[0], err


def test_a_corrupted_checkpoint_to_resume_from_is_one_clear_error(finished_run, tmp_path, capsys):
    run_dir = copy_run(finished_run, tmp_path / "run")
    (run_dir / "model.pt").unlink()
    (run_dir / "metrics.json").unlink()
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # cut short, as by a full disk
    assert main(["run", *TINY, f"data.path={finished_run.parent / 'data'}", f"run_dir={run_dir}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "last.ckpt: corrupted checkpoint" in err[0] and "delete it" in err[0], err
    assert last.exists()  # the run directory and its files stay


def test_a_new_run_directory_goes_when_the_command_fails(tmp_path):
    from sidrec.errors import DataError
    from sidrec.pipeline import new_run_dir

    with pytest.raises(DataError), new_run_dir(tmp_path / "runs" / "a") as run_dir:
        (run_dir / "config.json").write_text("{}")
        raise DataError("bad data")
    assert not (tmp_path / "runs").exists()  # with the parent made for it
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "other").mkdir()
    with pytest.raises(DataError), new_run_dir(tmp_path / "runs" / "a"):
        raise DataError("bad data")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["other"]
    for keep in ("checkpoints", None):  # training began (resumable), or a bug (kept to look at)
        with pytest.raises((DataError, KeyError)), new_run_dir(tmp_path / "b") as run_dir:
            if keep:
                (run_dir / keep).mkdir()
                raise DataError("after training began")
            raise KeyError("a bug")
        assert (tmp_path / "b").is_dir()
        shutil.rmtree(tmp_path / "b")


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # without run_dir the run directory goes under ./runs
    assert main(["run", "preset=tiny", "data.format=p5", f"data.path={tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]
    assert main(["run", "model.bogus=1"]) == 2
    assert "model.bogus" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2


def test_two_process_ddp_on_cpu_trains_disjoint_data(tiny_p5, tmp_path):
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "sidrec.cli", "run", *tiny_args(
           f"data.path={tiny_p5}", f"run_dir={run_dir}", "train.accelerator=cpu", "train.devices=2", "train.strategy=ddp",
           "train.record_sample_ids=true", "train.max_steps=4", "train.val_every=2", "train.batch_size=8")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    seen = [np.load(run_dir / f"train_sample_ids_rank{r}.npy") for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 4 * 8
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    model, meta = load_model_file(run_dir / "model.pt")
    assert meta["num_items"] == 40


def test_embeddings_with_wrong_row_count_are_refused(tiny_p5, tmp_path):
    from sidrec.config import build_config
    from sidrec.pipeline import embed, prepare

    cfg = build_config([*TINY, f"data.path={tiny_p5}", f"run_dir={tmp_path}"])
    dataset = prepare(cfg, tmp_path)
    np.save(tmp_path / "embeddings.npy", np.zeros((dataset.num_items - 1, 8), dtype=np.float32))
    with pytest.raises(ArtifactError, match=f"embeddings.npy: {dataset.num_items - 1} rows but the item table has 40"):
        embed(cfg, tmp_path, dataset)


def test_rerun_with_another_tokenizer_in_the_same_run_dir_is_refused(finished_run, capsys):
    import shutil

    run_dir = finished_run.parent / "reuse"
    shutil.copytree(finished_run, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    data = f"data.path={config['data']['path']}"
    assert main(["tokenize", *TINY, data, f"run_dir={run_dir}", "tokenizer.kind=rvq"]) == 2
    err = capsys.readouterr().err
    assert "tokenizer.kind='rkmeans', not 'rvq'" in err and str(run_dir) in err
    # the same config (and a different decode setting, which makes no artifact) is fine
    assert main(["tokenize", *TINY, data, f"run_dir={run_dir}", "decode.num_beams=20"]) == 0


def test_a_run_directory_written_before_the_tokenizers_declared_their_options_is_reused(
        finished_run, tmp_path, capsys, monkeypatch):
    """Its config.json and tokenizer.pt hold every tokenizer kind's options: `sidrec run` finds the
    finished run and `sidrec tokenize` its SIDs, fitting and training nothing."""
    import shutil

    from conftest import old_format
    from sidrec.tokenize.base import Tokenizer

    run_dir = tmp_path / "old"
    shutil.copytree(finished_run, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps(old_format(config, rqvae_steps=60, lr=0.01)))
    payload = torch.load(run_dir / "tokenizer.pt", weights_only=True)
    payload["config"] = old_format({"tokenizer": payload["config"]}, rqvae_steps=60, lr=0.01)["tokenizer"]
    torch.save(payload, run_dir / "tokenizer.pt")
    before = {name: (run_dir / name).read_bytes() for name in ("sid_table.npz", "model.pt", "metrics.json")}
    monkeypatch.setattr(Tokenizer, "fit", lambda *args, **kwargs: pytest.fail("the tokenizer was fitted again"))
    data = f"data.path={config['data']['path']}"
    capsys.readouterr()
    assert main(["run", *TINY, data, f"run_dir={run_dir}"]) == 0
    assert "finished run, reusing its metrics.json" in capsys.readouterr().out
    assert main(["tokenize", *TINY, data, f"run_dir={run_dir}"]) == 0
    assert all((run_dir / name).read_bytes() == content for name, content in before.items())


def test_help_version_and_malformed_values(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("sidrec ")
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "model.max_history=20" in out and "last N items of the history" in out and "config=" in out
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "max_queue=1024" in out and "api_key=''" in out and "decode.num_beams=10" in out
    for args, fragment in [(["run", "seeds=2", "parallel=x"], "parallel='x'"),
                           (["run", "eval.ks=5,a"], "eval.ks='5,a'"),
                           (["evaluate", "run_dir=r", "stage=train"], "stage='train'"),
                           (["serve", "run_dir=r", "max_queue=many"], "max_queue='many'")]:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_killed_training_resumes_to_the_result_of_an_uninterrupted_run(tiny_p5, tmp_path):
    """SIGKILL a real training process after its first validation, run the same command again: it
    resumes from checkpoints/last.ckpt (mid-epoch: 8 steps of a 10-batch epoch) and ends with the
    same best model and test metrics as a run that was never interrupted."""
    import signal
    import time

    args = [sys.executable, "-m", "sidrec.cli", "run", *tiny_args(
            f"data.path={tiny_p5}", "train.max_steps=120", "train.val_every=8", "train.batch_size=24",
            "train.lr_schedule=cosine", "train.warmup_steps=5", "model.dropout=0.2", "train.patience=100")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

    def run(run_dir):
        proc = subprocess.run(args + [f"run_dir={run_dir}"], capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout

    run(tmp_path / "whole")
    killed = tmp_path / "killed"
    proc = subprocess.Popen(args + [f"run_dir={killed}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "last.ckpt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.pt").exists(), "the run finished before it could be killed"
    out = run(killed)
    assert "resuming training from" in out

    whole, _ = load_model_file(tmp_path / "whole" / "model.pt")
    resumed, _ = load_model_file(killed / "model.pt")
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "whole", killed)]
    assert {k: v for k, v in metrics[0].items() if "@" in k or k in ("steps", "best_val")} == \
           {k: v for k, v in metrics[1].items() if "@" in k or k in ("steps", "best_val")}
    # A finished run is not trained or tested again
    assert "finished run, reusing its metrics.json" in run(killed)


def test_config_json_is_not_rewritten_to_disagree_with_a_trained_model(finished_run, capsys):
    before = (finished_run / "config.json").read_text()
    data = finished_run.parent / "data"
    assert main(["run", *TINY, f"data.path={data}", f"run_dir={finished_run}", "model.d_model=48"]) == 2
    assert "model.d_model=32, not 48" in capsys.readouterr().err
    assert (finished_run / "config.json").read_text() == before


@pytest.mark.parametrize("arch", ["encoder_decoder", "item_sid"])
def test_the_same_command_gives_the_same_metrics(tiny_p5, tmp_path, arch, capsys):
    """A budget in epochs decides what is trained: two runs of one command write the same metrics
    (bf16 autocast included where this CPU has it), whatever the machine's load."""
    from sidrec.train.fit import cpu_has_bf16

    precision = "bf16-mixed" if cpu_has_bf16() and arch == "encoder_decoder" else "32-true"
    args = ["run", *TINY, f"data.path={tiny_p5}", f"model.arch={arch}", "train.max_epochs=3",
            "train.val_every_epochs=1", f"train.precision={precision}", "train.loggers=csv"]
    for name in ("a", "b"):
        assert main(args + [f"run_dir={tmp_path / name}"]) == 0
    out = capsys.readouterr().out
    assert "budget: " in out and " epochs of " in out
    # output is not a terminal here: plain progress lines (every 5% of the budget, every validation)
    assert "training: step " in out and "validation: step " in out and "ETA" in out
    timing = {"train_minutes", "test_minutes", "minutes"}
    a, b = ({k: v for k, v in json.loads((tmp_path / n / "metrics.json").read_text()).items() if k not in timing}
            for n in ("a", "b"))
    assert a == b and a["stopped"] == "budget"
