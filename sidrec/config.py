"""One typed config object per run, with Hydra-style ``key=value`` overrides.

Every field a user can set lives here, with its default, so a reader finds what a flag does in
one hop; but for a model plug-in's own options, ``model.<option>``, which live in its folder
(``sidrec/models/<arch>/plugin.py``, see ``ModelConfig``), and a tokenizer's own options,
``tokenizer.<option>``, which live beside it (``sidrec/tokenize/<kind>.py``, see ``TokenizerConfig``).
``RunConfig`` is printed at start and saved as ``config.json`` in the run directory.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from sidrec.errors import ConfigError


@dataclass
class DataConfig:
    name: str = "beauty"  # bundled dataset name, or a label for a user-given path
    format: str = "bundled"  # bundled | p5 | amazon_raw | recbole | table
    path: str = ""  # file or directory for the non-bundled formats (see docs/datasets.md)
    # Segments separated by " | " are dropped when their field is missing for an item.
    text_template: str = (
        "Title: {title} | Brand: {brand} | Categories: {categories} | Price: {price} | "
        "Description: {description}"
    )
    missing_text: str = "error"  # what to do with items without any text: error | id (use the item id)
    min_interactions: int = 5  # k-core filter for raw review files
    max_text_chars: int = 2000


@dataclass
class EncoderConfig:
    model: str = "all-MiniLM-L6-v2"  # packaged default, a hub name, or a local path
    kind: str = "auto"  # auto | sentence-transformers | hf-mean (mean pooling of last hidden states)
    batch_size: int = 128
    max_length: int = 256
    normalize: bool = True  # L2-normalise embeddings
    device: str = "auto"  # auto | cpu | cuda
    cache_dir: str = ""  # "" = ~/.cache/sidrec/embeddings


@dataclass
class TokenizerConfig:
    """``tokenizer.*``: the options every tokenizer has. A tokenizer declares its own options beside
    its class (``sidrec/tokenize/<kind>.py``, the class's ``options``) as a subclass of this class, with
    their defaults, comments and ``LIMITS``; ``cfg.tokenizer`` is an instance of the class of the run's
    ``tokenizer.kind``, by the rules of the model section (``ModelConfig``)."""

    kind: str = "rkmeans"  # rkmeans | rvq | rqvae (sidrec/tokenize: each class registers its kind)
    num_levels: int = 3  # L
    num_codes_per_level: int = 256  # W
    dedup: str = "extra_digit"  # extra_digit (TIGER) | random (no de-dup, random pick at retrieval)
    dedup_reserve: int = 0  # spare extra-digit values for items added later (cold start, sidrec add-items)
    batch_size: int = 2048
    device: str = "auto"

    # A tokenizer's allowed values of its own numeric options, as ``ModelConfig.LIMITS``.
    LIMITS: ClassVar[dict[str, tuple]] = {}


@dataclass
class ModelConfig:
    """``model.*``: the options every model has. A model plug-in declares its own options in its
    folder (``sidrec/models/<arch>/plugin.py``) as a subclass of this class, with their defaults,
    comments and ``LIMITS``; ``cfg.model`` is an instance of the class of the run's ``model.arch``,
    so a plug-in's options are set, printed, saved and loaded as ``model.<option>`` like any key."""

    # The plug-in (sidrec/models/registry.py). encoder_decoder | decoder_only: generate the next
    # item's SID token by token (beam search); item_sid: one position per history item, scores every
    # catalog item exactly.
    arch: str = "encoder_decoder"
    num_layers: int = 4  # per stack for encoder_decoder; decoder_only uses 2x this (same budget)
    num_heads: int = 6
    d_model: int = 128
    d_ff: int = 1024
    dropout: float = 0.1
    max_history: int = 20  # last N items of the history fed to the model

    # A plug-in's allowed values of its own numeric options, {name: (check, "expected")} as in
    # ``LIMITS`` below; checked by ``build_config``.
    LIMITS: ClassVar[dict[str, tuple]] = {}

    def user_tokens(self) -> int:
        """User tokens the SID vocabulary holds (hashed user ids; sidrec.tokenize.vocab), 0 = none."""
        return 0


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class Pluggable:
    """A section whose class is chosen by one of its keys: ``model.*`` by ``model.arch`` (its plug-in's
    options), ``tokenizer.*`` by ``tokenizer.kind``. ``registered()`` maps each value of that key to
    its options class, a subclass of ``base`` (imports the plug-ins, and torch, when called)."""

    section: str  # the section's name in RunConfig
    key: str  # the key that chooses its class
    base: type
    registered: Callable[[], dict[str, type]]

    def options(self, choice: str) -> type:
        classes = self.registered()
        if choice not in classes:
            raise ConfigError(f"{self.section}.{self.key}={choice!r}: expected one of {', '.join(classes)}")
        return classes[choice]

    def switch(self, obj, choice: str):
        """``obj`` as ``choice``'s options: the values of the options both classes have are kept."""
        cls = self.options(choice)
        names = _field_names(cls)
        return cls(**{**{k: v for k, v in dataclasses.asdict(obj).items() if k in names}, self.key: choice})

    def owners(self, name: str) -> list[str]:
        """The registered choices whose options include ``name``."""
        return [choice for choice, cls in self.registered().items() if name in _field_names(cls)]

    def chosen(self, obj) -> str:
        """``obj``'s choice as a key, e.g. ``model.arch=item_sid``."""
        return f"{self.section}.{self.key}={getattr(obj, self.key)}"


def _models() -> dict[str, type[ModelConfig]]:
    from sidrec.models.registry import MODELS  # the plug-ins (and torch), loaded when a model section is made

    return {arch: plugin.options for arch, plugin in MODELS.items()}


def _tokenizers() -> dict[str, type[TokenizerConfig]]:
    from sidrec.tokenize import KINDS  # every tokenizer module, each registering its kind

    return {kind: cls.options for kind, cls in KINDS.items()}


MODEL = Pluggable("model", "arch", ModelConfig, _models)
TOKENIZER = Pluggable("tokenizer", "kind", TokenizerConfig, _tokenizers)
PLUGGABLE = (MODEL, TOKENIZER)


def pluggable(obj) -> Pluggable | None:
    """The ``Pluggable`` whose options ``obj`` is, if any."""
    return next((p for p in PLUGGABLE if isinstance(obj, p.base)), None)


def model_options(arch: str) -> type[ModelConfig]:
    """The class of ``model.*`` for ``model.arch=arch``: its plug-in's options."""
    return MODEL.options(arch)


def model_config(arch: str = ModelConfig.arch, **options) -> ModelConfig:
    """``model.*`` for ``arch``, its options' defaults but for ``options``."""
    return model_options(arch)(arch=arch, **options)


def with_arch(model: ModelConfig, arch: str) -> ModelConfig:
    """``model`` as ``arch``'s options: the values of the options both plug-ins have are kept."""
    return MODEL.switch(model, arch)


def option_archs(name: str) -> list[str]:
    """The registered plug-ins that have the option ``model.<name>``."""
    return MODEL.owners(name)


def tokenizer_config(kind: str = TokenizerConfig.kind, **options) -> TokenizerConfig:
    """``tokenizer.*`` for ``kind``, its options' defaults but for ``options``."""
    return TOKENIZER.options(kind)(kind=kind, **options)


def stored_model_config(values: dict, source: str) -> ModelConfig:
    """A saved ``model`` mapping (model.pt's ``model_config``) as its arch's options, by the rules of
    a config file's ``model`` section (``_merge``)."""
    return _merge(RunConfig(), {"model": values}, source).model


@dataclass
class TrainConfig:
    lr: float = 5e-4
    weight_decay: float = 1e-6
    batch_size: int = 256
    max_steps: int = 100_000
    # > 0: the budget in epochs (passes over the training samples), whatever the dataset's size;
    # replaces max_steps. Presets use it, so the same preset means the same training on any data.
    max_epochs: float = 0.0
    # A safety limit on wall-clock minutes (0 = none). It makes a run depend on the machine's load:
    # the output says so when it ends a run. (It also anneals the LR schedule by elapsed time.)
    max_minutes: float = 0.0
    val_every: int = 100  # validate every N steps
    val_every_epochs: float = 0.0  # > 0: validate every N epochs instead (replaces val_every)
    patience: int = 10  # early stop after N validations without improvement of early_stop_metric
    early_stop_metric: str = "ndcg@10"
    select_metric: str = "recall@10"  # the checkpoint with the best value is tested
    val_max_users: int = 0  # 0 = all validation users
    sliding_window: bool = True
    bucketed: bool = False  # length-bucketed batches: shuffled pools sorted by history length (less padding)
    lr_schedule: str = "constant"  # constant | cosine | linear: decay to 0 by max_steps or by max_minutes, whichever comes first
    warmup_steps: int = 0  # linear warm-up from 0 (any schedule)
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max global gradient norm (0 = off)
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"  # e.g. ddp, ddp_spawn (Lightning)
    precision: str = "auto"  # auto = bf16-mixed on GPU and on CPUs with native bf16, else 32-true (Lightning names)
    num_workers: int = 0
    loggers: str = "csv,tensorboard"
    record_sample_ids: bool = False  # debug: save the sample ids each rank trained on (DDP test)


@dataclass
class DecodeConfig:
    num_beams: int = 10
    constrained: bool = True  # prefix-trie constrained beam search; False = free-form
    exclude_history: bool = False  # never recommend items already in the history
    batch_size: int = 256
    unknown_items: str = "error"  # history items not in the catalog: error | skip
    # Share of the k slots kept for items added after training (add-items), filled by a second beam
    # search over their SIDs only (TIGER's epsilon): the model rarely ranks never-seen SIDs on its own.
    cold_start_share: float = 0.0
    # What fills those slots: model (its ranking of the added items alone) | lookup (the added items
    # nearest by text to the last history item, placed after the model's items).
    cold_start_fill: str = "model"
    # Network precision at inference: fp32 | bf16 (autocast; beam scores still summed in fp32).
    # bf16 is faster on CPUs with native bf16 but may reorder near-tied items (docs/results.md).
    precision: str = "fp32"


@dataclass
class EvalConfig:
    ks: str = "5,10"
    test: bool = True  # false: stop after training, no test pass (sweeps choose on validation only)


@dataclass
class RunConfig:
    seed: int = 42
    run_dir: str = ""  # "" = runs/<dataset>-<timestamp>
    preset: str = ""  # see PRESETS
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    tokenizer: TokenizerConfig = field(default_factory=tokenizer_config)  # the class of tokenizer.kind
    model: ModelConfig = field(default_factory=model_config)  # the class of model.arch's plug-in
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def ks(self) -> list[int]:
        return [int(k) for k in self.eval.ks.split(",") if k.strip()]


@dataclass
class SASRecConfig:
    """The SASRec baseline (``sidrec sasrec``): its network and its training, ``sasrec.*`` keys."""

    max_len: int = 50  # last N items of the history
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 1
    d_ff: int = 256
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128  # user sequences per step
    max_epochs: int = 200
    patience: int = 5  # stop after N validations without improvement of early_stop_metric
    early_stop_metric: str = "ndcg@10"
    max_minutes: float = 15.0  # wall-clock cap on training (0 = none)
    eval_batch_size: int = 1024
    device: str = "auto"  # auto | cpu | cuda
    # Never rank the user's history items, in validation and test (as the text lookup and the item_sid
    # presets do); off by default, SASRec's usual protocol.
    exclude_history: bool = False


@dataclass
class SASRecRunConfig:
    """``sidrec sasrec``'s config: the main run's data and eval sections, SASRec in place of the rest."""

    seed: int = 42
    run_dir: str = ""  # "" = runs/sasrec-<dataset>-<timestamp>
    preset: str = ""  # see SASREC_PRESETS
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)

    # config.json and eval.ks read as for a main run
    to_dict = RunConfig.to_dict
    to_json = RunConfig.to_json
    ks = RunConfig.ks


@dataclass
class PopularityRunConfig:
    """``sidrec popularity``'s config: every user gets the items with the most training interactions."""

    run_dir: str = ""  # "" = runs/popularity-<dataset>-<timestamp>
    preset: str = ""  # none defined; kept so config files of every command read alike
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    to_dict = RunConfig.to_dict
    to_json = RunConfig.to_json
    ks = RunConfig.ks


@dataclass
class LookupConfig:
    """The text lookup baseline (``sidrec lookup``): the catalog ranked by cosine similarity of the
    item text embeddings (the pipeline's embed stage) to the user's most recent history items."""

    # The query: the last n history items' unit embeddings, averaged with recency weights
    # (the most recent item weighs 1, the one before it decay, then decay^2, ...).
    last_n: int = 1
    decay: float = 0.5  # in (0, 1]; 1 = plain average of the last n items
    # Never rank the user's history items; false: only the query's own items are excluded (each
    # item is its own nearest neighbour), anything else in the history may be recommended again.
    exclude_history: bool = True
    batch_size: int = 1024  # users per similarity matmul
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class LookupRunConfig:
    """``sidrec lookup``'s config: the main run's data, encoder and eval sections, ``lookup.*``."""

    run_dir: str = ""  # "" = runs/lookup-<dataset>-<timestamp>
    preset: str = ""  # none defined; kept so config files of every command read alike
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    lookup: LookupConfig = field(default_factory=LookupConfig)

    to_dict = RunConfig.to_dict
    to_json = RunConfig.to_json
    ks = RunConfig.ks


# Shared by the encoder-decoder CPU presets below.
CPU_MODEL = {
    "model.num_layers": "2",
    "model.num_heads": "4",
    "model.d_kv": "32",
    "model.d_ff": "512",
    "model.positions": "from_end",
}
CPU_TRAINING = {
    "train.bucketed": "true",
    "train.batch_size": "128",
    "train.lr": "2e-3",
    "train.lr_schedule": "cosine",
    "train.warmup_steps": "100",
    "train.label_smoothing": "0.1",
    "train.grad_clip": "1.0",
    # The tested checkpoint is picked by NDCG@10 (also the early-stopping metric): with 2,000
    # validation users Recall@10 moves in steps of 1/2000, and in one of three main-job runs a
    # one-user Recall@10 difference kept an epoch-3 checkpoint over the annealed final model whose
    # NDCG@10 was higher (docs/results.md, "The main job on CPU, after issue #10").
    "train.select_metric": "ndcg@10",
}

# The item-level SID model (model.arch=item_sid) as the CPU presets train it: SASRec's shape (2 layers,
# 64 wide, histories of 50) over item vectors composed of SID code embeddings + projected text + a
# learnt per-item embedding, a softmax over the catalog at every position, the learnt
# text-similarity term, peak LR 2e-3 (each choice measured on validation: docs/results.md, "An
# item-level semantic-ID model"). fp32: exact and repeatable on CPU.
ITEM_SID_CPU = {
    "tokenizer.steps_per_level": "300",
    "tokenizer.rqvae_steps": "2000",
    "model.arch": "item_sid",
    "model.head": "catalog",
    "model.item_inputs": "codes,text,id",
    "model.text_sim": "true",
    "model.max_history": "50",
    "model.d_model": "64",
    "model.num_layers": "2",
    "model.num_heads": "2",
    "model.d_ff": "256",
    "model.dropout": "0.2",
    "train.batch_size": "128",
    "train.lr": "2e-3",
    "train.lr_schedule": "cosine",
    "train.warmup_steps": "100",
    "train.precision": "32-true",
    "train.val_every_epochs": "1",
    "train.val_max_users": "0",  # exact ranking of every validation user takes seconds
    "train.select_metric": "ndcg@10",
    "train.patience": "1000",  # the budget, not early stopping, ends a run: same command, same training
    # Never recommend a history item (as the text lookup): the text-similarity term would otherwise
    # put the last item itself near the top of every list.
    "decode.exclude_history": "true",
}

# A preset is a named bundle of overrides, applied before the command line's own overrides. Budgets
# are in epochs, so a preset trains the same on any dataset and machine (a slower machine takes
# longer); train.max_minutes is only a safety limit, reported when it ends a run.
PRESETS: dict[str, dict[str, str]] = {
    # The paper's configuration (meant for a GPU).
    "paper": {},
    # The main job on a 2-core CPU (`make run`, <= 15 minutes end to end): 12 epochs (~0.7 min each
    # on 2 cores, validation included).
    "cpu": {**ITEM_SID_CPU, "train.max_epochs": "12"},
    # The same model trained longer: cosine decay over 30 epochs. Measured (docs/results.md): no gain
    # over `cpu` (validation peaks near epoch 11 and stays flat; the best checkpoint is tested), so
    # this is the long-schedule check, ~3x the cost.
    "cpu-full": {**ITEM_SID_CPU, "train.max_epochs": "30", "train.max_minutes": "120"},
    # The paper's encoder-decoder at the settings that learned fastest per CPU-minute on validation
    # (docs/results.md, "Learning per CPU-minute"; the studies' cpu budget): 2 + 2 layers, 4 heads x
    # 32, MLP 512, encoder positions counted from the most recent item, length-bucketed batches of
    # 128, bf16 autocast where the CPU has it, peak LR 2e-3 with 100 warm-up steps and cosine decay
    # to 0 over 4 epochs (what the former 8.5-minute cap fitted on 2 cores), label smoothing 0.1,
    # gradient clipping at 1; validation on 2,000 users once per epoch picks the checkpoint.
    "cpu-encdec": {
        "tokenizer.steps_per_level": "300",
        "tokenizer.rqvae_steps": "2000",
        **CPU_MODEL,
        **CPU_TRAINING,
        "train.max_epochs": "4",
        "train.val_every_epochs": "1",
        "train.val_max_users": "2000",
    },
    # The same encoder-decoder trained to convergence: cosine decay over 30 epochs (validation Recall@10
    # flat over the last five, docs/results.md), validation on 5,000 users once per epoch, early stop
    # after 4 epochs without NDCG@10 gain; at most 72 minutes measured on 2 cores, limited to 150.
    "cpu-encdec-full": {
        "tokenizer.steps_per_level": "300",
        "tokenizer.rqvae_steps": "2000",
        **CPU_MODEL,
        **CPU_TRAINING,
        "train.max_epochs": "30",
        "train.max_minutes": "150",
        "train.val_every_epochs": "1",
        "train.val_max_users": "5000",
        "train.patience": "4",
    },
    # Seconds-long runs for tests and CI.
    "tiny": {
        "tokenizer.num_codes_per_level": "8",
        "tokenizer.steps_per_level": "20",
        "tokenizer.rqvae_steps": "60",
        "tokenizer.batch_size": "256",
        "model.num_layers": "1",
        "model.num_heads": "2",
        "model.d_model": "32",
        "model.d_kv": "16",
        "model.d_ff": "64",
        "model.max_history": "5",
        "train.max_steps": "20",
        "train.val_every": "10",
        "train.batch_size": "32",
        "train.loggers": "csv",
        "train.precision": "32-true",  # tiny tensors: bf16 gains nothing, and CI CPUs may lack it
        "decode.num_beams": "10",
    },
}


SASREC_PRESETS: dict[str, dict[str, str]] = {
    "paper": {},
    "cpu": {},  # the defaults already train on 2 CPU cores in minutes
    # Seconds-long runs for tests and CI.
    "tiny": {"sasrec.max_len": "5", "sasrec.d_model": "16", "sasrec.d_ff": "32", "sasrec.num_layers": "1",
             "sasrec.batch_size": "16", "sasrec.max_epochs": "3", "sasrec.patience": "2"},
}


def at_least(low):
    return lambda v: v >= low, f">= {low}"


POSITIVE = (lambda v: v > 0, "> 0")
SHARE = (lambda v: 0 <= v < 1, "in [0, 1)")

# The allowed values of every numeric setting, checked by ``build_config`` (so before any work
# starts: a bad value fails at once, not in the stage that reads it minutes later). Settings that
# name a choice (tokenizer.kind, model.arch, ...) are checked by ``sidrec.pipeline.check_config``.
LIMITS: dict[str, tuple] = {
    "seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
    **{f"data.{k}": at_least(1) for k in ("min_interactions", "max_text_chars")},
    **{f"encoder.{k}": at_least(1) for k in ("batch_size", "max_length")},
    "tokenizer.num_levels": at_least(1),
    "tokenizer.num_codes_per_level": at_least(2),
    "tokenizer.dedup_reserve": at_least(0),
    "tokenizer.batch_size": at_least(1),
    **{f"model.{k}": at_least(1) for k in ("num_layers", "num_heads", "d_model", "d_ff", "max_history")},
    "model.dropout": SHARE,
    "train.lr": POSITIVE,
    **{f"train.{k}": at_least(1) for k in ("batch_size", "max_steps", "val_every", "devices")},
    **{f"train.{k}": at_least(0) for k in ("weight_decay", "max_epochs", "max_minutes", "val_every_epochs",
                                             "patience", "val_max_users", "warmup_steps", "grad_clip",
                                             "num_workers")},
    "train.label_smoothing": SHARE,
    **{f"decode.{k}": at_least(1) for k in ("num_beams", "batch_size")},
    "decode.cold_start_share": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    **{f"sasrec.{k}": at_least(1) for k in ("max_len", "d_model", "num_layers", "num_heads", "d_ff", "batch_size",
                                              "max_epochs", "eval_batch_size")},
    **{f"sasrec.{k}": at_least(0) for k in ("weight_decay", "patience", "max_minutes")},
    "sasrec.dropout": SHARE,
    "sasrec.lr": POSITIVE,
    **{f"lookup.{k}": at_least(1) for k in ("last_n", "batch_size")},
    "lookup.decay": (lambda v: 0 < v <= 1, "in (0, 1]"),
}


def check_limits(cfg) -> None:
    """Every numeric setting of ``cfg`` within its ``LIMITS``, and the model plug-in's and the
    tokenizer's own options within theirs (sections ``cfg`` lacks are skipped)."""
    plugin_limits = {f"{p.section}.{name}": limit for p in PLUGGABLE
                     for name, limit in getattr(getattr(cfg, p.section, None), "LIMITS", {}).items()}
    for key, (ok, expected) in {**LIMITS, **plugin_limits}.items():
        section, _, name = key.rpartition(".")
        obj = getattr(cfg, section, None) if section else cfg
        if obj is None or not hasattr(obj, name):
            continue
        value = getattr(obj, name)
        if not ok(value):
            kind = "an integer" if isinstance(value, int) else "a number"
            raise ConfigError(f"{key}={value!r}: expected {kind} {expected}")


def coerce_override(value: str, typ, key: str):
    if typ is bool:
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"override {key}={value!r}: expected a boolean (true/false)")
    try:
        return typ(value)
    except ValueError:
        raise ConfigError(f"override {key}={value!r}: expected {typ.__name__}") from None


def set_value(cfg, key: str, value: str, skip_other_options: bool = False) -> None:
    """Sets one dotted key of a config dataclass from its string form, with type checks. Setting
    ``model.arch`` (``tokenizer.kind``) makes the section that plug-in's (tokenizer's) options
    (``Pluggable.switch``). An option of another plug-in than ``model.arch``'s (of another tokenizer
    than ``tokenizer.kind``'s) is refused, or skipped with ``skip_other_options`` (a preset's keys:
    ``preset=tiny`` sets encoder-decoder options an ``item_sid`` run does without)."""
    parts = key.split(".")
    parent, obj = None, cfg
    for i, part in enumerate(parts):
        p = pluggable(obj)
        if not dataclasses.is_dataclass(obj) or part not in _field_names(obj):
            if p and i == len(parts) - 1 and (owners := p.owners(part)):
                if skip_other_options:
                    return
                raise ConfigError(f"{key} is an option of {p.section}.{p.key}={' | '.join(owners)}, "
                                  f"not of {p.chosen(obj)}")
            valid = ", ".join(f.name for f in dataclasses.fields(obj)) if dataclasses.is_dataclass(obj) else ""
            where = p.chosen(obj) if p else ".".join(parts[:i]) or "config"
            raise ConfigError(f"unknown config key {key!r} ({where} has: {valid})")
        if i == len(parts) - 1:
            typ = typing.get_type_hints(type(obj))[part]
            if dataclasses.is_dataclass(typ):
                raise ConfigError(f"config key {key!r} is a section; set one of its fields, e.g. {key}.<field>=...")
            if p and part == p.key:
                setattr(parent, parts[i - 1], p.switch(obj, value))
            else:
                setattr(obj, part, coerce_override(value, typ, key))
        else:
            parent, obj = obj, getattr(obj, part)


def parse_overrides(args: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not key=value (e.g. tokenizer.kind=rvq)")
        key, value = arg.split("=", 1)
        pairs.append((key.strip(), value))
    return pairs


def refuse_repeated_keys(args: list[str]) -> None:
    """A command line names each key once: ``train.lr=1e-3 ... train.lr=2e-3`` is refused, not
    silently resolved to the last value (arguments without ``=``, such as a study name, are skipped)."""
    seen: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep:
            continue
        if key in seen:
            raise ConfigError(f"{key} is given twice ({key}={seen[key]!r} and {key}={value!r}); give it once")
        seen[key] = value


def merge_overrides(overrides: list[str]) -> list[str]:
    """One ``key=value`` per key, the last one given: for override lists put together from several
    sources (a study's, a row's, a seed's), where later ones win, and that go to a command line."""
    return [f"{key}={value}" for key, value in dict(parse_overrides(overrides)).items()]


def parse_seeds(value: str) -> list[int]:
    """``seeds=3`` means seeds 0, 1, 2; ``seeds=1,5,9`` lists them."""
    try:
        seeds = list(range(int(value))) if "," not in value else [int(v) for v in value.split(",")]
    except ValueError:
        raise ConfigError(f"seeds={value!r}: expected a count (seeds=3) or a list (seeds=0,1,2)") from None
    if not seeds:
        raise ConfigError(f"seeds={value!r}: no seeds to run (seeds=N runs seeds 0..N-1; one seed: seed=S)")
    return seeds


# Keys holding file system paths: a leading ``~`` is expanded (the shell does not expand it after
# ``key=``, so ``data.path=~/amazon`` would otherwise name a folder called "~").
PATH_KEYS = ("run_dir", "data.path", "encoder.cache_dir", "encoder.model")


def user_path(value: str) -> str:
    return os.path.expanduser(value) if value.startswith("~") else value


def _last_choice(p: Pluggable, command_line: list[tuple[str, str]], data: dict, from_preset: dict,
                 source: str) -> str | None:
    """The ``model.arch`` (``tokenizer.kind``) a run's config ends with: the command line's, else the
    config file's, else the preset's; None when none of them names it."""
    key = f"{p.section}.{p.key}"
    choice = next((v for k, v in reversed(command_line) if k == key), None)
    section = data.get(p.section)
    if choice is None and isinstance(section, dict) and p.key in section:
        choice = _check_type(section[p.key], str, f"{source}: {key}")
    return choice if choice is not None else from_preset.get(key)


def build_config(overrides: list[str] | None = None, base=None, presets: dict | None = None,
                 factory=RunConfig):
    """Defaults (or ``base``, a resolved config such as a run's config.json), then the preset's
    overrides, then a ``config=`` file's values, then the command line's, in that order.
    ``presets`` and ``factory`` serve other config classes (``build_sasrec_config``).

    A preset is applied only when named on the command line or in the file: ``base`` already
    holds the values its own preset produced, and re-applying it would undo later overrides."""
    presets = PRESETS if presets is None else presets
    pairs = parse_overrides(overrides or [])
    files = [v for k, v in pairs if k == "config"]
    data, source = ({}, "") if not files else (read_config_file(files[-1]), user_path(files[-1]))
    preset = next((v for k, v in reversed(pairs) if k == "preset"), data.get("preset", ""))
    if not isinstance(preset, str):
        raise ConfigError(f"{source}: preset: expected a string, got {type(preset).__name__} {preset!r}")
    if preset and preset not in presets:
        raise ConfigError(f"unknown preset {preset!r} (have: {', '.join(presets) or 'none'})")
    from_preset = dict(presets[preset]) if preset else {}
    command_line = [(k, v) for k, v in pairs if k not in ("config", "preset")]
    cfg = base if base is not None else factory()
    for p in PLUGGABLE:
        section = getattr(cfg, p.section, None)
        if not isinstance(section, p.base):
            continue
        # model.arch (tokenizer.kind) first, the one the run ends with (the command line's, else the
        # file's, else the preset's): every source's keys of the section are then checked against
        # that plug-in's (tokenizer's) options.
        choice = _last_choice(p, command_line, data, from_preset, source) or getattr(section, p.key)
        setattr(cfg, p.section, p.switch(section, choice))
        key = f"{p.section}.{p.key}"
        from_preset.pop(key, None)
        if isinstance(data.get(p.section), dict):
            data = {**data, p.section: {k: v for k, v in data[p.section].items() if k != p.key}}
        command_line = [(k, v) for k, v in command_line if k != key]
    for key, value in from_preset.items():
        set_value(cfg, key, value, skip_other_options=True)
    _merge(cfg, data, source)
    for key, value in command_line:
        set_value(cfg, key, value)
    cfg.preset = preset or cfg.preset
    for key in PATH_KEYS:
        section, _, name = key.rpartition(".")
        obj = getattr(cfg, section, None) if section else cfg
        if obj is not None and hasattr(obj, name):
            setattr(obj, name, user_path(getattr(obj, name)))
    check_ks(cfg.eval.ks)
    check_limits(cfg)
    decode = getattr(cfg, "decode", None)  # SASRec's config has none
    if decode is not None and decode.precision not in ("fp32", "bf16"):
        raise ConfigError(f"decode.precision={decode.precision!r}: expected fp32 or bf16")
    return cfg


def build_sasrec_config(overrides: list[str] | None = None) -> SASRecRunConfig:
    """The SASRec baseline's config, by the rules of ``build_config``."""
    return build_config(overrides, presets=SASREC_PRESETS, factory=SASRecRunConfig)


def build_popularity_config(overrides: list[str] | None = None) -> PopularityRunConfig:
    """The popularity baseline's config, by the rules of ``build_config`` (no presets)."""
    return build_config(overrides, presets={}, factory=PopularityRunConfig)


def build_lookup_config(overrides: list[str] | None = None) -> LookupRunConfig:
    """The text lookup baseline's config, by the rules of ``build_config`` (no presets)."""
    return build_config(overrides, presets={}, factory=LookupRunConfig)


def check_ks(value: str) -> list[int]:
    try:
        ks = [int(k) for k in value.split(",") if k.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise ConfigError(f"eval.ks={value!r}: expected positive integers separated by commas (e.g. 5,10)")
    return ks


def _check_type(value, typ, where: str):
    """A file's value as the field's type: YAML/JSON give real types, so no string parsing here."""
    ok = (isinstance(value, bool) if typ is bool else
          isinstance(value, int) and not isinstance(value, bool) if typ is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) if typ is float else
          isinstance(value, typ))
    if not ok:
        raise ConfigError(f"{where}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return float(value) if typ is float else value


def _merge(obj, data, source: str, prefix: str = ""):
    """Sets the fields of the dataclass ``obj`` named in ``data`` (nested mappings for sections)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'the top level'}: expected a mapping of config keys, "
                          f"got {type(data).__name__}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    p = pluggable(obj)
    for name, value in data.items():
        if name not in names:
            if p and p.owners(str(name)):
                # Another plug-in's (tokenizer's) option: a config.json written before they declared their
                # own options holds every model (tokenizer) option, each arch (kind) reading its own.
                continue
            raise ConfigError(f"{source}: unknown config key {prefix + str(name)!r} (have: {', '.join(names)})")
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            section = getattr(obj, name)
            q = pluggable(section)
            if q and isinstance(value, dict) and q.key in value:
                section = q.switch(section, _check_type(value[q.key], str, f"{source}: {prefix}{name}.{q.key}"))
                setattr(obj, name, section)
            _merge(section, value, source, f"{prefix}{name}.")
        else:
            setattr(obj, name, _check_type(value, typ, f"{source}: {prefix}{name}"))
    return obj


def _from_dict(cls, data: dict, source: str):
    return _merge(cls(), data, source)


def read_config_file(path: str | Path) -> dict:
    """A JSON or YAML (.yaml/.yml) config file: a mapping, sections as nested mappings."""
    path = Path(user_path(str(path)))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable config file ({exc})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc})") from None
        data = {} if data is None else data
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level: expected a mapping of config keys, got {type(data).__name__}")
    return data


def load_config(path: str | Path) -> RunConfig:
    """A saved or hand-written config file (JSON or YAML), every value type-checked; fields it does
    not name keep their defaults."""
    return _from_dict(RunConfig, read_config_file(path), str(path))


def field_comments(cls) -> dict[str, str]:
    """Field name -> its comment in the class source (the comment lines above it, then the one at
    the end of its line), so ``--help`` shows what the source documents."""
    comments, pending = {}, []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped[1:].strip())
            continue
        match = re.match(r"\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$", line)
        if match and not stripped.startswith(("def ", "@", '"')):
            comments[match[1]] = " ".join(pending + ([match[2]] if match[2] else []))
        pending = []
    return comments


def describe_keys(cls, prefix: str = "") -> list[str]:
    """``  key=default  comment`` for every field of a config dataclass, sections flattened; the model
    (tokenizer) section's own keys are followed by every registered plug-in's (tokenizer's) options."""
    hints, comments, lines = typing.get_type_hints(cls), field_comments(cls), []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            lines += describe_keys(hints[f.name], f"{prefix}{f.name}.")
            for p in PLUGGABLE:
                if hints[f.name] is p.base:
                    lines += _describe_options(p, f"{prefix}{f.name}.")
            continue
        lines.append(_key_line(prefix, f, comments.get(f.name, "")))
    return lines


def _key_line(prefix: str, f: dataclasses.Field, comment: str) -> str:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    shown = f"{prefix}{f.name}={default if default != '' else repr('')}"
    return f"  {shown:<34} {comment}".rstrip()


def _describe_options(p: Pluggable, prefix: str) -> list[str]:
    """Each registered plug-in's (tokenizer's) own options once, with the archs (kinds) that have it
    and the comment of the class that declares it."""
    shown, lines = _field_names(p.base), []
    for options in p.registered().values():
        for f in dataclasses.fields(options):
            if f.name in shown:
                continue
            shown.add(f.name)
            owner = next(c for c in options.__mro__ if f.name in vars(c).get("__annotations__", {}))
            comment = field_comments(owner).get(f.name, "")
            lines.append(_key_line(prefix, f, f"({', '.join(p.owners(f.name))}) {comment}"))
    return lines
