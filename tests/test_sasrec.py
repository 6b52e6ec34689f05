"""The SASRec network (sidrec/models/sasrec.py): causal, padding-invariant, trainable."""

import pytest
import torch

from sidrec.models.sasrec import SASRec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(**kw):
    torch.manual_seed(0)
    return SASRec(num_items=30, max_len=8, d_model=16, num_layers=2, num_heads=2, d_ff=32, dropout=0.0, **kw).eval()


def test_states_are_causal():
    model = _model()
    a = torch.tensor([[-1, -1, 3, 4, 5, 6]])
    b = torch.tensor([[-1, -1, 3, 4, 5, 29]])  # only the last item differs
    ha, hb = model.hidden(a), model.hidden(b)
    assert torch.allclose(ha[:, :5], hb[:, :5], atol=1e-6)
    assert not torch.allclose(ha[:, 5], hb[:, 5])


def test_scores_do_not_depend_on_left_padding():
    model = _model()
    short = torch.tensor([[7, 8, 9]])
    padded = torch.tensor([[-1, -1, -1, -1, -1, 7, 8, 9]])
    assert torch.allclose(model.score_last(short), model.score_last(padded), atol=1e-5)
    # a batch mixing lengths gives each row its own answer
    both = torch.tensor([[-1, -1, 7, 8, 9], [1, 2, 3, 4, 5]])
    assert torch.allclose(model.score_last(both)[0], model.score_last(short)[0], atol=1e-5)
    assert model.score_last(both).shape == (2, 30)


def test_loss_ignores_unlabelled_positions_and_trains():
    model = _model()
    model.train()
    x = torch.tensor([[-1, -1, 1, 2], [3, 4, 5, 6]])
    y = torch.tensor([[-1, -1, 2, 3], [4, 5, 6, 7]])
    loss = model.loss(x, y)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.item_emb.weight.grad is not None
