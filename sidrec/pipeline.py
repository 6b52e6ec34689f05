"""The whole flow on one screen. Each stage reads one artifact of the run directory and writes one:

    prepare   -> items.jsonl, sequences.npz, dataset.json
    embed     -> embeddings.npy, embeddings.json
    tokenize  -> tokenizer.pt, sid_table.npz, sid_diagnostics.json
    train     -> checkpoints/, logs/, model.pt
    evaluate  -> metrics.json (and predictions.jsonl on request)

(``sidrec.run.STAGES`` declares the files and the config keys each depends on.) A stage whose
artifact already exists (for the same config) is reused, so any stage can be re-run alone by
deleting its artifact. A finished run is opened with ``sidrec.run.RunDir``;
``evaluate_run`` and ``predict_run`` (``sidrec evaluate`` / ``sidrec predict``) work on one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

import lightning as L
import numpy as np

from sidrec.config import RunConfig
from sidrec.data.dataset import Dataset
from sidrec.data.loaders import load_dataset
from sidrec.data.split import evaluation_samples, training_samples, training_windows
from sidrec.data.text import item_texts
from sidrec.errors import ArtifactError, ConfigError, SidrecError
from sidrec.devices import resolve_device
from sidrec.io import write_json, write_npy, write_text
from sidrec.layout import (CHECKPOINTS, CONFIG, DATASET_STATS, EMBEDDINGS, EMBEDDINGS_META, LAST_CHECKPOINT, METRICS,
                           MODEL, SEQUENCES, SID_DIAGNOSTICS, SID_TABLE, STAGES, TOKENIZER, changed_keys, load_metrics)
from sidrec.run import RunDir, build_ranker, load_dataset_files, save_dataset_files
from sidrec.tokenize.vocab import SIDVocab

RUN_DIR_ENV = "SIDREC_RUN_DIR"


def check_config(cfg: RunConfig) -> None:
    """Every setting checked before any work starts, so a bad one fails at once in one line rather
    than minutes later in the stage that reads it. ``build_config`` has checked the numeric ranges;
    here are the names each stage knows (formats, kinds, schedules) and the model, which its plug-in
    builds for a stand-in catalog (``sidrec.models.registry.check_model``)."""
    from sidrec.data.loaders import check_data_config
    from sidrec.data.text import check_text_settings
    from sidrec.encode import check_encoder_config
    from sidrec.models.registry import check_model
    from sidrec.tokenize import build_tokenizer
    from sidrec.tokenize.sid_table import check_dedup
    from sidrec.train.fit import check_train_config

    check_data_config(cfg.data)
    check_text_settings(cfg.data.text_template, cfg.data.missing_text)
    check_encoder_config(cfg.encoder)
    build_tokenizer(cfg.tokenizer)  # kind, device, RQ-VAE widths
    check_dedup(cfg.tokenizer.dedup)
    check_model(cfg.model, cfg.tokenizer.num_levels, cfg.tokenizer.num_codes_per_level)
    check_train_config(cfg)
    if cfg.decode.unknown_items not in ("error", "skip"):
        raise ConfigError(f"decode.unknown_items={cfg.decode.unknown_items!r}: expected error or skip")
    if cfg.decode.cold_start_fill not in ("model", "lookup"):
        raise ConfigError(f"decode.cold_start_fill={cfg.decode.cold_start_fill!r}: expected one of model, lookup")


def resolve_run_dir(cfg: RunConfig, create: bool = True) -> Path:
    """``run_dir`` (named ``runs/<dataset>-<timestamp>`` when not given), made unless ``create`` is off."""
    if not cfg.run_dir:
        # DDP re-launches this script per rank: the ranks must agree on the directory rank 0 chose.
        launched_rank = os.environ.get("LOCAL_RANK", "0") != "0" and RUN_DIR_ENV in os.environ
        cfg.run_dir = os.environ[RUN_DIR_ENV] if launched_rank else f"runs/{cfg.data.name}-{datetime.now():%Y%m%d-%H%M%S}"
    os.environ[RUN_DIR_ENV] = cfg.run_dir
    run_dir = Path(cfg.run_dir)
    if create:
        make_run_dir(run_dir)
    return run_dir


def make_run_dir(path: Path) -> None:
    """``path`` and its missing parents; a file in the way, no permission or a read-only disk is a
    one-line error."""
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"run_dir={str(path)!r}: {existing} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"run_dir={str(path)!r}: cannot make the run directory ({exc.strerror})") from None


@contextlib.contextmanager
def new_run_dir(path: Path) -> Iterator[Path]:
    """Makes ``path`` for the block; if the block fails with an error it reports (a bad setting,
    data or artifact: ``SidrecError``) and ``path`` did not exist before, the directory goes again,
    with the parents made for it, so a failed command leaves no run directory behind. A directory
    that existed stays, and so does one where training began (checkpoints/, to resume)."""
    made = [p for p in (path, *path.parents) if not p.exists()]
    make_run_dir(path)
    try:
        yield path
    except SidrecError:
        if made and not (path / CHECKPOINTS).exists():
            shutil.rmtree(path, ignore_errors=True)
            for parent in made[1:]:
                with contextlib.suppress(OSError):  # not empty: another run put something there
                    parent.rmdir()
        raise


def check_reusable(cfg: RunConfig, run_dir: Path) -> None:
    """Artifacts are reused by file name, so a run directory must not mix configs: every stage
    whose artifacts are there (``sidrec.run.STAGES``) must have been made with the same settings."""
    path = run_dir / CONFIG
    if not path.exists():
        return
    previous, current = json.loads(path.read_text()), cfg.to_dict()
    for stage in STAGES:
        if not stage.present(run_dir):
            continue
        for key, old, new in changed_keys(previous, current, stage)[:1]:
            raise ArtifactError(f"{run_dir}: holds artifacts made with {key}={old!r}, not {new!r}; "
                                "use a new run_dir (or delete the stale artifacts)")


def save_config(cfg: RunConfig, run_dir: Path) -> None:
    write_text(run_dir / CONFIG, cfg.to_json() + "\n")


def prepare(cfg: RunConfig, run_dir: Path) -> Dataset:
    if (run_dir / SEQUENCES).exists():
        return load_dataset_files(run_dir)
    dataset = load_dataset(cfg.data)
    save_dataset_files(dataset, run_dir)
    write_json(run_dir / DATASET_STATS, dataset.stats())
    return dataset


def embed(cfg: RunConfig, run_dir: Path, dataset: Dataset) -> np.ndarray:
    from sidrec.encode import load_or_embed

    path = run_dir / EMBEDDINGS
    if path.exists():
        embeddings = np.load(path)
        if embeddings.shape[0] != dataset.num_items:
            raise ArtifactError(f"{path}: {embeddings.shape[0]} rows but the item table has {dataset.num_items} items")
        return embeddings
    texts = item_texts(dataset.items, cfg.data.text_template, cfg.data.missing_text, cfg.data.max_text_chars,
                       source=f"dataset {dataset.name}")
    embeddings, meta = load_or_embed(dataset.content_hash(), cfg.data.text_template, texts, cfg.encoder)
    write_npy(path, embeddings.astype(np.float32))
    write_json(run_dir / EMBEDDINGS_META, meta)
    return embeddings


def tokenize(cfg: RunConfig, run_dir: Path, embeddings: np.ndarray, progress: bool = True):
    from sidrec.tokenize import build_tokenizer, load_tokenizer
    from sidrec.tokenize.diagnostics import format_diagnostics, neighbour_agreement, sid_diagnostics
    from sidrec.tokenize.sid_table import SIDTable

    t = cfg.tokenizer
    table_path = run_dir / SID_TABLE
    if table_path.exists():
        load_tokenizer(run_dir / TOKENIZER, expected_levels=t.num_levels, expected_codes=t.num_codes_per_level,
                       expected_dim=embeddings.shape[1])
        sid_table = SIDTable.load(table_path)
        if sid_table.num_items != embeddings.shape[0]:
            raise ArtifactError(f"{table_path}: {sid_table.num_items} items but embeddings have {embeddings.shape[0]} rows")
        return sid_table
    start = time.perf_counter()
    tokenizer = build_tokenizer(t).fit(embeddings, seed=cfg.seed, progress=progress)
    codes = tokenizer.encode(embeddings)
    seconds = time.perf_counter() - start
    sid_table = SIDTable.build(codes, t.num_codes_per_level, t.dedup, reserve=t.dedup_reserve)
    diagnostics = sid_diagnostics(codes, t.num_codes_per_level, tokenizer.reconstruction_error(embeddings))
    diagnostics["fit_encode_seconds"] = round(seconds, 2)
    diagnostics["tokenizer"] = t.kind
    diagnostics["unique_sids_after_dedup"] = int(len(np.unique(sid_table.sids, axis=0)))
    diagnostics["neighbour_agreement"] = neighbour_agreement(codes, embeddings)
    tokenizer.save(run_dir / TOKENIZER)
    sid_table.save(table_path)
    write_json(run_dir / SID_DIAGNOSTICS, diagnostics)
    print(format_diagnostics(diagnostics, title=f"SID diagnostics ({t.kind}, {t.num_levels}x{t.num_codes_per_level})"))
    return sid_table


def run(cfg: RunConfig, stages: str = "all") -> dict:
    """config -> seed -> data -> split -> embed -> tokenize -> model -> train -> evaluate."""
    from sidrec.model_file import check_meta, load_model_file, model_meta, save_model_file, source_length
    from sidrec.evaluate.evaluation import evaluate
    from sidrec.models import build_model, get_model
    from sidrec.train.fit import fit, validation_subset

    check_config(cfg)
    run_dir = resolve_run_dir(cfg)
    check_reusable(cfg, run_dir)
    print(cfg.to_json())
    if stages == "all" and cfg.eval.test and (run_dir / METRICS).exists() and (run_dir / MODEL).exists():
        print(f"{run_dir}: finished run, reusing its metrics.json (`sidrec evaluate` tests it again)")
        return {"run_dir": str(run_dir), **load_metrics(run_dir)}
    save_config(cfg, run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dataset = prepare(cfg, run_dir)
    print(f"dataset: {dataset.stats()}")
    h = cfg.model.max_history
    if get_model(cfg.model.arch).trains_on_windows(cfg.model):  # every position a target
        train = training_windows(dataset, h)
    else:
        train = training_samples(dataset, h, cfg.train.sliding_window)
    valid = validation_subset(evaluation_samples(dataset, h, "valid"), cfg.train.val_max_users, cfg.seed)
    test = evaluation_samples(dataset, h, "test")
    embeddings = embed(cfg, run_dir, dataset)
    sid_table = tokenize(cfg, run_dir, embeddings)
    if stages == "tokenize":
        return {"run_dir": str(run_dir)}

    vocab = SIDVocab.for_table(sid_table, cfg.model.user_tokens())
    ranker = build_ranker(cfg.decode, sid_table, vocab, item_text=embeddings)
    model_path = run_dir / MODEL
    if model_path.exists():  # trained before (e.g. killed while testing): test it, do not train again
        print(f"{model_path}: trained model found, skipping training")
        model, meta = load_model_file(model_path)
        check_meta(meta, sid_table.sids, vocab, str(model_path))
    else:
        model = build_model(cfg.model, vocab.size, source_length(cfg.model, vocab), vocab.num_levels,
                            level_sizes=vocab.level_sizes, text_dim=embeddings.shape[1],
                            num_items=sid_table.num_items)
        meta = model_meta(cfg.model, vocab, sid_table.sids, text_dim=embeddings.shape[1])
        start = time.perf_counter()
        result = fit(cfg, run_dir, model, ranker, train, valid, meta, resume_from=run_dir / LAST_CHECKPOINT)
        if not result.is_global_zero:  # DDP: rank 0 tests and writes the artifacts
            return {}
        meta["training"] = {"best_val": result.best_score, "steps": result.steps, "stopped": result.stopped,
                            "train_samples": len(train),
                            "train_minutes": round((time.perf_counter() - start) / 60, 2)}
        save_model_file(model_path, model, meta)
    training = meta.get("training", {})  # absent in model files of older versions
    if not cfg.eval.test:
        return {"run_dir": str(run_dir), **training}
    device = resolve_device(cfg.train.accelerator, "train.accelerator")
    start = time.perf_counter()
    metrics = evaluate(model.to(device), ranker.to(device), test, cfg.ks(), cfg.decode.batch_size, cfg.seed, desc="test")
    test_minutes = round((time.perf_counter() - start) / 60, 2)
    metrics.update(**training, seed=cfg.seed, test_minutes=test_minutes,
                   minutes=round(training.get("train_minutes", 0.0) + test_minutes, 2))  # train + test
    write_json(run_dir / METRICS, metrics)
    return {"run_dir": str(run_dir), **metrics}


def evaluate_run(run: RunDir, split: str = "test", predictions: str | Path | None = None,
                 progress: bool = True) -> dict:
    """A finished run's model on its ``valid`` or ``test`` split (on the CPU); ``predictions``: also
    write predictions.jsonl there. Writes no metrics.json (``sidrec evaluate`` only prints)."""
    from sidrec.evaluate.evaluation import evaluate
    from sidrec.evaluate.predictions import PredictionWriter

    cfg, samples = run.config, run.samples(split)
    model, _ = run.model()
    ranker = run.ranker()
    args = (model, ranker, samples, cfg.ks(), cfg.decode.batch_size, cfg.seed, progress, split)
    if predictions is None:
        return evaluate(*args)
    item_ids = [item["item_id"] for item in run.dataset.items]
    with PredictionWriter(predictions, item_ids, run.dataset.user_ids) as out:
        return evaluate(*args, predictions=out)


def predict_run(run: RunDir, out: str | Path, histories_file: str | Path, k: int = 10,
                progress: bool = True) -> int:
    """Recommendations for the users of ``histories_file`` (``read_histories_file``) -> predictions.jsonl;
    returns the number of users. Histories go through ``Recommender`` (item ids, unknown items, user
    tokens, empty-history fallback as in serving), in batches of ``decode.batch_size``."""
    from tqdm.auto import tqdm

    from sidrec.evaluate.predictions import PredictionWriter, read_histories_file
    from sidrec.recommender import Recommender

    user_ids, histories = read_histories_file(histories_file)
    rec = Recommender.from_run(run)
    size = run.config.decode.batch_size
    with PredictionWriter(out) as writer:
        for start in tqdm(range(0, len(histories), size), desc="predicting", disable=not progress, leave=False):
            users = user_ids[start : start + size]
            for user, recs in zip(users, rec.recommend_many(histories[start : start + size], k, users)):
                writer.write_user(user, [r.item_id for r in recs], [r.score for r in recs])
    return len(histories)


def format_metrics(metrics: dict, title: str = "test metrics") -> str:
    keys = [k for k in metrics if "@" in k]
    width = max(len(k) for k in keys) if keys else 10
    lines = [title, "-" * (width + 12)]
    lines += [f"{k:<{width}}  {metrics[k]:.4f}" for k in keys]
    return "\n".join(lines)
