import numpy as np
import pytest
import torch

from sidrec.decode.ranker import Ranker
from sidrec.run import RunDir


@pytest.fixture(scope="module")
def opened(finished_run):
    run = RunDir(finished_run)
    model, _ = run.model()
    samples = run.samples("test")
    return run, model, torch.from_numpy(samples.histories), torch.from_numpy(samples.users)


def test_a_prefilled_encoder_pass_gives_the_same_ranking_as_a_fresh_one(opened):
    run, model, histories, users = opened
    ranker = run.ranker()
    histories = histories.clone()
    histories[0] = -1  # an empty history row is skipped by both
    ranker.fallback_items = np.arange(run.dataset.num_items)
    fresh = ranker.rank(model, histories, users, 10, np.random.default_rng(0))
    prefilled = ranker.prefill(model, histories, users)
    reused = ranker.rank(model, histories, users, 10, np.random.default_rng(0), prefilled)
    again = ranker.rank(model, histories, users, 10, np.random.default_rng(0), prefilled)  # not consumed
    for a, b in [(fresh, reused), (fresh, again)]:
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_bf16_runs_the_network_in_bfloat16_and_returns_valid_items(opened):
    run, model, histories, users = opened
    seen = []
    original = model.prefill

    def spy(input_ids, attention_mask):
        logits, cache = original(input_ids, attention_mask)
        seen.append((logits.dtype, cache.cross_k.dtype))
        return logits, cache

    model.prefill = spy
    try:
        fp32 = run.ranker().rank(model, histories, users, 10, np.random.default_rng(0))
        bf16 = Ranker(run.sid_table, run.vocab, precision="bf16").rank(model, histories, users, 10,
                                                                       np.random.default_rng(0))
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as in validation under bf16 training
            run.ranker().rank(model, histories[:4], users[:4], 10, np.random.default_rng(0))
    finally:
        del model.prefill
    # bf16: the network (here its cross-attention keys) in bfloat16, the vocabulary projection in fp32;
    # fp32 keeps the caller's context, so under the trainer's autocast it runs like bf16
    assert seen == [(torch.float32, torch.float32), (torch.float32, torch.bfloat16), (torch.float32, torch.bfloat16)]
    assert ((bf16[0] >= 0) & (bf16[0] < run.dataset.num_items)).all()
    assert np.isfinite(bf16[1]).all() and (np.diff(bf16[1], axis=1) <= 0).all()
    assert (fp32[0][:, 0] == bf16[0][:, 0]).mean() > 0.5  # same network: mostly the same best item
    with pytest.raises(ValueError, match="precision='fp16'"):
        Ranker(run.sid_table, run.vocab, precision="fp16")
