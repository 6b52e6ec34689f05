import math

import pytest

from sidrec.errors import DataError
from sidrec.recommender import Recommender


@pytest.fixture(scope="module")
def rec(finished_run):
    return Recommender.load(finished_run)


def test_recommend_returns_distinct_catalog_items_with_sids(rec):
    out = rec.recommend(["1", "5", "9"], k=5)
    assert 0 < len(out) <= 5
    assert len({r.index for r in out}) == len(out)
    for r in out:
        assert rec.dataset.items[r.index]["item_id"] == r.item_id
        assert r.sid == rec.sid_table.sids[r.index].tolist()
        assert r.title and r.asin
    scores = [r.score for r in out]
    assert scores == sorted(scores, reverse=True)


def test_histories_by_asin_and_by_item_id_agree(rec):
    by_id = rec.recommend(["3", "7"], k=5)
    by_asin = rec.recommend(["B000000003", "B000000007"], k=5)
    assert [r.index for r in by_id] == [r.index for r in by_asin]


def test_exclude_is_honoured(rec):
    first = rec.recommend(["2", "6"], k=3)
    banned = [first[0].item_id]
    again = rec.recommend(["2", "6"], k=3, exclude=banned)
    assert banned[0] not in [r.item_id for r in again]


def test_unknown_items_error_or_skip(rec):
    with pytest.raises(DataError, match="'nope' is not in the catalog"):
        rec.recommend(["1", "nope"])
    rec.cfg.decode.unknown_items = "skip"
    try:
        with pytest.warns(UserWarning, match="skipped"):
            assert rec.recommend(["1", "nope"], k=3) == rec.recommend(["1"], k=3)
    finally:
        rec.cfg.decode.unknown_items = "error"


def test_empty_history_falls_back_to_popular_items(rec):
    out = rec.recommend([], k=4)
    assert len(out) == 4 and all(math.isnan(r.score) for r in out)
    batch = rec.recommend_many([[], ["1", "2"]], k=4)
    assert [r.index for r in batch[0]] == [r.index for r in out]
    assert all(not math.isnan(r.score) for r in batch[1])


def test_model_overrides_the_model_file_cannot_honour_are_refused(finished_run):
    from sidrec.errors import ConfigError

    trained = Recommender.load(finished_run).cfg.model.max_history
    with pytest.raises(ConfigError, match=f"model.max_history={trained + 1}: .*model.pt was trained with {trained}"):
        Recommender.load(finished_run, overrides=[f"model.max_history={trained + 1}"])
    with pytest.raises(ConfigError, match="model.d_model=7: .*fixed when the model is trained"):
        Recommender.load(finished_run, overrides=["model.d_model=7"])
    shorter = Recommender.load(finished_run, overrides=[f"model.max_history={trained - 1}"])
    assert len(shorter.recommend(["1", "2", "3", "4", "5", "6"], k=3)) == 3
