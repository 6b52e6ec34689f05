import contextlib
import gzip
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from sidrec.data.loaders import load_dataset

# hypothesis keeps its files out of the working tree
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "sidrec-hypothesis"))

TINY = ["preset=tiny", "data.format=p5", "data.name=tiny", "train.max_steps=12", "train.val_every=6"]


def tiny_args(*overrides: str) -> list[str]:
    """TINY with ``overrides`` in place of its own values of a key (a command line names each key once)."""
    from sidrec.config import merge_overrides

    return merge_overrides([*TINY, *overrides])

WORDS = ["lipstick", "shampoo", "mascara", "serum", "cleanser", "nail polish", "perfume", "sunscreen",
         "conditioner", "eyeliner", "moisturizer", "hair dryer", "brush", "toner", "foundation", "lotion"]
BRANDS = ["Acme", "Lumi", "Rosa", "Nord"]


def write_tiny_p5(directory, num_users=60, num_items=40, seed=0):
    """A small P5-format dataset with item titles: users favour items of one 'topic' so there is
    something to learn, and every sequence has >= 4 items."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "items.jsonl", "w") as fh:
        for i in range(1, num_items + 1):
            title = f"{BRANDS[i % 4]} {WORDS[i % len(WORDS)]} no. {i}"
            fh.write(json.dumps({"item_id": i, "asin": f"B{i:09d}", "title": title,
                                 "categories": [["Beauty", WORDS[i % len(WORDS)]]]}) + "\n")
    with open(directory / "sequences.txt", "w") as fh:
        for u in range(1, num_users + 1):
            topic = rng.integers(4)
            pool = [i for i in range(1, num_items + 1) if i % 4 == topic]
            seq = rng.choice(pool, size=rng.integers(4, 9), replace=True)
            fh.write(" ".join(map(str, [u, *seq])) + "\n")
    return directory


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _no_writes_into_the_working_tree():
    """Tests write under tmp_path only: a new entry in the repository root fails the session."""
    before = set(os.listdir(REPO))
    yield
    new = set(os.listdir(REPO)) - before - {".pytest_cache"}
    assert not new, f"tests wrote into the working tree: {sorted(new)}"


@pytest.fixture
def tiny_p5(tmp_path):
    return write_tiny_p5(tmp_path / "tiny")


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest on one thread, and do not stall when the machine is busy."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _isolated_embedding_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One tiny end-to-end run through the CLI, shared by the tests that inspect a finished run."""
    from sidrec.cli import main

    root = tmp_path_factory.mktemp("e2e")
    data = write_tiny_p5(root / "data")
    run_dir = root / "run"
    old = os.environ.get("SIDREC_CACHE_DIR")
    os.environ["SIDREC_CACHE_DIR"] = str(root / "cache")
    try:
        assert main(["run", *TINY, f"data.path={data}", f"run_dir={run_dir}"]) == 0
    finally:
        if old is None:
            os.environ.pop("SIDREC_CACHE_DIR", None)
        else:
            os.environ["SIDREC_CACHE_DIR"] = old
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A copy of the shared tiny run, for tests that change a run directory (add items, caches)."""
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(finished_run, dst, symlinks=True)
    return dst


# --- a throwaway model plug-in (test_config, test_models) -----------------------------------------
from dataclasses import dataclass  # noqa: E402
from typing import ClassVar  # noqa: E402

from sidrec.config import ModelConfig, at_least  # noqa: E402


@dataclass
class ToyOptions(ModelConfig):
    """model.* of the toy plug-in: ModelConfig's options and one of its own, declared here only."""

    arch: str = "toy"
    toy_width: int = 3  # the toy's own option: the width of its one layer

    LIMITS: ClassVar[dict[str, tuple]] = {"toy_width": at_least(1)}


@pytest.fixture
def toy_plugin(monkeypatch):
    """``model.arch=toy`` registered for the test: its folder's work (options, build, loss) and the
    registry line, nothing else."""
    import torch

    from sidrec.models.plugin import ModelPlugin
    from sidrec.models.registry import MODELS

    def build(model_cfg, shape):
        return torch.nn.Linear(model_cfg.toy_width, shape.vocab_size)

    def loss(model, batch, ranker, model_cfg, label_smoothing):
        value = model.weight.square().sum()
        return value, {"loss": value}

    plugin = ModelPlugin("toy", ToyOptions, build, loss)
    monkeypatch.setitem(MODELS, "toy", plugin)
    return plugin


# --- a throwaway tokenizer (test_config, test_tokenize) -------------------------------------------
from sidrec.config import POSITIVE, TokenizerConfig  # noqa: E402


@dataclass
class ToyTokenizerOptions(TokenizerConfig):
    """tokenizer.* of the toy tokenizer: TokenizerConfig's options and one of its own, declared here only."""

    kind: str = "toy"
    toy_scale: float = 4.0  # the toy's own option: codes are floor(scale * x) of the first coordinates

    LIMITS: ClassVar[dict[str, tuple]] = {"toy_scale": POSITIVE}


@pytest.fixture
def toy_tokenizer():
    """``tokenizer.kind=toy`` registered for the test: its module's work (its class and options) and
    the registry (defining the class registers its kind), nothing else; unregistered afterwards."""
    import torch

    from sidrec.tokenize import KINDS
    from sidrec.tokenize.base import Tokenizer

    class ToyTokenizer(Tokenizer):
        kind = "toy"
        options = ToyTokenizerOptions

        def _fit(self, x, gen, progress):
            self.scale = torch.tensor(self.cfg.toy_scale)

        def _encode(self, x):
            return (self.scale * x[:, :self.num_levels]).floor().long() % self.num_codes_per_level

        def _reconstruct(self, codes):
            return torch.zeros(len(codes), self.dim)

        def _state(self):
            return {"scale": self.scale}

        def _load_state(self, state):
            self.scale = state["scale"]

    try:
        yield ToyTokenizer
    finally:
        KINDS.pop("toy", None)


# The tokenizer section of a config.json (and tokenizer.pt) written before the tokenizers declared
# their own options: every kind's options, each kind reading its own.
OLD_TOKENIZER = {"kind": "rkmeans", "num_levels": 3, "num_codes_per_level": 256, "dedup": "extra_digit",
                 "dedup_reserve": 0, "normalize_residuals": True, "steps_per_level": 1000, "batch_size": 2048,
                 "lr": 1e-3, "rqvae_steps": 15000, "rqvae_hidden": "512,256", "rqvae_latent_dim": 64,
                 "rqvae_beta": 0.25, "whiten": True, "device": "auto"}


def old_format(config: dict, **tokenizer) -> dict:
    """``config`` (a RunConfig's to_dict()) as the former sidrec wrote it: its tokenizer section holding
    every kind's options, the other kinds' at ``tokenizer`` values, else their defaults."""
    return {**config, "tokenizer": {**OLD_TOKENIZER, **tokenizer, **config["tokenizer"]}}


# --- dataset files (test_loaders, test_readers, test_amazon_raw, test_tables) ---------------------
def sequences(ds) -> dict[str, list[str]]:
    """user id -> external item ids, in order."""
    return {user: [ds.items[i]["item_id"] for i in ds.sequence(u)] for u, user in enumerate(ds.user_ids)}


@contextlib.contextmanager
def raises_one_line(error, *fragments: str):
    """The block raises ``error`` with a one-line message that contains every fragment."""
    with pytest.raises(error) as info:
        yield info
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def write_lines(path: Path, lines: list[str]) -> Path:
    text = "".join(line + "\n" for line in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def add_bom(directory: Path) -> None:
    """Prefixes every file with the UTF-8 byte-order mark some Windows editors write."""
    for path in directory.iterdir():
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + gzip.decompress(path.read_bytes())))
        else:
            path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def assert_bom_accepted(tmp_path: Path, write) -> None:
    """``write(directory) -> DataConfig`` gives the same dataset with every file BOM-prefixed."""
    plain, marked = tmp_path / "plain", tmp_path / "bom"
    plain.mkdir()
    marked.mkdir()
    expected = load_dataset(write(plain))
    cfg = write(marked)
    add_bom(marked)
    ds = load_dataset(cfg)
    assert (ds.user_ids, ds.items, sequences(ds)) == (expected.user_ids, expected.items, sequences(expected))
