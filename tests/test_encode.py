"""Modality encoder: hf-mean pooling against a hand computation on a tiny random T5, the packaged
MiniLM default, the embedding cache and the configuration errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidrec import encode
from sidrec.config import EncoderConfig
from sidrec.encode import embed_items, load_or_embed, resolve_model
from sidrec.errors import ConfigError, DataError

CORPUS = [
    "red matte lipstick with a long lasting finish",
    "nail polish",
    "cordless power drill for wood and metal",
    "a soft brush",
]


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> str:
    """A randomly initialised two-layer T5 (encoder + decoder, as Flan-T5 checkpoints are) and a
    word-level tokenizer trained on CORPUS, saved as a Hugging Face model folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    directory = tmp_path_factory.mktemp("tiny_t5")
    word_level = Tokenizer(models.WordLevel(unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    word_level.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>")
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=1,
                      num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5ForConditionalGeneration(config).save_pretrained(directory)
    return str(directory)


def hand_mean_pool(model_dir: str, texts: list[str], normalize: bool) -> np.ndarray:
    """Each text alone (no padding at all): encoder hidden states averaged over its tokens."""
    from transformers import AutoTokenizer, T5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = T5EncoderModel.from_pretrained(model_dir).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            hidden = model(input_ids=ids).last_hidden_state[0]  # (tokens, d)
            row = hidden.sum(dim=0) / hidden.shape[0]
            rows.append((row / row.norm()) if normalize else row)
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("normalize", [False, True])
def test_hf_mean_pooling_equals_hand_computation(tiny_t5, normalize):
    texts = CORPUS + ["brush", "nail"]  # lengths 8, 2, 7, 3, 1, 1: every batch of 4 is padded
    cfg = EncoderConfig(model=tiny_t5, batch_size=4, normalize=normalize)
    assert resolve_model(cfg).kind == "hf-mean"  # no modules.json
    embeddings = embed_items(texts, cfg, progress=False)
    assert embeddings.shape == (6, 16) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, hand_mean_pool(tiny_t5, texts, normalize), atol=1e-5)


def test_hf_mean_truncates_to_max_length(tiny_t5):
    long_text = CORPUS[0]  # 8 words
    truncated = embed_items([long_text], EncoderConfig(model=tiny_t5, max_length=3, normalize=False), progress=False)
    first_words = " ".join(long_text.split()[:3])
    np.testing.assert_allclose(truncated, hand_mean_pool(tiny_t5, [first_words], False), atol=1e-5)


@pytest.fixture(scope="module")
def minilm_texts() -> list[str]:
    return ["red matte lipstick", "matte red lip colour", "cordless power drill with two batteries"]


def test_default_minilm_gives_unit_vectors_with_sensible_similarities(minilm_texts):
    embeddings = embed_items(minilm_texts, EncoderConfig(), progress=False)
    assert embeddings.shape == (3, 384) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3


def test_hf_mean_path_reproduces_sentence_transformers_on_minilm(minilm_texts):
    """MiniLM's own pipeline is mean pooling + L2 norm: the hf-mean path must agree with it, and
    normalize=false must drop the Normalize layer of the sentence-transformers folder."""
    reference = embed_items(minilm_texts, EncoderConfig(), progress=False)
    raw_hf = embed_items(minilm_texts, EncoderConfig(kind="hf-mean", normalize=False), progress=False)
    raw_st = embed_items(minilm_texts, EncoderConfig(kind="sentence-transformers", normalize=False), progress=False)
    assert np.all(np.linalg.norm(raw_hf, axis=1) > 2.0)
    np.testing.assert_allclose(raw_st, raw_hf, atol=1e-4)
    np.testing.assert_allclose(raw_hf / np.linalg.norm(raw_hf, axis=1, keepdims=True), reference, atol=1e-5)


def test_cache_reuses_embeddings_and_keys_on_inputs(tiny_t5, tmp_path, monkeypatch):
    monkeypatch.setenv(encode.CACHE_ENV, str(tmp_path / "sidrec-cache"))
    calls = []
    real_embed = encode.embed_items
    def counting_embed(texts, cfg, progress):
        calls.append(1)
        return real_embed(texts, cfg, progress)

    monkeypatch.setattr(encode, "embed_items", counting_embed)
    cfg = EncoderConfig(model=tiny_t5)

    first, meta = load_or_embed("datasethash", "Title: {title}", CORPUS, cfg, progress=False)
    assert not meta["cached"] and len(calls) == 1
    assert meta["cache_path"].startswith(str(tmp_path / "sidrec-cache" / "embeddings"))
    assert (meta["dim"], meta["kind"], meta["num_texts"]) == (16, "hf-mean", 4)

    second, meta2 = load_or_embed("datasethash", "Title: {title}", CORPUS, cfg, progress=False)
    assert meta2["cached"] and len(calls) == 1
    np.testing.assert_array_equal(first, second)

    for changed in [
        ("otherhash", "Title: {title}", CORPUS, cfg),
        ("datasethash", "{title}", CORPUS, cfg),
        ("datasethash", "Title: {title}", CORPUS[:3], cfg),
        ("datasethash", "Title: {title}", CORPUS, EncoderConfig(model=tiny_t5, normalize=False)),
        ("datasethash", "Title: {title}", CORPUS, EncoderConfig(model=tiny_t5, max_length=2)),
    ]:
        _, meta = load_or_embed(*changed, progress=False)
        assert not meta["cached"]
    assert len(calls) == 6

    cfg_dir = EncoderConfig(model=tiny_t5, cache_dir=str(tmp_path / "explicit"))
    _, meta = load_or_embed("datasethash", "Title: {title}", CORPUS, cfg_dir, progress=False)
    assert meta["cache_path"].startswith(str(tmp_path / "explicit"))


def test_corrupt_cache_is_recomputed(tiny_t5, tmp_path):
    cfg = EncoderConfig(model=tiny_t5, cache_dir=str(tmp_path))
    first, meta = load_or_embed("h", "t", CORPUS, cfg, progress=False)
    with open(meta["cache_path"], "wb") as fh:
        fh.write(b"not a numpy file")
    again, meta = load_or_embed("h", "t", CORPUS, cfg, progress=False)
    assert not meta["cached"]
    np.testing.assert_allclose(again, first, atol=1e-6)


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        ({"model": "/definitely/not/here"}, ["encoder.model='/definitely/not/here'", "no such model directory"]),
        ({"kind": "onnx"}, ["encoder.kind='onnx'", "hf-mean"]),
        ({"device": "tpu"}, ["encoder.device='tpu'"]),
        ({"batch_size": 0}, ["encoder.batch_size=0"]),
    ],
)
def test_configuration_errors_are_one_line(overrides, fragments):
    with pytest.raises(ConfigError) as info:
        embed_items(["text"], EncoderConfig(**overrides), progress=False)
    assert "\n" not in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_folders_that_are_not_models(tmp_path):
    with pytest.raises(ConfigError, match="not a model folder"):
        resolve_model(EncoderConfig(model=str(tmp_path)))
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(ConfigError, match="cannot load as a Hugging Face model") as info:
        embed_items(["text"], EncoderConfig(model=str(tmp_path)), progress=False)
    assert "\n" not in str(info.value)


def test_uncached_hub_name_offline_is_a_config_error():
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 (the test must not reach the network)")
    with pytest.raises(ConfigError, match="not in the Hugging Face cache"):
        resolve_model(EncoderConfig(model="sidrec-test/no-such-model"))


def test_empty_text_list_is_a_data_error():
    with pytest.raises(DataError):
        embed_items([], EncoderConfig(), progress=False)
