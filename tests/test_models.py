import pytest
import torch
import torch.nn.functional as F

from sidrec.config import model_config
from sidrec.errors import ConfigError
from sidrec.models import DecoderOnly, EncoderDecoder, build_model
from sidrec.tokenize.vocab import BOS, PAD

VOCAB = 40
SOURCE_LEN = 12
TARGET_LEN = 3
ARCHS = ["encoder_decoder", "decoder_only"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(arch: str, num_experts: int = 0, dropout: float = 0.0, seed: int = 0, **options):
    torch.manual_seed(seed)
    cfg = model_config(
        arch, num_layers=2, num_heads=2, d_model=32, d_kv=16, d_ff=64, dropout=dropout, num_experts=num_experts,
        **options,
    )
    return build_model(cfg, vocab_size=VOCAB, max_source_len=SOURCE_LEN, target_len=TARGET_LEN)


def padded_batch(lengths: list[int], layout: str = "left", seed: int = 1):
    """Random histories of the given lengths padded to SOURCE_LEN, and targets. Layouts: padding on
    the left or right, or ``user_token``: a first real token, then padding, then the history (as
    sidrec.tokenize.batching lays out TIGER's user token)."""
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.full((len(lengths), SOURCE_LEN), PAD)
    mask = torch.zeros(len(lengths), SOURCE_LEN, dtype=torch.bool)
    for row, n in enumerate(lengths):
        span = slice(0, n) if layout == "right" else slice(SOURCE_LEN - n, SOURCE_LEN)
        input_ids[row, span] = torch.randint(2, VOCAB, (n,), generator=gen)
        mask[row, span] = True
        if layout == "user_token":
            input_ids[row, 0] = VOCAB - 1
            mask[row, 0] = True
    targets = torch.randint(2, VOCAB, (len(lengths), TARGET_LEN), generator=gen)
    return input_ids, mask, targets


def shift_right(targets: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.full_like(targets[:, :1], BOS), targets[:, :-1]], dim=1)


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes_and_dense_aux_loss_is_zero(arch):
    model = tiny_model(arch)
    input_ids, mask, targets = padded_batch([12, 5, 1])
    logits, aux_loss = model(input_ids, mask, shift_right(targets))
    assert logits.shape == (3, TARGET_LEN, VOCAB)
    assert aux_loss.shape == () and aux_loss.item() == 0.0
    assert torch.isfinite(logits).all()


def test_build_model_maps_config():
    enc_dec, dec_only = tiny_model("encoder_decoder"), tiny_model("decoder_only")
    assert isinstance(enc_dec, EncoderDecoder) and len(enc_dec.encoder_blocks) == 2 and len(enc_dec.decoder_blocks) == 2
    assert isinstance(dec_only, DecoderOnly) and len(dec_only.blocks) == 4  # same layer budget
    # one TransformerConfig for both: each reads its own flag
    assert (enc_dec.cfg.num_layers, enc_dec.cfg.positions_from_end) == (2, False)
    assert (dec_only.cfg.num_layers, dec_only.cfg.bos_separator) == (4, True)
    assert tiny_model("encoder_decoder", positions="from_end").cfg.positions_from_end
    assert not tiny_model("decoder_only", objective="all_positions").cfg.bos_separator
    with pytest.raises(ConfigError, match="model.arch"):
        build_model(model_config("rnn"), VOCAB, SOURCE_LEN, TARGET_LEN)
    with pytest.raises(ConfigError, match="all_positions needs model.arch=decoder_only"):
        tiny_model("encoder_decoder", objective="all_positions")
    with pytest.raises(ConfigError, match="from_end is for encoder_decoder"):
        tiny_model("decoder_only", positions="from_end")


@pytest.mark.parametrize("layout", ["left", "right"])
def test_positions_from_end_give_the_latest_token_one_position_whatever_the_length(layout):
    model = tiny_model("encoder_decoder", positions="from_end").eval()
    input_ids, mask, targets = padded_batch([SOURCE_LEN - 1, 4, 1], layout=layout)
    logits, _ = model(input_ids, mask, shift_right(targets))
    for row in range(3):  # padding changes nothing
        alone_ids = input_ids[row : row + 1, mask[row]]
        alone, _ = model(alone_ids, torch.ones_like(alone_ids, dtype=torch.bool), shift_right(targets[row : row + 1]))
        torch.testing.assert_close(logits[row], alone[0], atol=1e-5, rtol=1e-5)
    # Same weights numbered from the start give another output on the long row
    start, _ = tiny_model("encoder_decoder").eval()(input_ids, mask, shift_right(targets))
    assert not torch.allclose(start[0], logits[0])


def test_all_positions_decoder_decodes_what_it_was_trained_on():
    """Without BOS, the history's last token predicts the first SID token: prefill and cached decoding
    agree with the one-pass sequence logits used in training."""
    model = tiny_model("decoder_only", objective="all_positions").eval()
    input_ids, mask, targets = padded_batch([SOURCE_LEN - 1, 5, 2], layout="left")
    sequence = torch.cat([input_ids, targets], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(targets, dtype=torch.bool)], dim=1)
    expected, _ = model.sequence_logits(sequence, full_mask)  # (B, S + T, V)
    logits, cache = model.prefill(input_ids, mask)
    torch.testing.assert_close(logits, expected[:, SOURCE_LEN - 1], atol=1e-5, rtol=1e-5)
    for step in range(TARGET_LEN - 1):
        logits, cache = model.decode_step(targets[:, step], cache)
        torch.testing.assert_close(logits, expected[:, SOURCE_LEN + step], atol=1e-5, rtol=1e-5)
    # A BOS-separated model of the same weights reads another sequence
    bos_model = tiny_model("decoder_only").eval()
    assert not torch.allclose(bos_model.prefill(input_ids, mask)[0], expected[:, SOURCE_LEN - 1])


@pytest.mark.parametrize("num_experts", [0, 4])
@pytest.mark.parametrize("layout", ["left", "right", "user_token"])
@pytest.mark.parametrize("arch", ARCHS)
def test_padded_row_matches_unpadded_row_alone(arch, layout, num_experts):
    model = tiny_model(arch, num_experts).eval()
    input_ids, mask, targets = padded_batch([SOURCE_LEN - 1, 4, 1], layout=layout)
    logits, _ = model(input_ids, mask, shift_right(targets))
    for row in range(3):
        alone_ids = input_ids[row : row + 1, mask[row]]
        alone_mask = torch.ones_like(alone_ids, dtype=torch.bool)
        alone_logits, _ = model(alone_ids, alone_mask, shift_right(targets[row : row + 1]))
        torch.testing.assert_close(logits[row], alone_logits[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_experts", [0, 4])
@pytest.mark.parametrize("arch", ARCHS)
def test_cached_decoding_matches_teacher_forcing(arch, num_experts):
    """Beam-search-like use: prefill per user, expand to beams, reorder beams (within and across
    users), and compare every step with the teacher-forced forward of each row's prefix."""
    model = tiny_model(arch, num_experts).eval()
    input_ids, mask, _ = padded_batch([SOURCE_LEN - 1, 5, 2], layout="user_token")
    beams = 2
    logits, cache = model.prefill(input_ids, mask)
    expected, _ = model(input_ids, mask, torch.full((3, 1), BOS))
    torch.testing.assert_close(logits, expected[:, 0], atol=1e-5, rtol=1e-5)

    row_user = torch.arange(3).repeat_interleave(beams)
    cache = model.reorder_cache(cache, row_user)
    generated = torch.empty(3 * beams, 0, dtype=torch.long)
    reorders = [
        torch.tensor([1, 0, 2, 3, 5, 4]),  # beams swapped within users: per-user tensors stay shared
        torch.tensor([0, 4, 4, 1, 3, 0]),  # rows moved across users: per-user tensors are copied per row
    ]
    gen = torch.Generator().manual_seed(2)
    for step in range(TARGET_LEN - 1):
        tokens = torch.randint(2, VOCAB, (3 * beams,), generator=gen)
        logits, cache = model.decode_step(tokens, cache)
        generated = torch.cat([generated, tokens[:, None]], dim=1)
        decoder_input_ids = torch.cat([torch.full((3 * beams, 1), BOS), generated], dim=1)
        expected, _ = model(input_ids[row_user], mask[row_user], decoder_input_ids)
        torch.testing.assert_close(logits, expected[:, -1], atol=1e-5, rtol=1e-5)
        index = reorders[step]
        cache = model.reorder_cache(cache, index)
        generated, row_user = generated[index], row_user[index]

    with pytest.raises(ValueError, match="cache is full"):  # BOS + TARGET_LEN - 1 tokens fill it
        model.decode_step(torch.full((3 * beams,), 2), cache)


@pytest.mark.parametrize("arch", ARCHS)
def test_mixture_of_experts_balances_and_uses_several_experts(arch):
    model = tiny_model(arch, num_experts=4)
    moe = model.encoder_blocks[0].ffn if arch == "encoder_decoder" else model.blocks[0].ffn
    used = set()
    for index, expert in enumerate(moe.experts):
        expert.register_forward_hook(lambda module, args, out, index=index: used.add(index))
    input_ids, mask, targets = padded_batch([12, 9, 7, 3])
    logits, aux_loss = model(input_ids, mask, shift_right(targets))
    assert aux_loss.item() > 0
    assert len(used) >= 3
    (F.cross_entropy(logits.flatten(0, 1), targets.flatten()) + aux_loss).backward()
    assert moe.router.weight.grad.abs().sum() > 0


def test_moe_aux_loss_is_one_when_balanced_and_larger_when_not():
    moe = tiny_model("encoder_decoder", num_experts=4).encoder_blocks[0].ffn
    tokens = torch.rand(1, 8, 32) + 0.5
    with torch.no_grad():
        moe.router.weight.zero_()  # uniform router probabilities
    _, aux_uniform = moe(tokens)
    assert aux_uniform.item() == pytest.approx(1.0)
    with torch.no_grad():
        moe.router.weight[0] = 1.0  # expert 0 gets nearly all the probability mass
    _, aux_skewed = moe(tokens)
    assert aux_skewed.item() > 1.5


def test_parameter_budget_differs_by_cross_attention_only():
    enc_dec, dec_only = tiny_model("encoder_decoder"), tiny_model("decoder_only")
    cross = sum(num_params(b.cross_attn) + num_params(b.cross_attn_norm) for b in enc_dec.decoder_blocks)
    extra_norm = num_params(enc_dec.encoder_norm)  # two stacks, two final norms
    # Positions: encoder-decoder has S + T (two tables), decoder-only S + T in one.
    assert num_params(enc_dec) - cross - extra_norm == num_params(dec_only)

    full = {arch: num_params(build_model(model_config(arch), 1026, 80, 4)) for arch in ARCHS}
    assert 0.8 < full["decoder_only"] / full["encoder_decoder"] < 0.85  # cross-attention is ~17%


@pytest.mark.parametrize("num_experts", [0, 4])
@pytest.mark.parametrize("arch", ARCHS)
def test_adam_learns_copy_task_and_gradients_reach_every_parameter(arch, num_experts):
    """History = one item repeated 1..4 times (left-padded); target = that item."""
    model = tiny_model(arch, num_experts, dropout=0.1)
    gen = torch.Generator().manual_seed(3)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    repeats = SOURCE_LEN // TARGET_LEN

    def batch():
        items = torch.randint(2, VOCAB, (64, TARGET_LEN), generator=gen)
        lengths = torch.randint(1, repeats + 1, (64, 1), generator=gen)
        mask = (torch.arange(repeats).flip(0)[None, :] < lengths).repeat_interleave(TARGET_LEN, dim=1)
        return items.repeat(1, repeats).masked_fill(~mask, PAD), mask, items

    losses = []
    for step in range(60):
        input_ids, mask, targets = batch()
        logits, aux_loss = model(input_ids, mask, shift_right(targets))
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        (loss + aux_loss).backward()
        if step == 0:
            silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not silent, f"no gradient reaches {silent}"
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


@pytest.mark.parametrize("causal", [False, True])
def test_cpu_bf16_attention_matches_sdpa(causal):
    from sidrec.models.layers import attention

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 7, 16, generator=gen) for _ in range(3))
    mask = None if causal else (torch.arange(7)[None, :] >= torch.tensor([[0], [3], [6]]))[:, None, None, :]
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    got = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), attn_mask=mask, is_causal=causal)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("arch", ARCHS)
def test_bf16_autocast_training_reaches_the_loss_of_fp32(arch):
    """Same model, data and optimizer, trained in fp32 and under CPU bf16 autocast: comparable loss."""
    repeats = SOURCE_LEN // TARGET_LEN

    def train(bf16: bool) -> float:
        model = tiny_model(arch, dropout=0.0)
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
        gen = torch.Generator().manual_seed(3)
        losses = []
        for _ in range(50):
            items = torch.randint(2, VOCAB, (64, TARGET_LEN), generator=gen)
            input_ids, mask = items.repeat(1, repeats), torch.ones(64, repeats * TARGET_LEN, dtype=torch.bool)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits, _ = model(input_ids, mask, shift_right(items))
            loss = F.cross_entropy(logits.float().flatten(0, 1), items.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return sum(losses[-5:]) / 5, sum(losses[:5]) / 5

    (fp32_end, start), (bf16_end, _) = train(False), train(True)
    assert fp32_end < 0.5 * start and bf16_end < 0.5 * start  # both learn
    assert abs(bf16_end - fp32_end) < 0.15 * start  # ... to a comparable loss



def test_check_model_accepts_every_preset_and_arch_and_refuses_what_cannot_be_built():
    """``check_model`` (run before any work) builds the network on the meta device: it accepts every
    preset's model and each arch, and refuses a setting the plug-in or torch cannot honour, in one line."""
    from sidrec.config import PRESETS, build_config
    from sidrec.models.registry import MODELS, check_model

    configs = [build_config([f"preset={preset}"]) for preset in PRESETS]
    configs += [build_config(["preset=tiny", f"model.arch={arch}"]) for arch in MODELS]
    for cfg in configs:
        check_model(cfg.model, cfg.tokenizer.num_levels, cfg.tokenizer.num_codes_per_level)
    for options, fragment in [(dict(arch="transformerz"), "model.arch='transformerz'"),
                              (dict(num_experts=2, moe_top_k=3), "moe_top_k=3"),
                              (dict(objective="sideways"), "model.objective='sideways'"),
                              (dict(arch="item_sid", num_heads=5), "divisible")]:
        with pytest.raises(ConfigError) as info:
            check_model(model_config(**options))
        assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_new_plugin_is_built_checked_and_reloaded_through_the_registry(toy_plugin):
    """A throwaway plug-in (tests/conftest.py) with an option of its own: the registry builds it from
    ``model.*``, checks it before any work, and rebuilds it from the model config model.pt stores."""
    import dataclasses

    from sidrec.config import build_config, stored_model_config
    from sidrec.models.registry import check_model

    cfg = build_config(["model.arch=toy", "model.toy_width=5"])
    model = build_model(cfg.model, VOCAB, SOURCE_LEN, TARGET_LEN)
    assert isinstance(model, torch.nn.Linear) and model.in_features == 5 and model.out_features == VOCAB
    check_model(cfg.model)
    stored = dataclasses.asdict(cfg.model)  # model.pt's model_config
    assert stored_model_config(stored, "model_config") == cfg.model
    loss, logged = toy_plugin.loss(model, {}, None, cfg.model, 0.0)
    assert set(logged) == {"loss"} and loss.ndim == 0
    with pytest.raises(ConfigError, match="model.arch=toy: expected its options"):  # another arch's options class
        build_model(dataclasses.replace(model_config("encoder_decoder"), arch="toy"), VOCAB, SOURCE_LEN, TARGET_LEN)
