"""Tokenizers: shapes, determinism, code usage, artifact round trip and its errors."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sidrec.config import TokenizerConfig, tokenizer_config
from sidrec.errors import ArtifactError, ConfigError, DataError
from sidrec.tokenize import build_tokenizer, load_tokenizer
from sidrec.tokenize import residual
from sidrec.tokenize.residual import DEAD_AFTER, nearest, reseed_idle

KINDS = ["rkmeans", "rvq", "rqvae"]
W = 8


def tiny_config(kind: str, **overrides) -> TokenizerConfig:
    # each kind's own options (sidrec/tokenize/<kind>.py)
    own = {"rqvae_steps": 100, "rqvae_hidden": "32", "rqvae_latent_dim": 8} if kind == "rqvae" else {
        "steps_per_level": 30}
    cfg = tokenizer_config(kind, num_levels=3, num_codes_per_level=W, batch_size=256, device="cpu", **own)
    return dataclasses.replace(cfg, **overrides)


def clustered(n=800, d=16, clusters=32, seed=0) -> np.ndarray:
    """Unit vectors around well-separated centres, with a second, finer level of structure."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: a second thread only adds sync, which on a busy machine costs 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return clustered()


@pytest.fixture(scope="module")
def fitted(data):
    return {kind: build_tokenizer(tiny_config(kind)).fit(data, seed=0, progress=False) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_codes_shape_dtype_range(fitted, data, kind):
    codes = fitted[kind].encode(data)
    assert codes.shape == (len(data), 3) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < W


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_codes(fitted, data, kind):
    again = build_tokenizer(tiny_config(kind)).fit(data, seed=0, progress=False).encode(data)
    other = build_tokenizer(tiny_config(kind)).fit(data, seed=1, progress=False).encode(data)
    assert np.array_equal(fitted[kind].encode(data), again)
    assert not np.array_equal(again, other)


@pytest.mark.parametrize("kind", KINDS)
def test_every_level_uses_the_codebook(fitted, data, kind):
    codes = fitted[kind].encode(data)
    for level in range(3):
        assert len(np.unique(codes[:, level])) >= 0.9 * W, f"level {level}"


@pytest.mark.parametrize("kind", KINDS)
def test_fit_leaves_global_rng_alone(data, kind):
    state = torch.random.get_rng_state()
    steps = {"rqvae_steps" if kind == "rqvae" else "steps_per_level": 2}
    build_tokenizer(tiny_config(kind, **steps)).fit(data, seed=0, progress=False)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(fitted, data, kind, tmp_path):
    path = tmp_path / "tok.pt"
    fitted[kind].save(path)
    loaded = load_tokenizer(path, expected_levels=3, expected_codes=W, expected_dim=data.shape[1])
    assert loaded.kind == kind
    assert np.array_equal(loaded.encode(data), fitted[kind].encode(data))
    assert loaded.reconstruction_error(data) == pytest.approx(fitted[kind].reconstruction_error(data), rel=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["tok.pt"]  # no temp file left behind


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_holding_every_kinds_options_loads_with_its_own(fitted, data, kind, tmp_path):
    """tokenizer.pt written before the tokenizers declared their own options: its config holds every
    kind's; the loaded tokenizer keeps those of its kind."""
    from conftest import old_format

    path = tmp_path / "tok.pt"
    fitted[kind].save(path)
    payload = torch.load(path, weights_only=True)
    payload["config"] = old_format({"tokenizer": payload["config"]}, whiten=False, steps_per_level=7)["tokenizer"]
    torch.save(payload, path)
    loaded = load_tokenizer(path, expected_levels=3, expected_codes=W, expected_dim=data.shape[1])
    assert type(loaded.cfg) is type(fitted[kind].cfg) and dataclasses.asdict(loaded.cfg) == dataclasses.asdict(
        dataclasses.replace(fitted[kind].cfg, device="auto"))
    assert np.array_equal(loaded.encode(data), fitted[kind].encode(data))


def test_a_new_tokenizer_is_built_fitted_saved_and_loaded_with_its_own_option(toy_tokenizer, data, tmp_path):
    from sidrec.config import build_config

    cfg = build_config(["tokenizer.kind=toy", "tokenizer.toy_scale=3", f"tokenizer.num_codes_per_level={W}"])
    tok = build_tokenizer(cfg.tokenizer).fit(data, seed=0, progress=False)
    assert isinstance(tok, toy_tokenizer) and tok.encode(data).shape == (len(data), 3)
    tok.save(tmp_path / "tok.pt")
    loaded = load_tokenizer(tmp_path / "tok.pt")
    assert loaded.cfg.toy_scale == 3 and np.array_equal(loaded.encode(data), tok.encode(data))
    with pytest.raises(ConfigError, match=r"expected its options \(ToyTokenizerOptions"):
        build_tokenizer(TokenizerConfig(kind="toy"))


def test_load_with_other_levels_or_codes_names_file_and_values(fitted, tmp_path):
    path = tmp_path / "tok.pt"
    fitted["rkmeans"].save(path)
    with pytest.raises(ArtifactError, match=r"tok\.pt.*3 x 8.*3 x 256"):
        load_tokenizer(path, expected_levels=3, expected_codes=256)
    with pytest.raises(ArtifactError, match=r"3 x 8, but 4 x 8 is expected"):
        load_tokenizer(path, expected_levels=4)
    with pytest.raises(ArtifactError, match=r"tok\.pt.*16-dim.*384-dim"):
        load_tokenizer(path, expected_dim=384)


@pytest.mark.parametrize("content", [b"", b"not a torch file", None])
def test_corrupt_file_raises_artifact_error(fitted, tmp_path, content):
    path = tmp_path / "tok.pt"
    fitted["rqvae"].save(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2] if content is None else content)  # None: truncated
    with pytest.raises(ArtifactError, match=r"tok\.pt"):
        load_tokenizer(path)


@pytest.mark.parametrize("kind, tensor", [("rkmeans", "codebooks"), ("rqvae", "model.codebooks")])
def test_state_that_contradicts_header_raises_artifact_error(fitted, tmp_path, kind, tensor):
    path = tmp_path / "tok.pt"
    fitted[kind].save(path)
    payload = torch.load(path, weights_only=True)
    payload["state"][tensor] = payload["state"][tensor][:, :4]  # 4 codes per level, header says 8
    torch.save(payload, path)
    with pytest.raises(ArtifactError, match=r"tok\.pt: tokenizer state does not match"):
        load_tokenizer(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        load_tokenizer(tmp_path / "nope.pt")


def test_unknown_kind_names_value():
    with pytest.raises(ConfigError, match="'kmeans'"):
        build_tokenizer(dataclasses.replace(tiny_config("rkmeans"), kind="kmeans"))


def test_encode_checks_dimension(fitted, data):
    with pytest.raises(DataError, match="16-dim.*20-dim"):
        fitted["rvq"].encode(np.zeros((3, 20), dtype=np.float32))


def test_fit_needs_at_least_w_items(data):
    with pytest.raises(DataError, match="8 codes"):
        build_tokenizer(tiny_config("rkmeans")).fit(data[:5], seed=0, progress=False)


@pytest.mark.parametrize("kind", ["rkmeans", "rvq"])
def test_residual_normalisation_makes_codes_scale_free(data, kind):
    tok = build_tokenizer(tiny_config(kind)).fit(data, seed=0, progress=False)
    assert np.array_equal(tok.encode(data), tok.encode(3 * data))
    raw = build_tokenizer(tiny_config(kind, normalize_residuals=False)).fit(data, seed=0, progress=False)
    assert not np.array_equal(raw.encode(data), raw.encode(3 * data))


@pytest.mark.parametrize("kind", KINDS)
def test_more_levels_reconstruct_better(data, kind):
    tokenizers = [build_tokenizer(tiny_config(kind, num_levels=levels)) for levels in (1, 3)]
    errors = [tok.fit(data, seed=0, progress=False).reconstruction_error(data) for tok in tokenizers]
    total_energy = float((data**2).sum(1).mean())
    assert errors[1] < errors[0] < total_energy


def test_idle_codeword_is_reseeded_onto_a_batch_point():
    gen = torch.Generator().manual_seed(0)
    xb = torch.randn(64, 4)
    codebook = torch.cat([xb[:3], torch.full((1, 4), 100.0)])  # codeword 3 is far from everything
    idle = torch.zeros(4, dtype=torch.long)
    for step in range(DEAD_AFTER):
        codes = ((xb[:, None] - codebook) ** 2).sum(-1).argmin(1)
        moved = reseed_idle(codebook, idle, torch.bincount(codes, minlength=4), xb, codes, gen)
        assert (len(moved) > 0) == (step == DEAD_AFTER - 1)
    assert moved.tolist() == [3]
    assert ((xb - codebook[3]) ** 2).sum(1).min() == 0  # now sits on a batch point


def out_of_place_fit(tok, x: torch.Tensor, gen: torch.Generator) -> None:
    """The residual fit loop before it worked in place (issue #11), kept as the reference."""
    codebooks, gains, r = [], [], x
    for _ in range(tok.num_levels):
        if tok.cfg.normalize_residuals:
            gain, r = r.norm(dim=1).mean(), F.normalize(r, dim=1)
        else:
            gain = torch.ones(())
        codebook = tok._fit_level(r, gen, tqdm(disable=True))
        r = r - codebook[torch.cat([nearest(c, codebook) for c in r.split(residual.ENCODE_CHUNK)])]
        codebooks.append(codebook)
        gains.append(gain)
    tok.codebooks, tok.gains = torch.stack(codebooks), torch.stack(gains)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("kind", ["rkmeans", "rvq"])
def test_in_place_fit_equals_out_of_place_bit_for_bit(data, kind, normalize, monkeypatch):
    """Same codebooks and gains as before the in-place rewrite, so the default pipeline's SIDs are
    unchanged; small chunks make the chunked residual update run over several chunks."""
    monkeypatch.setattr(residual, "ENCODE_CHUNK", 100)
    cfg = tiny_config(kind, normalize_residuals=normalize)
    x = data * 3  # not unit norm: the normalisation has work to do
    before = x.copy()
    new = build_tokenizer(cfg).fit(x, seed=3, progress=False)
    assert np.array_equal(x, before)  # the caller's embeddings are not touched
    old = build_tokenizer(cfg)
    old.dim = x.shape[1]
    out_of_place_fit(old, torch.from_numpy(x), torch.Generator().manual_seed(3))
    assert torch.equal(new.codebooks, old.codebooks) and torch.equal(new.gains, old.gains)


def test_rqvae_without_whitening_quantises_the_raw_embeddings_and_round_trips(data, tmp_path):
    tok = build_tokenizer(tiny_config("rqvae", whiten=False)).fit(data, seed=0, progress=False)
    assert torch.equal(tok.whiten, torch.eye(data.shape[1])) and torch.equal(tok.unwhiten, tok.whiten)
    assert not tok.mean.any()
    codes = tok.encode(data)
    for level in range(3):
        assert len(np.unique(codes[:, level])) >= 0.9 * W, f"level {level}"
    tok.save(tmp_path / "tok.pt")
    loaded = load_tokenizer(tmp_path / "tok.pt")
    assert loaded.cfg.whiten is False and np.array_equal(loaded.encode(data), codes)
