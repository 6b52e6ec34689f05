"""SID <-> item table (de-dup, lookup, cold start, artifact) and SID diagnostics."""

import numpy as np
import pytest

from sidrec.errors import ArtifactError, ConfigError, DataError
from sidrec.io import write_npz
from sidrec.tokenize import SIDTable, format_diagnostics, sid_diagnostics

# Items 0, 1 and 3 share the code (0, 1); item 4 shares (2, 3) with item 2.
CODES = np.array([[0, 1], [0, 1], [2, 3], [0, 1], [2, 3], [3, 0]])


def test_extra_digit_numbers_collisions_in_item_order():
    table = SIDTable.build(CODES, num_codes_per_level=4, dedup="extra_digit")
    assert table.sids.dtype == np.int64 and table.sids.shape == (6, 3)
    assert np.array_equal(table.sids[:, :2], CODES)
    assert table.sids[:, 2].tolist() == [0, 1, 0, 2, 1, 0]
    assert table.level_sizes == (4, 4, 3)
    assert len(np.unique(table.sids, axis=0)) == table.num_items == 6


def test_extra_digit_makes_random_codes_unique():
    codes = np.random.default_rng(0).integers(0, 3, size=(500, 2))  # only 9 distinct codes
    table = SIDTable.build(codes, 3, "extra_digit")
    assert len(np.unique(table.sids, axis=0)) == 500
    assert np.array_equal(table.lookup(table.sids), np.arange(500))


def test_lookup_unknown_sids_give_minus_one():
    table = SIDTable.build(CODES, 4, "extra_digit")
    queries = np.array([[0, 1, 2], [0, 1, 3], [1, 1, 0], [0, 5, 0], [-1, 1, 0], [3, 0, 0]])
    # (0,1,3): digit beyond the group; (0,5,0): code 5 >= W would alias (1,1,0) as a key
    assert table.lookup(queries).tolist() == [3, -1, -1, -1, -1, 5]


def test_lookup_checks_sid_length():
    with pytest.raises(ValueError, match=r"\(M, 3\)"):
        SIDTable.build(CODES, 4, "extra_digit").lookup(CODES)


def test_random_dedup_picks_within_group_and_is_seeded():
    table = SIDTable.build(CODES, 4, "random")
    assert table.sids.shape == (6, 2) and table.level_sizes == (4, 4)
    queries = np.repeat([[0, 1], [3, 0], [1, 2]], 200, axis=0)
    picks = table.lookup(queries, rng=np.random.default_rng(7))
    assert set(picks[:200]) == {0, 1, 3}  # every member of the group gets picked
    assert set(picks[200:400]) == {5} and set(picks[400:]) == {-1}
    assert np.array_equal(picks, table.lookup(queries, rng=np.random.default_rng(7)))
    assert not np.array_equal(picks, table.lookup(queries, rng=np.random.default_rng(8)))
    with pytest.raises(ValueError, match="rng"):
        table.lookup(queries)


def test_items_of():
    assert SIDTable.build(CODES, 4, "random").items_of([0, 1]).tolist() == [0, 1, 3]
    extra = SIDTable.build(CODES, 4, "extra_digit")
    assert extra.items_of([2, 3, 1]).tolist() == [4]
    assert extra.items_of([2, 3, 2]).tolist() == []


def test_add_items_keeps_old_sids():
    table = SIDTable.build(CODES, 4, "extra_digit")
    grown = table.add_items(np.array([[0, 1], [1, 1], [0, 1]]))
    assert np.array_equal(grown.sids[:6], table.sids)
    assert grown.sids[6:].tolist() == [[0, 1, 3], [1, 1, 0], [0, 1, 4]]
    assert grown.level_sizes == (4, 4, 5) and grown.num_items == 9
    assert grown.lookup(grown.sids[6:]).tolist() == [6, 7, 8]
    assert table.num_items == 6  # the original is unchanged


def test_build_validates_codes_and_dedup():
    with pytest.raises(DataError, match=r"\[0, 4\)"):
        SIDTable.build(CODES + 1, 4, "extra_digit")
    with pytest.raises(ConfigError, match="'hash'"):
        SIDTable.build(CODES, 4, "hash")


@pytest.mark.parametrize("dedup", ["extra_digit", "random"])
def test_save_load_round_trip(tmp_path, dedup):
    table = SIDTable.build(CODES, 4, dedup)
    table.save(tmp_path / "sid_table.npz")
    loaded = SIDTable.load(tmp_path / "sid_table.npz")
    assert loaded.dedup == dedup and loaded.level_sizes == table.level_sizes
    assert np.array_equal(loaded.codes, table.codes) and np.array_equal(loaded.sids, table.sids)


def test_load_rejects_corrupt_or_inconsistent_files(tmp_path):
    path = tmp_path / "sid_table.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="sid_table.npz.*not a readable"):
        SIDTable.load(path)
    table = SIDTable.build(CODES, 4, "extra_digit")
    write_npz(path, codes=table.codes, sids=table.sids)
    with pytest.raises(ArtifactError, match="lacks the array.*dedup, level_sizes"):
        SIDTable.load(path)
    edited = table.sids.copy()
    edited[1, 2] = 0  # two items now share a SID
    header = {"dedup": np.array("extra_digit"), "level_sizes": np.array(table.level_sizes)}
    write_npz(path, codes=table.codes, sids=edited, **header)
    with pytest.raises(ArtifactError, match="inconsistent"):
        SIDTable.load(path)
    write_npz(path, codes=table.codes.astype(np.float32), sids=table.sids, **header)
    with pytest.raises(ArtifactError, match="wrong shapes or types"):
        SIDTable.load(path)
    with pytest.raises(ArtifactError, match="not found"):
        SIDTable.load(tmp_path / "missing.npz")


def test_diagnostics_on_hand_made_codes():
    # Level 0 uses 2 of 4 codes evenly, level 1 all 4 evenly; (0,0) and (1,3) are shared by 2 items.
    codes = np.array([[0, 0], [0, 0], [0, 1], [0, 2], [1, 3], [1, 1], [1, 2], [1, 3]])
    diag = sid_diagnostics(codes, num_codes_per_level=4, reconstruction_error=0.25)
    assert diag["utilisation"] == [0.5, 1.0]
    assert diag["perplexity"] == pytest.approx([2.0, 4.0])
    assert diag["distinct_sids"] == 6 and diag["max_collision_group"] == 2
    assert diag["collision_rate"] == 0.5
    assert diag["reconstruction_error"] == 0.25
    text = format_diagnostics(diag, title="RK-Means")
    assert text.splitlines()[0] == "RK-Means" and "50.0%" in text and "0.2500" in text


def test_diagnostics_skewed_usage_and_no_reconstruction():
    codes = np.array([[0], [0], [0], [1]])
    diag = sid_diagnostics(codes, 2, None)
    p = np.array([0.75, 0.25])
    assert diag["perplexity"][0] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert diag["collision_rate"] == 0.75 and diag["max_collision_group"] == 3
    assert "n/a" in format_diagnostics(diag)


def test_neighbour_agreement_counts_items_whose_text_neighbour_shares_their_prefix():
    from sidrec.tokenize.diagnostics import neighbour_agreement

    # two tight pairs far apart: 0~1, 2~3 (cosine); pair 0-1 shares both codes, pair 2-3 the first only
    embeddings = np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 0, 1], [0, 0.1, 0.99]])
    codes = np.array([[0, 0], [0, 0], [1, 2], [1, 3]])
    assert neighbour_agreement(codes, embeddings) == [1.0, 0.5]
    swapped = np.array([[0, 0], [1, 0], [1, 2], [1, 3]])  # item 0's neighbour (1) has another first code
    assert neighbour_agreement(swapped, embeddings) == [0.5, 0.0]  # a later level needs the earlier ones
    assert neighbour_agreement(codes, embeddings, max_queries=2) == [1.0, 0.5]  # items 0 and 3 asked
    diag = {**sid_diagnostics(codes, 4, None), "neighbour_agreement": [1.0, 0.5]}
    assert "text neighbour shares   1 code 100.0%, 2 codes 50.0%" in format_diagnostics(diag)


def test_dedup_reserve_leaves_digit_values_for_added_items(tmp_path):
    codes = np.array([[0, 1], [0, 1], [2, 3]])
    table = SIDTable.build(codes, 4, "extra_digit", reserve=2)
    assert table.level_sizes == (4, 4, 4)  # largest group 2, plus 2 spare values
    table.save(tmp_path / "t.npz")
    assert SIDTable.load(tmp_path / "t.npz").level_sizes == (4, 4, 4)
    grown = table.add_items(np.array([[0, 1], [0, 1]]))  # group of 4 still fits: vocabulary unchanged
    assert grown.level_sizes == (4, 4, 4)
    assert grown.sids[3:].tolist() == [[0, 1, 2], [0, 1, 3]]
    assert table.add_items(np.array([[0, 1]] * 3)).level_sizes == (4, 4, 5)  # outgrown: the caller refuses it
    assert SIDTable.build(codes, 4, "random", reserve=2).level_sizes == (4, 4)
