import numpy as np
import torch

from sidrec.batching import TokenBatcher
from sidrec.vocab import BOS, PAD, SIDVocab


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
