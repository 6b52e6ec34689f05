import numpy as np
import torch

from sidrec.tokenize.batching import TokenBatcher
from sidrec.tokenize.vocab import BOS, PAD, SIDVocab


def make_batcher(num_user_tokens=0):
    vocab = SIDVocab((4, 4, 2), num_user_tokens)
    codes = np.array([[0, 1, 0], [3, 2, 1], [1, 1, 0]])
    return TokenBatcher(vocab.sid_to_tokens(codes), vocab), vocab


def test_histories_become_flat_left_padded_tokens():
    batcher, vocab = make_batcher()
    input_ids, mask = batcher.inputs(torch.tensor([[-1, 0, 1], [2, 2, 0]]))
    off = vocab.level_offsets
    assert input_ids.shape == (2, 9)
    assert input_ids[0, :3].tolist() == [PAD] * 3 and not mask[0, :3].any()
    assert input_ids[0, 3:6].tolist() == [off[0] + 0, off[1] + 1, off[2] + 0]
    assert input_ids[1, 6:].tolist() == [off[0] + 0, off[1] + 1, off[2] + 0]
    assert mask[1].all()


def test_targets_shift_right_with_bos():
    batcher, vocab = make_batcher()
    dec_in, labels = batcher.targets(torch.tensor([1]))
    assert labels.tolist() == [vocab.sid_to_tokens(np.array([3, 2, 1])).tolist()]
    assert dec_in.tolist() == [[BOS, labels[0, 0].item(), labels[0, 1].item()]]


def test_user_token_is_prepended_and_in_range():
    batcher, vocab = make_batcher(num_user_tokens=5)
    input_ids, mask = batcher.inputs(torch.tensor([[0, 1], [1, 2]]), users=torch.tensor([10, 11]))
    assert input_ids.shape == (2, 7)
    assert ((input_ids[:, 0] >= vocab.user_offset) & (input_ids[:, 0] < vocab.size)).all()
    assert mask[:, 0].all()


def test_columns_padded_in_every_row_are_dropped_without_changing_model_outputs():
    from sidrec.models import build_model
    from sidrec.config import model_config

    batcher, vocab = make_batcher(num_user_tokens=5)
    histories = torch.tensor([[-1, -1, 0, 1], [-1, -1, -1, 2]])
    users = torch.tensor([3, 4])
    input_ids, mask = batcher.inputs(histories, users)
    assert input_ids.shape == (2, 1 + 2 * 3)  # user token + the two item columns anyone uses
    assert mask[:, 0].all() and mask[0, 1:].all() and mask[1, 4:].all() and not mask[1, 1:4].any()
    # the full-width padded input gives the same scores under both architectures
    items = torch.where(histories < 0, batcher.num_items, histories)
    full_ids = torch.cat([torch.as_tensor(vocab.user_token(users.numpy()))[:, None], batcher.sid_tokens[items].flatten(1)], 1)
    for arch in ("encoder_decoder", "decoder_only"):
        cfg = model_config(arch, num_layers=1, num_heads=2, d_model=16, d_kv=8, d_ff=32, max_history=4,
                          num_user_tokens=5, dropout=0.0)
        torch.manual_seed(0)
        model = build_model(cfg, vocab.size, full_ids.shape[1], vocab.num_levels).eval()
        trimmed, _ = model.prefill(input_ids, mask)
        full, _ = model.prefill(full_ids, full_ids != PAD)
        torch.testing.assert_close(trimmed, full, atol=1e-5, rtol=1e-5)
    assert make_batcher()[0].inputs(torch.tensor([[0, 1]]))[0].shape == (1, 6)  # nothing to drop


def test_sequence_windows_label_every_item_but_the_first():
    batcher, vocab = make_batcher()
    tokens = vocab.sid_to_tokens(np.array([[0, 1, 0], [3, 2, 1], [1, 1, 0]]))
    input_ids, mask, labels = batcher.sequence(torch.tensor([[-1, 0, 1], [2, 0, 1]]))
    full = [*tokens[2], *tokens[0], *tokens[1]]
    assert input_ids.shape == labels.shape == (2, 8)
    assert input_ids[1].tolist() == full[:-1] and mask[1].all()
    assert labels[1].tolist() == [PAD, PAD] + full[3:]  # item 2 is context only
    # Row 0: one padding item (columns kept, since row 1 uses them), then items 0 -> 1
    assert input_ids[0, 3:].tolist() == [*tokens[0], *tokens[1][:-1]] and not mask[0, :3].any()
    assert labels[0].tolist() == [PAD] * 5 + list(tokens[1])


def test_sequence_with_user_tokens_keeps_the_user_token_unlabelled():
    batcher, vocab = make_batcher(num_user_tokens=5)
    input_ids, mask, labels = batcher.sequence(torch.tensor([[0, 1]]), torch.tensor([3]))
    assert input_ids[0, 0].item() == vocab.user_token(np.array([3]))[0]
    assert labels[0, :3].tolist() == [PAD] * 3 and labels[0, 3:].tolist() == vocab.sid_to_tokens(np.array([3, 2, 1])).tolist()
