"""sidrec/evaluate/lookup.py: the text lookup's full-catalog scores and ranking, checked by hand."""

import numpy as np
import pytest
import torch

from sidrec.evaluate.lookup import recency_weights, text_lookup_rank, text_lookup_scores, unit_rows

# five items in 2-D: 0 and 1 point right, 2 up, 3 up-right, 4 left
EMB = np.array([[2.0, 0.0], [1.0, 0.1], [0.0, 3.0], [1.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
UNIT = EMB / np.linalg.norm(EMB, axis=1, keepdims=True)


def test_scores_are_cosine_similarities_to_the_last_item_with_the_history_excluded():
    histories = np.array([[-1, 2, 0], [4, 1, 3]])
    scores = text_lookup_scores(EMB, histories).numpy()
    assert scores.shape == (2, 5)
    assert np.isneginf(scores[0, [0, 2]]).all() and np.isneginf(scores[1, [1, 3, 4]]).all()
    np.testing.assert_allclose(scores[0, [1, 3, 4]], UNIT[[1, 3, 4]] @ UNIT[0], rtol=1e-6)
    np.testing.assert_allclose(scores[1, [0, 2]], UNIT[[0, 2]] @ UNIT[3], rtol=1e-6)


def test_without_history_exclusion_only_the_query_items_are_excluded():
    histories = np.array([[1, 2, 0]])
    scores = text_lookup_scores(EMB, histories, exclude_history=False).numpy()[0]
    assert np.isneginf(scores[0]) and np.isfinite(scores[[1, 2, 3, 4]]).all()
    scores = text_lookup_scores(EMB, histories, last_n=2, exclude_history=False).numpy()[0]
    assert np.isneginf(scores[[0, 2]]).all() and np.isfinite(scores[[1, 3, 4]]).all()


def test_padding_never_masks_item_zero():
    scores = text_lookup_scores(EMB, np.array([[-1, -1, 3]])).numpy()[0]
    assert np.isfinite(scores[0]) and np.isneginf(scores[3])


def test_last_n_averages_the_recent_items_with_recency_weights():
    histories = np.array([[4, 2, 0], [-1, -1, 0]])  # the second user has one item: last_n=3 uses it alone
    scores = text_lookup_scores(EMB, histories, last_n=3, decay=0.5, exclude_history=False).numpy()
    query = 0.25 * UNIT[4] + 0.5 * UNIT[2] + 1.0 * UNIT[0]
    query /= np.linalg.norm(query)
    np.testing.assert_allclose(scores[0, [1, 3]], UNIT[[1, 3]] @ query, rtol=1e-6)
    np.testing.assert_allclose(scores[1, 1:], UNIT[1:] @ UNIT[0], rtol=1e-6)
    assert recency_weights(3, 0.5).tolist() == [0.25, 0.5, 1.0]
    plain = text_lookup_scores(EMB, histories[:1], last_n=2, decay=1.0, exclude_history=False).numpy()[0]
    mean = (UNIT[2] + UNIT[0]) / np.linalg.norm(UNIT[2] + UNIT[0])
    np.testing.assert_allclose(plain[[1, 3, 4]], UNIT[[1, 3, 4]] @ mean, rtol=1e-6)


def test_an_empty_history_scores_every_item_zero():
    assert text_lookup_scores(EMB, np.array([[-1, -1]])).numpy().tolist() == [[0.0] * 5]


def test_prenormalised_embeddings_and_torch_inputs_give_the_same_scores():
    histories = np.array([[2, 0], [1, 3]])
    expected = text_lookup_scores(EMB, histories)
    again = text_lookup_scores(unit_rows(EMB), torch.from_numpy(histories), normalized=True)
    assert torch.equal(expected, again)
    with pytest.raises(ValueError, match="histories must be"):
        text_lookup_scores(EMB, np.array([1, 2]))


def test_rank_is_the_batched_top_k_and_pads_when_items_run_out():
    histories = np.array([[-1, 2, 0], [4, 1, 3], [0, 1, 2]])
    ranked = text_lookup_rank(EMB, histories, k=4, batch_size=2)
    full = text_lookup_scores(EMB, histories).numpy()
    for row, scores in zip(ranked, full):
        finite = np.flatnonzero(np.isfinite(scores))
        best = finite[np.argsort(-scores[finite], kind="stable")]
        assert row.tolist() == [*best[:4], *[-1] * (4 - len(best[:4]))]
    assert ranked[0].tolist() == [1, 3, 4, -1] and ranked[2].tolist() == [3, 4, -1, -1]
