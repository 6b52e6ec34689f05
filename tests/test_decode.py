import itertools

import numpy as np
import pytest
import torch

from sidrec.config import model_config
from sidrec.decode import PrefixTrie, beam_search, recommend
from sidrec.decode.trie import unique_rows
from sidrec.models import build_model
from sidrec.tokenize.vocab import BOS, PAD, SIDVocab

VOCAB = SIDVocab(level_sizes=(4, 3, 3), num_user_tokens=5)  # 36 possible SIDs, vocab of 17 tokens


class HashedPrefixModel:
    """Fake model for the decode protocol: the logits are a fixed random row chosen by a hash of the
    user's input and the tokens generated so far, so any prefix can be scored independently."""

    def __init__(self, vocab_size: int, seed: int, table_size: int = 10007):
        generator = torch.Generator().manual_seed(seed)
        self.table = 3 * torch.randn(table_size, vocab_size, generator=generator)

    def _logits(self, state):
        return self.table[state % len(self.table)]

    def prefill(self, input_ids, attention_mask):
        weights = torch.arange(1, input_ids.shape[1] + 1) * 7919
        state = (input_ids * attention_mask * weights).sum(-1) % 2_147_483_647
        return self._logits(state), state

    def decode_step(self, tokens, state):
        state = (state * 1_000_003 + tokens + 1) % 2_147_483_647
        return self._logits(state), state

    def reorder_cache(self, state, index):
        return state[index]


def random_users(batch_size, seed, seq_len=6):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, VOCAB.size, (batch_size, seq_len), generator=generator)
    attention_mask = torch.ones(batch_size, seq_len, dtype=torch.bool)
    attention_mask[0, :2] = False  # some left padding
    return input_ids, attention_mask


def random_catalog(num_items, seed):
    """``num_items`` distinct SIDs as token ids (N, 3)."""
    all_codes = np.array(list(itertools.product(*(range(s) for s in VOCAB.level_sizes))))
    chosen = np.random.default_rng(seed).choice(len(all_codes), num_items, replace=False)
    return VOCAB.sid_to_tokens(all_codes[chosen])


def brute_force_scores(model, input_ids, attention_mask, sid_tokens):
    """(B, N) log-probability of every SID for every user, by teacher forcing through the protocol."""
    batch_size, num_sids = len(input_ids), len(sid_tokens)
    logits, cache = model.prefill(input_ids, attention_mask)
    cache = model.reorder_cache(cache, torch.arange(batch_size).repeat_interleave(num_sids))
    logits = logits.repeat_interleave(num_sids, dim=0)
    tokens = torch.as_tensor(sid_tokens).repeat(batch_size, 1)
    scores = torch.zeros(batch_size * num_sids)
    for level in range(tokens.shape[1]):
        if level > 0:
            logits, cache = model.decode_step(tokens[:, level - 1], cache)
        scores += logits.log_softmax(-1).gather(1, tokens[:, level:level + 1]).squeeze(1)
    return scores.view(batch_size, num_sids)


# ---- trie -------------------------------------------------------------------------------------

def test_trie_layout_by_hand():
    sids = np.array([[2, 7], [2, 5], [3, 5], [2, 5]])  # a duplicate, stored once
    trie = PrefixTrie.from_sids(sids, vocab_size=8)
    # Nodes: 0 root; 1 "2", 2 "3"; 3 "2 5", 4 "2 7", 5 "3 5".
    assert trie.num_nodes == 6 and len(trie) == 3 and trie.first_leaf == 3
    assert trie.child_offsets.tolist() == [0, 2, 4, 5, 5, 5, 5]
    assert trie.child_tokens.tolist() == [2, 3, 5, 7, 5]
    assert trie.child_nodes.tolist() == [1, 2, 3, 4, 5]
    assert trie.sids.tolist() == [[2, 5], [2, 7], [3, 5]]


def test_trie_masks_and_advance_match_prefix_sets():
    sids = random_catalog(20, seed=1)
    trie = PrefixTrie.from_sids(sids, VOCAB.size)
    prefixes = {tuple(s[:d]) for s in sids.tolist() for d in range(4)}
    # Walk every possible token path of length <= 3 through the trie, vectorised per depth.
    paths = [()]
    nodes = trie.root(1)
    for depth in range(3):
        mask = trie.next_token_mask(nodes)
        assert mask.shape == (len(paths), VOCAB.size)
        for row, path in enumerate(paths):
            allowed = {t for t in range(VOCAB.size) if path + (t,) in prefixes}
            assert set(mask[row].nonzero().flatten().tolist()) == allowed
        # Also the mask over one level's range only.
        start, width = VOCAB.level_offsets[depth], VOCAB.level_sizes[depth]
        assert torch.equal(trie.next_token_mask(nodes, start, start + width), mask[:, start:start + width])
        tokens = torch.arange(VOCAB.size)
        children = trie.advance(nodes.repeat_interleave(VOCAB.size), tokens.repeat(len(paths)))
        paths = [p + (t,) for p in paths for t in range(VOCAB.size)]
        for path, child in zip(paths, children.tolist()):
            assert (child >= 0) == (path in prefixes)
        nodes = children
    leaves = nodes[nodes >= 0] - trie.first_leaf
    assert sorted(map(tuple, trie.sids[leaves.numpy()].tolist())) == sorted(map(tuple, sids.tolist()))


def test_trie_add_sids_for_cold_start_items():
    sids = random_catalog(25, seed=2)
    trie = PrefixTrie.from_sids(sids[:20], VOCAB.size).add_sids(sids[20:])
    full = PrefixTrie.from_sids(sids, VOCAB.size)
    assert torch.equal(trie.child_offsets, full.child_offsets)
    assert torch.equal(trie.child_tokens, full.child_tokens)
    assert len(trie) == 25


def test_trie_rejects_bad_input():
    with pytest.raises(ValueError):
        PrefixTrie.from_sids(np.zeros((0, 3), dtype=np.int64))
    with pytest.raises(ValueError):
        PrefixTrie.from_sids(np.array([[2, 9]]), vocab_size=5)


@pytest.mark.parametrize("radix", [7, 2**40])  # one int64 key per row; too wide for one: np.unique's row sort
def test_unique_rows_equals_numpy_unique_over_rows(radix):
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 7, (300, 3))  # 343 possible rows: many duplicates
    rows[:5] = [radix - 1, 0, radix - 1]  # the largest value keys exactly
    assert np.array_equal(unique_rows(rows, radix), np.unique(rows, axis=0))


# ---- beam search ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constrained_beam_search_is_exact_when_beams_cover_the_catalog(seed):
    """With num_beams >= items no prefix is ever pruned, so beam search must equal brute force."""
    sids = random_catalog(30, seed)
    model = HashedPrefixModel(VOCAB.size, seed)
    input_ids, attention_mask = random_users(4, seed)
    trie = PrefixTrie.from_sids(sids, VOCAB.size)
    beams, scores = beam_search(model, input_ids, attention_mask, VOCAB, num_beams=32, trie=trie)
    assert beams.shape == (4, 32, 3) and scores.shape == (4, 32)

    expected = brute_force_scores(model, input_ids, attention_mask, sids)
    expected_scores, order = expected.sort(dim=1, descending=True)
    assert torch.allclose(scores[:, :30], expected_scores, atol=1e-5)
    assert torch.equal(beams[:, :30], torch.as_tensor(sids)[order])
    # Only 30 valid SIDs exist: the 2 extra beams are reported invalid.
    assert torch.isneginf(scores[:, 30:]).all() and (beams[:, 30:] == PAD).all()


def test_free_form_beam_search_is_exact_over_all_code_combinations():
    model = HashedPrefixModel(VOCAB.size, seed=5)
    input_ids, attention_mask = random_users(3, seed=5)
    beams, scores = beam_search(model, input_ids, attention_mask, VOCAB, num_beams=36, trie=None)
    all_sids = VOCAB.sid_to_tokens(np.array(list(itertools.product(*(range(s) for s in VOCAB.level_sizes)))))
    expected = brute_force_scores(model, input_ids, attention_mask, all_sids)
    expected_scores, order = expected.sort(dim=1, descending=True)
    assert torch.allclose(scores, expected_scores, atol=1e-5)
    assert torch.equal(beams, torch.as_tensor(all_sids)[order])


@pytest.mark.parametrize("seed", range(6))
def test_constrained_never_emits_an_invalid_sid(seed):
    sids = random_catalog(12, seed)
    valid = set(map(tuple, sids.tolist()))
    model = HashedPrefixModel(VOCAB.size, 100 + seed)
    input_ids, attention_mask = random_users(8, seed)
    beams, scores = beam_search(model, input_ids, attention_mask, VOCAB, 5, PrefixTrie.from_sids(sids, VOCAB.size))
    assert torch.isfinite(scores).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    assert all(tuple(b) in valid for b in beams.view(-1, 3).tolist())
    for user_beams in beams.tolist():  # no duplicate beams
        assert len(set(map(tuple, user_beams))) == 5
    # Every beam's score is its teacher-forced log-probability.
    forced = brute_force_scores(model, input_ids, attention_mask, np.array(sorted(valid)))
    index = {sid: i for i, sid in enumerate(sorted(valid))}
    rows = torch.tensor([[index[tuple(b)] for b in user_beams] for user_beams in beams.tolist()])
    assert torch.allclose(scores, forced.gather(1, rows), atol=1e-5)


def test_free_form_may_emit_invalid_sids_and_recommend_drops_them():
    sids = random_catalog(6, seed=3)  # a sparse catalog: most of the 36 SIDs are no item
    item_of = {tuple(VOCAB.tokens_to_sid(s).tolist()): i for i, s in enumerate(sids)}
    lookup = lambda codes: np.array([item_of.get(tuple(c), -1) for c in codes.tolist()])  # noqa: E731
    model = HashedPrefixModel(VOCAB.size, seed=3)
    input_ids, attention_mask = random_users(8, seed=3)
    beams, _ = beam_search(model, input_ids, attention_mask, VOCAB, 10, trie=None)
    codes = VOCAB.tokens_to_sid(beams.view(-1, 3).numpy())
    assert (lookup(codes) < 0).any()
    items, scores = recommend(model, input_ids, attention_mask, VOCAB, None, lookup, k=10, num_beams=10)
    found = items >= 0
    assert found.sum() == (lookup(codes) >= 0).sum()
    # Found items come first, in beam order (descending score), then -1 / -inf.
    assert (found[:, :-1] >= found[:, 1:]).all()
    assert torch.isneginf(scores[~found]).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_batched_search_equals_one_user_at_a_time():
    sids = random_catalog(25, seed=4)
    trie = PrefixTrie.from_sids(sids, VOCAB.size)
    model = HashedPrefixModel(VOCAB.size, seed=4)
    input_ids, attention_mask = random_users(5, seed=4)
    beams, scores = beam_search(model, input_ids, attention_mask, VOCAB, 6, trie)
    for user in range(5):
        one_beams, one_scores = beam_search(model, input_ids[user:user + 1], attention_mask[user:user + 1], VOCAB, 6,
                                            trie)
        assert torch.equal(one_beams[0], beams[user])
        assert torch.allclose(one_scores[0], scores[user])


# ---- recommend --------------------------------------------------------------------------------

class FixedBeamsModel:
    """Prefers SID codes in a fixed order so recommend()'s post-processing is easy to check by hand:
    code c at level l has logit -c * (1.1 - 0.05 l), so with 2 codes per level the beams come out as
    (0,0,0), (0,0,1), (0,1,0), (1,0,0), (0,1,1), ... (no ties)."""

    def __init__(self, vocab: SIDVocab):
        self.logits = torch.full((vocab.size,), -100.0)
        for level, (start, width) in enumerate(zip(vocab.level_offsets, vocab.level_sizes)):
            self.logits[start:start + width] = -torch.arange(width, dtype=torch.float) * (1.1 - 0.05 * level)

    def prefill(self, input_ids, attention_mask):
        return self.logits.expand(len(input_ids), -1), len(input_ids)

    def decode_step(self, tokens, cache):
        return self.logits.expand(len(tokens), -1), cache

    def reorder_cache(self, cache, index):
        return len(index)


def test_recommend_maps_dedups_excludes_and_pads():
    vocab = SIDVocab((2, 2, 2))
    beam_order = [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0), (1, 1, 1)]
    # Item of each SID; (0,1,0) and (1,0,0) share item 7 (say, a random de-dup pick); (0,1,1) is no item.
    item_of = {(0, 0, 0): 5, (0, 0, 1): 3, (0, 1, 0): 7, (1, 0, 0): 7, (0, 1, 1): -1, (1, 0, 1): 9, (1, 1, 0): 2,
               (1, 1, 1): 4}
    calls = []

    def lookup(codes, rng=None):
        calls.append(rng)
        return np.array([item_of[tuple(c)] for c in codes.tolist()])

    model = FixedBeamsModel(vocab)
    input_ids, attention_mask = torch.ones(3, 2, dtype=torch.long), torch.ones(3, 2, dtype=torch.bool)
    trie = PrefixTrie.from_sids(vocab.sid_to_tokens(np.array(list(item_of))), vocab.size)
    beams, _ = beam_search(model, input_ids, attention_mask, vocab, 8, trie)
    assert [tuple(c) for c in vocab.tokens_to_sid(beams[0].numpy()).tolist()] == beam_order

    items, scores = recommend(model, input_ids, attention_mask, vocab, trie, lookup, k=4, num_beams=8)
    assert items.tolist() == [[5, 3, 7, 9]] * 3
    assert items.dtype == torch.long and scores.shape == (3, 4) and torch.isfinite(scores).all()

    exclude = [{3}, set(), {5, 7, 2, 100}]
    items, _ = recommend(model, input_ids, attention_mask, vocab, trie, lookup, k=4, num_beams=8, exclude=exclude)
    assert items.tolist() == [[5, 7, 9, 2], [5, 3, 7, 9], [3, 9, 4, -1]]
    padded = torch.tensor([[3, -1, -1, -1], [-1, -1, -1, -1], [5, 7, 2, 100]])
    items_padded, scores_padded = recommend(model, input_ids, attention_mask, vocab, trie, lookup, k=4, num_beams=8,
                                            exclude=padded)
    assert torch.equal(items_padded, items)
    assert torch.isneginf(scores_padded[2, 3]) and torch.isfinite(scores_padded[2, :3]).all()

    # More slots than beams: padded with -1; the rng reaches the lookup.
    rng = np.random.default_rng(0)
    items, _ = recommend(model, input_ids, attention_mask, vocab, trie, lookup, k=6, num_beams=3, rng=rng)
    assert items.tolist() == [[5, 3, 7, -1, -1, -1]] * 3
    assert calls[-1] is rng


# ---- the real model ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only"])
def test_beam_search_on_the_real_models_matches_teacher_forcing(arch):
    sids = random_catalog(30, seed=7)
    config = model_config(arch, num_layers=1, num_heads=2, d_model=32, d_kv=16, d_ff=64, dropout=0.0)
    torch.manual_seed(0)
    model = build_model(config, VOCAB.size, max_source_len=6, target_len=3).eval()
    input_ids, attention_mask = random_users(3, seed=7)
    beams, scores = beam_search(model, input_ids, attention_mask, VOCAB, 32, PrefixTrie.from_sids(sids, VOCAB.size))

    # Brute force with the model's own teacher-forcing forward (independent of its KV cache).
    targets = torch.as_tensor(sids).repeat(3, 1)
    decoder_input_ids = torch.cat([torch.full((len(targets), 1), BOS), targets[:, :-1]], dim=1)
    with torch.no_grad():
        logits, _ = model(input_ids.repeat_interleave(30, 0), attention_mask.repeat_interleave(30, 0),
                          decoder_input_ids)
    forced = logits.log_softmax(-1).gather(2, targets[:, :, None]).sum((1, 2)).view(3, 30)
    expected_scores, order = forced.sort(dim=1, descending=True)
    assert torch.allclose(scores[:, :30], expected_scores, atol=1e-4)
    assert torch.equal(beams[:, :30], torch.as_tensor(sids)[order])
