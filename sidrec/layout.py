"""The one declaration of what a run directory holds (and a study directory, and a cold-start
catalog generation): every artifact's file name, and per pipeline stage the files it writes and
the config keys its output depends on. Nothing else in the package names an artifact file
(``tests/test_architecture.py`` checks it); ``sidrec.run.RunDir`` opens a run through these names,
and the pipeline's reuse check (``changed_keys``), the experiments' shared stages (``stage_keys``)
and cold start's catalog files (``CATALOG_FILES``) are derived from ``STAGES``.

Plain data, no heavy imports: the CLI, reports and serving read it cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from sidrec.errors import ArtifactError

# --- a run directory's files ----------------------------------------------------------------------
CONFIG = "config.json"  # the resolved config: RunDir.config
ITEMS = "items.jsonl"  # the item table (one JSON object per item): RunDir.dataset
SEQUENCES = "sequences.npz"  # users' item sequences: RunDir.dataset
DATASET_STATS = "dataset.json"
EMBEDDINGS = "embeddings.npy"  # (num_items, dim) item text embeddings: RunDir.embeddings
EMBEDDINGS_META = "embeddings.json"
TOKENIZER = "tokenizer.pt"  # the fitted tokenizer (sidrec.tokenize.load_tokenizer)
SID_TABLE = "sid_table.npz"  # item -> SID (+ codebook codes): RunDir.sid_table, RunDir.vocab
SID_DIAGNOSTICS = "sid_diagnostics.json"
CHECKPOINTS = "checkpoints"  # Lightning's best.ckpt and last.ckpt
LAST_CHECKPOINT = f"{CHECKPOINTS}/last.ckpt"  # written at every validation; a re-run resumes from it
LOGS = "logs"  # CSVLogger folder: logs/metrics.csv (one row per logged step / validation)
TENSORBOARD = "tensorboard"
TRAIN_LOG = f"{LOGS}/metrics.csv"
TRAIN_SAMPLE_IDS = "train_sample_ids_rank{}.npy"  # train.record_sample_ids (a DDP check): per rank
SASREC_LOG = "log.csv"  # the SASRec baseline's per-epoch log
MODEL = "model.pt"  # weights + what checks them: RunDir.model()
METRICS = "metrics.json"  # test metrics: RunDir.metrics()
RUN_LOG = "run.log"  # the run's output (``sidrec run`` tees it; a study's subprocess writes it)
TIMING = "timing.json"  # a study's decoding time of a finished run
ERROR_LOG = "error.log"  # a study's failed run: the traceback
SUMMARY = "summary.json"  # several seeds of one command: mean ± std
PAGE_MAP = "page_map.npz"  # the page's 2-D map of the item embeddings (sidrec.page), made on first view

# Cold start (sidrec.cold_start): the catalog files live in generation folders behind one pointer.
CATALOG_FILES = (ITEMS, EMBEDDINGS, SID_TABLE)
CATALOG_POINTER = "catalog"
CATALOG_GENERATION = "catalog.gen-{}"
CATALOG_MANIFEST = "manifest.json"
CATALOG_LOCK = ".catalog.lock"
CATALOG_TEMP = ".catalog.tmp-"  # prefix of a generation being written

# A study directory (sidrec.experiments): runs/experiments/<study>-<dataset>/...
EXPERIMENT = "experiment.json"
BASELINES = "baselines"
REPORT = {"markdown": "report.md", "csv": "report.csv", "plot": "report.png"}

# The cold-start study (sidrec.experiments.cold_start_study): per seed, under <study>/seed-<s>/
COLD_START_DATA = "data"  # the training data without the held-out items (P5) and NEW_ITEMS
COLD_START_RUN = "run"  # an ordinary run directory trained on that data; the held-out items added
NEW_ITEMS = "new_items.jsonl"  # the held-out items, added after training
COLD_START_RESULTS = "cold_start.json"  # per user group and row: the metrics of the seed

# The findings page (sidrec.experiments.findings): the paper's claims against every study's report.
FINDINGS_PAGE = {"markdown": "findings.md", "csv": "findings.csv"}


@dataclasses.dataclass(frozen=True)
class Stage:
    """A pipeline stage: the files it writes and the config keys its output depends on (besides
    the stages before it). A key names a whole section (``encoder``) or one setting
    (``data.text_template``); ``ignored`` are settings of those sections that say where or how fast
    the artifact is made, not what it is, so they may differ when it is reused."""

    name: str
    files: tuple[str, ...]
    keys: tuple[str, ...]
    ignored: tuple[str, ...] = ()
    present_if: tuple[str, ...] = ()  # files whose existence means the stage has (begun to) run; default: files

    def present(self, run_dir: Path) -> bool:
        return any((run_dir / f).exists() for f in (self.present_if or self.files))


STAGES = (
    Stage("data", (ITEMS, SEQUENCES, DATASET_STATS), ("data.format", "data.path", "data.name", "data.min_interactions"),
          present_if=(SEQUENCES,)),
    Stage("emb", (EMBEDDINGS, EMBEDDINGS_META),
          ("encoder", "data.text_template", "data.missing_text", "data.max_text_chars"),
          ignored=("encoder.device", "encoder.batch_size", "encoder.cache_dir"), present_if=(EMBEDDINGS,)),
    Stage("sid", (TOKENIZER, SID_TABLE, SID_DIAGNOSTICS), ("tokenizer", "seed"),  # the tokenizer's fit is seeded
          ignored=("tokenizer.device", "tokenizer.batch_size"), present_if=(SID_TABLE,)),
    # config.json must keep describing the trained (or resumable) model
    Stage("model", (MODEL,), ("model", "train"),
          ignored=("train.accelerator", "train.devices", "train.strategy", "train.num_workers", "train.loggers"),
          present_if=(MODEL, LAST_CHECKPOINT)),
)
SHARED_STAGES = STAGES[:3]  # the stages rows of a study have in common (sidrec.experiments.runner)


def stage_values(config: dict, stage: Stage) -> dict[str, object]:
    """``{"section.key": value}`` of the settings ``stage`` depends on, in a config's ``to_dict()``
    form; sections a config does not have (the baselines' configs lack some) contribute nothing."""
    out = {}
    for key in stage.keys:
        section, _, name = key.partition(".")
        value = config.get(section)
        if name:
            if isinstance(value, dict) and name in value:
                out[key] = value[name]
        elif isinstance(value, dict):
            out.update({f"{section}.{k}": v for k, v in value.items() if f"{section}.{k}" not in stage.ignored})
        elif section in config:
            out[key] = value
    return out


def changed_keys(old: dict, new: dict, stage: Stage) -> list[tuple[str, object, object]]:
    """(key, old value, new value) of every setting ``stage`` depends on that differs."""
    before, after = stage_values(old, stage), stage_values(new, stage)
    return [(k, before.get(k), v) for k, v in after.items() if before.get(k) != v]


def stage_keys(config: dict) -> list[tuple[Stage, str]]:
    """(stage, key) for the shared stages: the key is a hash of every setting the stage's output
    depends on, its own and the earlier stages', so equal keys mean interchangeable artifacts.
    ``config``: a RunConfig's ``to_dict()``."""
    values, out = {}, []
    for stage in SHARED_STAGES:
        values.update(stage_values(config, stage))
        digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]
        out.append((stage, f"{stage.name}-{digest}"))
    return out


def load_metrics(run_dir: str | Path) -> dict:
    """A run's metrics.json (the one reader of it)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise ArtifactError(f"{path}: not found (the run has not been tested)")
    return json.loads(path.read_text())
