"""Run a study: every (row, seed) is its own run directory, finished runs are skipped, and stages
that rows have in common (dataset, embeddings, SIDs) are computed once and hard-linked (or copied)
into each run directory from a shared folder, where the pipeline then finds and reuses them. A row
whose resolved config equals a finished run of any study under the same root (e.g. the default
RK-Means encoder-decoder, a row of most studies) adopts that run instead of training it again; a row
that differs from a finished run only in how it is tested (``decode``, ``eval``: the decoding study's
free-form row) adopts its model and tests it again.

    runs/experiments/<study>-<dataset>/experiment.json        what was asked (rebuilds the report)
    runs/experiments/<study>-<dataset>/<row>/seed-<s>/        a normal run directory (metrics.json)
    runs/experiments/<study>-<dataset>/baselines/{popularity,lookup}/  the baselines' runs (report rows)
    runs/experiments/<study>-<dataset>/baselines/sasrec/seed-<s>/    SASRec per seed, summary.json
    runs/experiments/<study>-<dataset>/report.{md,csv,png}
    runs/experiments/_shared/{data,emb,sid}-<key>/            artifacts shared across rows and studies
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sidrec.config import RunConfig, coerce_override, build_config, merge_overrides, parse_overrides, parse_seeds
from sidrec.errors import ConfigError, DataError
from sidrec.experiments.studies import OWN_STUDIES, STUDIES, Study, get_study
from sidrec.io import write_json
from sidrec.layout import (BASELINES, CONFIG, ERROR_LOG, EXPERIMENT, METRICS, RUN_LOG, STAGES, TIMING, stage_keys,
                           stage_values)

# budget -> config preset; the studies vary the paper's encoder-decoder, so budget=cpu is its CPU preset
BUDGETS = {"tiny": "tiny", "cpu": "cpu-encdec", "paper": "paper"}
TINY_CODES_DIVISOR = 32  # budget=tiny: W=256 runs as 8 (the tiny preset's W), 512 as 16, 128 as 4


@dataclass
class Experiment:
    study: Study
    dataset: str  # data.name and the directory name
    paper_dataset: str  # dataset whose paper numbers the report shows
    seeds: list[int]
    budget: str
    overrides: list[str]  # applied to every run before the row's own
    directory: Path
    shared: Path
    timing_users: int = 0  # decoding study: users timed (0 = all test users)
    hold_out_share: float = 0.1  # cold-start study: share of the items held out of training
    warm_users: int = 2000  # cold-start study: warm test users sampled for context (0 = none)
    parallel: int = 1  # runs at once (each in its own process)
    gpus: list[str] = dataclasses.field(default_factory=list)  # CUDA_VISIBLE_DEVICES per process, round-robin
    sasrec: bool = True  # train the SASRec baseline at the study's seeds (sasrec=false: popularity and lookup only)
    rows: list[str] = dataclasses.field(default_factory=list)  # rows=a,b: train only these; the report has every row

    def run_dir(self, row: str, seed: int) -> Path:
        return self.directory / row / f"seed-{seed}"

    def config(self, row, seed: int) -> RunConfig:
        return build_config(self.overrides + row.overrides + [f"seed={seed}", f"run_dir={self.run_dir(row.name, seed)}"])

    def describe(self) -> dict:
        return {"study": self.study.name, "table": self.study.table, "title": self.study.title, "note": self.study.note,
                "dataset": self.dataset, "paper_dataset": self.paper_dataset, "budget": self.budget,
                "seeds": self.seeds, "overrides": self.overrides, "timing": self.study.timing,
                "default_row": self.study.default_row, "kind": self.study.kind,
                **({"hold_out_share": self.hold_out_share, "warm_users": self.warm_users}
                   if self.study.kind == "cold_start" else {}),
                "rows": [dataclasses.asdict(r) for r in self.study.rows]}


COLD_START_OPTIONS = ("share", "reserve", "warm_users")


def _share(key: str, value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 < share < 1:
        raise ConfigError(f"{key}={value!r}: expected a share between 0 and 1")
    return share


def parse_experiment_args(args: list[str]) -> Experiment:
    """``<study> dataset=beauty seeds=5 budget=cpu [root=...] [encoders=a,b] [paper_dataset=...] [key=value ...]``;
    the cold-start study also takes ``share=`` (held out), ``reserve=`` (slots kept for added items)
    and ``warm_users=``."""
    if not args or "=" in args[0]:
        raise ConfigError(f"sidrec experiment needs a study first: sidrec experiment <study> dataset=<name> ... "
                          f"(studies: {', '.join(STUDIES + OWN_STUDIES)})")
    name, options, overrides = args[0], {}, []
    own = {"dataset", "seeds", "budget", "root", "encoders", "paper_dataset", "timing_users", "parallel", "gpus", "sasrec",
           "rows", *COLD_START_OPTIONS}
    for key, value in parse_overrides(args[1:]):
        if key in own:
            options[key] = value
        else:
            overrides.append(f"{key}={value}")
    budget = options.get("budget", "cpu")
    if budget not in BUDGETS:
        raise ConfigError(f"budget={budget!r}: expected one of {', '.join(BUDGETS)}")
    dataset = options.get("dataset", "beauty")
    seeds = parse_seeds(options.get("seeds", "3"))
    given = {k for k, _ in parse_overrides(overrides)}
    data = [f"data.name={dataset}"]
    if "data.format" not in given:
        if dataset != "beauty":
            raise ConfigError(f"dataset={dataset} is not bundled: give its files, e.g. data.format=p5 "
                              f"data.path=/path/to/{dataset} (formats: docs/datasets.md)")
        data.append("data.format=bundled")
    study = get_study(name, encoders=options.get("encoders", "all-MiniLM-L6-v2"),
                      codes_divisor=TINY_CODES_DIVISOR if budget == "tiny" else 1,
                      reserved_share=_share("reserve", options.get("reserve", "0.2")),
                      rkmeans_steps=_rkmeans_steps(BUDGETS[budget], overrides))
    given_cold_start = [k for k in COLD_START_OPTIONS if k in options]
    if given_cold_start and study.kind != "cold_start":
        raise ConfigError(f"{given_cold_start[0]}= is an option of the cold_start study, not of {name}")
    root = Path(options.get("root", "runs/experiments"))
    preset = (study.presets or BUDGETS)[budget]
    experiment = Experiment(study, dataset, options.get("paper_dataset", dataset), seeds, budget,
                            [f"preset={preset}", *study.base_overrides, *data, *overrides], root / f"{name}-{dataset}",
                            root / "_shared", int(options.get("timing_users", "0")),
                            hold_out_share=_share("share", options.get("share", "0.1")),
                            warm_users=_warm_users(options.get("warm_users", "2000")))
    gpus = [g.strip() for g in options.get("gpus", "").split(",") if g.strip()]
    experiment.gpus = gpus
    experiment.parallel = int(options.get("parallel", str(max(len(gpus), 1))))
    experiment.sasrec = coerce_override(options.get("sasrec", "true"), bool, "sasrec")
    experiment.rows = [r.strip() for r in options.get("rows", "").split(",") if r.strip()]
    names = [row.name for row in study.rows]
    unknown = [r for r in experiment.rows if r not in names]
    if unknown:
        raise ConfigError(f"rows={options['rows']}: {unknown[0]!r} is not a row of {name} (rows: {', '.join(names)})")
    if experiment.parallel < 1:
        raise ConfigError(f"parallel={experiment.parallel}: expected >= 1")
    if experiment.rows and study.kind == "cold_start":
        raise ConfigError("rows=: the cold_start study's rows are ways of ranking the same runs; it trains them all")
    if experiment.parallel > 1 and study.kind == "cold_start":
        raise ConfigError("the cold_start study runs its seeds one after another: parallel= and gpus= are not "
                          "supported (train.accelerator= picks the device)")
    build_config(experiment.overrides)  # fail now on a bad key, not after the first row
    return experiment


def _rkmeans_steps(preset: str, overrides: list[str]) -> int:
    """RK-Means training steps over all levels under ``preset`` and the study's tokenizer overrides."""
    keys = ("tokenizer.steps_per_level", "tokenizer.num_levels")
    cfg = build_config([f"preset={preset}", "tokenizer.kind=rkmeans", *(o for o in overrides if o.startswith(keys))])
    return cfg.tokenizer.steps_per_level * cfg.tokenizer.num_levels


def _warm_users(value: str) -> int:
    if not value.isdigit():
        raise ConfigError(f"warm_users={value!r}: expected a number of users >= 0")
    return int(value)


# --- shared artifacts -------------------------------------------------------------------------
def shared_stages(cfg: RunConfig) -> list[tuple[str, tuple[str, ...]]]:
    """(shared folder name, files) per shared stage (``sidrec.run.stage_keys``): the folder's name
    holds a hash of every setting the stage's output depends on."""
    return [(folder, stage.files) for stage, folder in stage_keys(cfg.to_dict())]


def _link(src: Path, dst: Path) -> None:
    """Hard link (artifacts are replaced atomically, never modified in place), else copy; atomic."""
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _link_run_files(twin: Path, run_dir: Path, own: tuple[str, ...]) -> None:
    """Links a finished run's files into ``run_dir``, except those the adopting run writes itself."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for path in twin.iterdir():
        if path.is_file() and not path.is_symlink() and path.name not in own:
            _link(path, run_dir / path.name)


def _has_files(directory: Path, files: tuple[str, ...]) -> bool:
    return all((directory / f).exists() for f in files)


def _link_stage(src: Path, dst: Path, files: tuple[str, ...]) -> bool:
    """Links a stage's files from ``src`` to ``dst`` when ``src`` has them all and ``dst`` does not."""
    if not _has_files(src, files) or _has_files(dst, files):
        return False
    dst.mkdir(parents=True, exist_ok=True)
    for f in files:
        _link(src / f, dst / f)
    return True


def link_shared(shared: Path, cfg: RunConfig, run_dir: Path) -> list[str]:
    """Bring every complete shared stage into ``run_dir``; returns the stages reused."""
    return [folder.split("-")[0] for folder, files in shared_stages(cfg) if _link_stage(shared / folder, run_dir, files)]


def shared_inputs_published(shared: Path, cfg: RunConfig) -> bool:
    """Whether the shared stages of ``cfg`` that do not depend on the seed (dataset, embeddings) are
    in ``shared``; the seeded ones (SIDs) differ per run, so runs in parallel build their own."""
    return all(_has_files(shared / folder, stage.files)
               for stage, folder in stage_keys(cfg.to_dict()) if "seed" not in stage.keys)


def publish_shared(shared: Path, cfg: RunConfig, run_dir: Path) -> None:
    for folder, files in shared_stages(cfg):
        _link_stage(run_dir, shared / folder, files)


# --- finished twins ---------------------------------------------------------------------------
def _comparable(cfg: RunConfig) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if k != "run_dir"}


def _trained_as(config: dict) -> dict:
    """What a run's model depends on (``sidrec.layout.STAGES``: data, embeddings, SIDs, model and
    training settings), not how it is tested (``decode``, ``eval``)."""
    return {stage.name: stage_values(config, stage) for stage in STAGES}


def find_twin(root: Path, cfg: RunConfig, run_dir: Path) -> Path | None:
    """A finished run under ``root`` (any study) whose model was trained as ``cfg``'s would be (its
    test settings may differ), or None; one with the very same config first."""
    from sidrec.config import load_config

    want, trained = _comparable(cfg), _trained_as(cfg.to_dict())
    same_model = None
    for metrics in sorted(root.glob(f"*/*/seed-*/{METRICS}")):
        other = metrics.parent
        if other.resolve() == run_dir.resolve():
            continue
        try:
            config = load_config(other / CONFIG)
        except ConfigError:  # written by another version: not comparable
            continue
        if _comparable(config) == want:
            return other
        if same_model is None and _trained_as(config.to_dict()) == trained:
            same_model = other
    return same_model


def adopt_twin(twin: Path, cfg: RunConfig, run_dir: Path) -> bool:
    """Links the twin's artifacts into ``run_dir``; metrics.json (written last) names the twin. A
    twin tested with other settings (e.g. the decoding study's free-form row) has its model tested
    again with ``cfg``'s (``sidrec.pipeline.run`` finds model.pt and skips training); returns
    whether it was."""
    from sidrec.config import load_config
    from sidrec.layout import load_metrics
    from sidrec.pipeline import run, save_config

    _link_run_files(twin, run_dir, (CONFIG, METRICS, TIMING))
    save_config(cfg, run_dir)
    retest = _comparable(load_config(twin / CONFIG)) != _comparable(cfg)
    metrics = {k: v for k, v in run(cfg).items() if k != "run_dir"} if retest else load_metrics(twin)
    write_json(run_dir / METRICS, {**metrics, "reused_from": str(twin)})
    return retest


# --- decoding time ----------------------------------------------------------------------------
def time_decoding(run_dir: Path, max_users: int = 0) -> dict:
    """Re-run the test-set beam search of a finished run and time it (model and trie already built)."""
    import numpy as np
    import torch

    from sidrec.evaluate.metrics import compute_metrics
    from sidrec.evaluate.evaluation import rank_samples
    from sidrec.devices import resolve_device
    from sidrec.run import RunDir

    run = RunDir(run_dir)
    cfg = run.config
    model, _ = run.model()
    samples = run.samples("test")
    if 0 < max_users < len(samples):
        samples = samples.subset(np.arange(max_users))
    device = resolve_device(cfg.train.accelerator, "train.accelerator")
    use_cuda = device.type == "cuda"
    start = time.perf_counter()
    ranker = run.ranker(device)
    setup = time.perf_counter() - start
    model = model.to(device)
    ks = cfg.ks()
    if use_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    ranked = rank_samples(model, ranker, samples, max(ks), cfg.decode.batch_size, cfg.seed, progress=False)
    if use_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"decode_ms_per_user": 1000 * seconds / max(len(samples), 1), "decode_seconds": round(seconds, 3),
            "users": len(samples), "trie_build_seconds": round(setup, 3), "device": str(device),
            "threads": torch.get_num_threads(), "num_beams": cfg.decode.num_beams,
            "batch_size": cfg.decode.batch_size, "constrained": cfg.decode.constrained,
            "timed_metrics": compute_metrics(ranked, samples.targets, ks=ks)}


# --- the loop ---------------------------------------------------------------------------------
def _finished(exp: Experiment, run_dir: Path) -> bool:
    return (run_dir / METRICS).exists() and (not exp.study.timing or (run_dir / TIMING).exists())


def _after_training(exp: Experiment, run_dir: Path, counts: dict) -> None:
    if exp.study.timing and not (run_dir / TIMING).exists():
        write_json(run_dir / TIMING, time_decoding(run_dir, exp.timing_users))
        counts["timed"] += 1


def record_failure(run_dir: Path, where: str, counts: dict, text: str) -> None:
    """A run that crashed: its traceback in ``error.log``, counted; the study goes on."""
    counts["failed"] += 1
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ERROR_LOG).write_text(text)
    print(f"{where}: FAILED, see {run_dir / ERROR_LOG}", flush=True)


@contextlib.contextmanager
def failures_recorded(exp: Experiment, run_dir: Path, where: str, counts: dict):
    """Around one run of a study: bad data stops the study (naming it), a bad setting or an
    interrupt stops it as is, any other failure is recorded (``record_failure``) and the study goes
    on: one failed run must not lose the others; the report shows what finished."""
    try:
        yield
    except DataError as exc:
        raise DataError(f"study {exp.study.name} on {exp.dataset}: {exc}") from None
    except (KeyboardInterrupt, ConfigError):
        raise
    except Exception:
        record_failure(run_dir, where, counts, traceback.format_exc())


def _run_in_process(exp: Experiment, cfg: RunConfig, run_dir: Path, where: str, counts: dict) -> None:
    from sidrec.pipeline import run

    with failures_recorded(exp, run_dir, where, counts):
        if not (run_dir / METRICS).exists():
            start = time.perf_counter()
            run(cfg)
            counts["trained"] += 1
            publish_shared(exp.shared, cfg, run_dir)
            print(f"{where}: done in {time.perf_counter() - start:.0f} s", flush=True)
        _after_training(exp, run_dir, counts)


@dataclass
class PoolJob:
    """One ``sidrec`` command in a study's subprocess pool (a row's run or a SASRec seed):
    ``start(slot)`` prepares it and returns its environment, ``end(status)`` takes its exit status."""
    args: list[str]
    log: Path
    start: Callable[[int], dict | None]
    end: Callable[[int], None]


def run_pool_jobs(jobs: list[PoolJob], parallel: int) -> None:
    from sidrec.subprocesses import run_pool

    run_pool(jobs, parallel, lambda j: j.args, lambda j: j.log, lambda j, status: j.end(status),
             lambda j, slot: j.start(slot))


def row_pool_job(exp: Experiment, job: tuple, counts: dict) -> PoolJob:
    """A study row's run in its own process, with its own GPU (``gpus=0,1``)."""
    row, seed, cfg, run_dir, where = job
    started = []

    def start(slot: int) -> dict:
        reused = link_shared(exp.shared, cfg, run_dir)  # what finished runs published meanwhile
        env = dict(os.environ)
        if exp.gpus:
            env["CUDA_VISIBLE_DEVICES"] = exp.gpus[slot % len(exp.gpus)]
        started.append(time.perf_counter())
        print(f"{where}: started in {run_dir}" + (f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if exp.gpus else "")
              + (f" (reusing {', '.join(reused)})" if reused else ""), flush=True)
        return env

    def end(status: int) -> None:
        if status == 0 and (run_dir / METRICS).exists():
            counts["trained"] += 1
            publish_shared(exp.shared, cfg, run_dir)
            print(f"{where}: done in {time.perf_counter() - started[0]:.0f} s", flush=True)
            try:
                _after_training(exp, run_dir, counts)
            except Exception:
                record_failure(run_dir, where, counts, traceback.format_exc())
        else:
            record_failure(run_dir, where, counts, f"exit {status}; output in {run_dir / RUN_LOG}\n")

    # later overrides win, as in Experiment.config
    args = ["run", *merge_overrides([*exp.overrides, *row.overrides, f"seed={seed}", f"run_dir={run_dir}"])]
    return PoolJob(args, run_dir / RUN_LOG, start, end)


def _run_in_subprocesses(exp: Experiment, jobs: list, counts: dict, first: list[PoolJob] = ()) -> None:
    """``parallel`` runs at once in their own processes: ``first`` (the SASRec seeds, the longest
    jobs, so that no core idles at the end while one of them finishes alone), then the rows' runs."""
    for job in [j for j in jobs if (j[3] / METRICS).exists()]:  # trained before, only the timing is missing
        _run_in_process(exp, *job[2:], counts)
    run_pool_jobs([*first, *(row_pool_job(exp, j, counts) for j in jobs if not (j[3] / METRICS).exists())],
                  exp.parallel)


def baseline_overrides(exp: Experiment) -> list[str]:
    """The study's settings a baseline shares: the data, its split and the metrics."""
    return [o for o in exp.overrides if o.startswith(("data.", "eval.ks="))]


def run_baselines(exp: Experiment) -> None:
    """Popularity and the text lookup (``sidrec popularity`` / ``sidrec lookup``) on the study's
    data, split and metrics, into ``<study>/baselines/<name>`` for the report. Deterministic and
    seconds long, so run once (not per seed) and skipped when finished; a failure is reported, not
    fatal to the study. Then SASRec (``run_sasrec_baseline``) unless ``sasrec=false``."""
    from sidrec.baselines import run_lookup, run_popularity
    from sidrec.config import build_lookup_config, build_popularity_config
    from sidrec.errors import SidrecError

    common = baseline_overrides(exp)
    encoder = [o for o in exp.overrides if o.startswith("encoder.")]
    for name, build, run, extra in (("popularity", build_popularity_config, run_popularity, []),
                                    ("lookup", build_lookup_config, run_lookup, encoder)):
        run_dir = exp.directory / BASELINES / name
        if (run_dir / METRICS).exists():
            continue
        try:
            run(build(common + extra + [f"run_dir={run_dir}"]), progress=False)
        except SidrecError as exc:
            print(f"warning: baseline {name} failed, left out of the report: {exc}")
    if exp.sasrec:
        run_sasrec_baseline(exp, common)


def sasrec_overrides(exp: Experiment, common: list[str]) -> list[str]:
    """SASRec as its own docs run it (its preset for the study's budget, early stopping on validation
    NDCG@10), without the wall-clock cap, so its result does not depend on the machine's load."""
    from sidrec.config import SASREC_PRESETS

    preset = [f"preset={exp.budget}"] if exp.budget in SASREC_PRESETS else []
    return [*preset, *common, "sasrec.max_minutes=0"]


def sasrec_dir(exp: Experiment) -> Path:
    """Where the study's SASRec baseline lives: ``seed-<s>`` run directories and ``summary.json``."""
    return exp.directory / BASELINES / "sasrec"


def sasrec_seeds_to_train(exp: Experiment, common: list[str]) -> list[int]:
    """The study's seeds without a finished SASRec run, after adopting the finished run of another
    study under the same root wherever one has the same config (as the study rows are)."""
    from sidrec.config import build_sasrec_config

    base, overrides, todo = sasrec_dir(exp), sasrec_overrides(exp, common), []
    for seed in exp.seeds:
        cfg = build_sasrec_config([*overrides, f"seed={seed}", f"run_dir={base / f'seed-{seed}'}"])
        run_dir = Path(cfg.run_dir)
        if (run_dir / METRICS).exists():
            continue
        twin = find_baseline_twin(exp.directory.parent, cfg, run_dir)
        if twin is not None:
            adopt_baseline_twin(twin, cfg, run_dir)
            print(f"baseline sasrec seed={seed}: same config as the finished run {twin}, reused", flush=True)
        else:
            todo.append(seed)
    return todo


def sasrec_pool_job(exp: Experiment, common: list[str], seed: int) -> PoolJob:
    """A SASRec seed in its own process; a failure is a warning (``run_sasrec_baseline`` tries it again)."""
    run_dir = sasrec_dir(exp) / f"seed-{seed}"

    def start(slot: int) -> None:
        print(f"baseline sasrec seed={seed}: started in {run_dir}", flush=True)

    def end(status: int) -> None:
        if status != 0:
            print(f"warning: baseline sasrec seed={seed} failed (exit {status}); output in {run_dir / RUN_LOG}",
                  flush=True)

    return PoolJob(["sasrec", *sasrec_overrides(exp, common), f"seed={seed}", f"run_dir={run_dir}"],
                   run_dir / RUN_LOG, start, end)


def run_sasrec_baseline(exp: Experiment, common: list[str]) -> None:
    """SASRec at the study's seeds in ``<study>/baselines/sasrec/seed-<s>`` and their mean ± std in
    its ``summary.json`` (what ``sidrec sasrec seeds=... run_dir=<study>/baselines/sasrec`` writes).
    Seeds trained by another study under the same root are adopted; ``parallel`` seeds train at
    once (with ``parallel`` > 1 the study's pool has usually trained them already, next to its rows)."""
    from sidrec.baselines.common import run_seeds
    from sidrec.baselines.sasrec import run_sasrec
    from sidrec.config import build_sasrec_config
    from sidrec.errors import SidrecError

    base = sasrec_dir(exp)
    try:
        todo = sasrec_seeds_to_train(exp, common)
        if exp.parallel > 1 and len(todo) > 1:
            run_pool_jobs([sasrec_pool_job(exp, common, seed) for seed in todo], exp.parallel)
        if todo:
            print(f"baseline sasrec: seeds {', '.join(map(str, todo))} in {base}", flush=True)
        run_seeds("SASRec", build_sasrec_config, lambda cfg: run_sasrec(cfg, progress=False),
                  sasrec_overrides(exp, common), exp.seeds, base)
    except SidrecError as exc:
        print(f"warning: baseline sasrec failed, left out of the report: {exc}")


def find_baseline_twin(root: Path, cfg, run_dir: Path) -> Path | None:
    """A finished SASRec baseline of another study under ``root`` with the same config (but run_dir)."""
    import json

    want = {k: v for k, v in cfg.to_dict().items() if k != "run_dir"}
    for metrics in sorted(root.glob(f"*/{BASELINES}/{run_dir.parent.name}/seed-*/{METRICS}")):
        other = metrics.parent
        if other.resolve() == run_dir.resolve():
            continue
        config = json.loads((other / CONFIG).read_text())
        if {k: v for k, v in config.items() if k != "run_dir"} == want:
            return other
    return None


def adopt_baseline_twin(twin: Path, cfg, run_dir: Path) -> None:
    from sidrec.layout import load_metrics
    from sidrec.pipeline import save_config

    _link_run_files(twin, run_dir, (CONFIG, METRICS))
    save_config(cfg, run_dir)
    write_json(run_dir / METRICS, {**load_metrics(twin), "reused_from": str(twin)})


def run_experiment(exp: Experiment, progress: bool = True) -> dict:
    """Run every unfinished (row, seed), then write the report. Returns counts and report paths.

    With ``parallel > 1`` the first run goes alone when it computes the dataset and embeddings every
    other run then shares (not when a finished run published them), the rest run ``parallel`` at a
    time in their own processes, in one pool with the SASRec seeds still to train."""
    if exp.study.kind == "cold_start":
        from sidrec.experiments.cold_start_study import run_cold_start_study

        return run_cold_start_study(exp)
    from sidrec.experiments.report import write_report

    exp.directory.mkdir(parents=True, exist_ok=True)
    write_json(exp.directory / EXPERIMENT, exp.describe())
    counts = {"trained": 0, "reused": 0, "skipped": 0, "failed": 0, "timed": 0}
    rows = [row for row in exp.study.rows if not exp.rows or row.name in exp.rows]
    total = len(rows) * len(exp.seeds)
    jobs = []
    for row in rows:
        for seed in exp.seeds:
            run_dir = exp.run_dir(row.name, seed)
            done = len(jobs) + counts["skipped"] + counts["reused"]
            where = f"[{done + 1}/{total}] {exp.study.name} row={row.name} seed={seed}"
            cfg = exp.config(row, seed)
            if _finished(exp, run_dir):
                counts["skipped"] += 1
                print(f"{where}: finished, skipped ({run_dir})")
            elif (not (run_dir / METRICS).exists()
                  and (twin := find_twin(exp.directory.parent, cfg, run_dir)) is not None):
                retested = adopt_twin(twin, cfg, run_dir)
                counts["reused"] += 1
                print(f"{where}: " + (f"the model of the finished run {twin}, tested with this row's settings"
                                      if retested else f"same config as the finished run {twin}, reused"), flush=True)
                _run_in_process(exp, cfg, run_dir, where, counts)  # only the timing, if the study needs it
            else:
                jobs.append((row, seed, cfg, run_dir, where))
    alone = 1 if jobs and not shared_inputs_published(exp.shared, jobs[0][2]) else 0
    for i, (row, seed, cfg, run_dir, where) in enumerate(jobs):
        if exp.parallel > 1 and i >= alone:
            sasrec = []
            if exp.sasrec:
                common = baseline_overrides(exp)
                sasrec = [sasrec_pool_job(exp, common, s) for s in sasrec_seeds_to_train(exp, common)]
            _run_in_subprocesses(exp, jobs[i:], counts, first=sasrec)
            break
        if not (run_dir / METRICS).exists():
            reused = link_shared(exp.shared, cfg, run_dir)
            print(f"{where}: running in {run_dir}" + (f" (reusing {', '.join(reused)})" if reused else ""), flush=True)
        _run_in_process(exp, cfg, run_dir, where, counts)
    run_baselines(exp)
    paths = write_report(exp.directory)
    return {**counts, **{k: str(v) for k, v in paths.items()}}
