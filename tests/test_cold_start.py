"""Cold start: add items to a finished run (sidrec.cold_start) without retraining.

Every test works on a copy of the session's finished run. Most replace the text encoder with a
fake that returns the stored embedding of the existing item with the same text (fast, exact);
one round trip uses the run's real encoder."""

import json
import os
import shutil
import stat

import numpy as np
import pytest
import torch

from sidrec import cold_start
from sidrec.cli import main
from sidrec.cold_start import add_items, current_generation, load_catalog, normalise_items
from sidrec.config import load_config
from sidrec.data.text import item_texts
from sidrec.errors import DataError
from sidrec.recommender import Recommender
from sidrec.run import load_dataset_files


@pytest.fixture
def fake_encoder(monkeypatch, finished_run):
    """Texts of existing items -> their stored embeddings (new items copy an existing item's text)."""
    cfg = load_config(finished_run / "config.json")
    dataset, _, embeddings = load_catalog(finished_run)
    texts = item_texts(dataset.items, cfg.data.text_template, cfg.data.missing_text, cfg.data.max_text_chars)
    by_text = {t: np.asarray(embeddings[i]) for i, t in enumerate(texts)}

    def embed(texts, cfg):
        return np.stack([by_text[t] for t in texts])

    monkeypatch.setattr(cold_start, "embed_items", embed)


def group_sizes(table) -> np.ndarray:
    """Per item: how many items share its raw code."""
    _, inverse, counts = np.unique(table.codes, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)]


def copy_of(item: dict, new_id: str) -> dict:
    """A new item with the same text fields as ``item``."""
    return {**{k: v for k, v in item.items() if k not in ("item_id", "asin")}, "item_id": new_id, "asin": f"X{new_id}"}


def assert_consistent(run_dir, num_items: int, sids: np.ndarray) -> Recommender:
    """The catalog on disk loads, describes ``num_items`` items with ``sids``, and the trie a
    Recommender builds holds exactly the table's SIDs."""
    dataset, table, embeddings = load_catalog(run_dir)
    assert dataset.num_items == table.num_items == len(embeddings) == num_items
    assert np.array_equal(table.sids, sids)
    rec = Recommender.load(run_dir)
    tokens = rec.ranker.vocab.sid_to_tokens(rec.sid_table.sids)
    trie = rec.ranker.trie
    assert len(trie) == len(np.unique(tokens, axis=0))
    nodes = trie.root(len(tokens))
    for level in range(tokens.shape[1]):
        nodes = trie.advance(nodes, torch.as_tensor(tokens[:, level]))
    assert (nodes >= 0).all()
    return rec


def test_round_trip_with_the_real_encoder(run_copy):
    rec = Recommender.load(run_copy)
    before = rec.sid_table.sids.copy()
    n, limit = len(before), rec.sid_table.level_sizes[-1]
    sizes = group_sizes(rec.sid_table)
    roomy = np.flatnonzero(sizes < limit)
    assert len(roomy), "fixture run has no code group with room for one more item"
    j = int(roomy[0])
    source = rec.dataset.items[j]

    added = rec.add_items([copy_of(source, "new-1")])
    assert [a.item_id for a in added] == ["new-1"] and added[0].index == n
    # Same text, same embedding, same code; the de-dup digit numbers it after the group's items.
    assert np.array_equal(rec.sid_table.codes[n], rec.sid_table.codes[j])
    assert added[0].sid == [*rec.sid_table.codes[j].tolist(), int(sizes[j])]
    assert np.array_equal(rec.sid_table.sids[:n], before)  # existing SIDs unchanged

    # Recommendable at once: with as many beams as SIDs the constrained search enumerates the whole
    # trie, so every item, the new one included, is returned.
    out = rec.recommend([source["item_id"]], k=n + 1)
    assert "new-1" in [r.item_id for r in out]
    assert len(rec.recommend(["new-1", "Xnew-1"], k=3)) == 3  # usable in histories, by id or ASIN
    assert rec.similar_items("new-1", k=1)[0].index == j

    # On disk: a fresh load sees it, the model's SID check still passes, evaluate still runs.
    again = assert_consistent(run_copy, n + 1, rec.sid_table.sids)
    assert again.describe("new-1").sid == added[0].sid
    assert current_generation(run_copy) == 1
    assert main(["evaluate", f"run_dir={run_copy}"]) == 0


def test_similar_items_prefer_shared_prefixes_then_embeddings(finished_run):
    rec = Recommender.load(finished_run)
    out = rec.similar_items("1", k=10)
    assert len(out) == 10 and rec.index_of("1") not in [r.index for r in out]
    codes = rec.sid_table.codes
    q = codes[rec.index_of("1")]
    shared = [int(np.cumprod(codes[r.index] == q).sum()) for r in out]
    assert shared == sorted(shared, reverse=True)
    for i in range(len(out) - 1):
        if shared[i] == shared[i + 1]:
            assert out[i].score >= out[i + 1].score - 1e-6
    with pytest.raises(DataError, match="not in the catalog"):
        rec.similar_items("nope")


def test_cli_add_items_and_its_errors(run_copy, fake_encoder, tmp_path, capsys):
    dataset, table, _ = load_catalog(run_copy)
    j = int(np.flatnonzero(group_sizes(table) < table.level_sizes[-1])[0])
    path = tmp_path / "new.jsonl"
    path.write_text(json.dumps(copy_of(dataset.items[j], "cli-1")) + "\n")
    assert main(["add-items", f"run_dir={run_copy}", f"items={path}"]) == 0
    assert "added 1 items" in capsys.readouterr().out
    assert_consistent(run_copy, dataset.num_items + 1, SIDTableOf(run_copy))
    umask = os.umask(0)
    os.umask(umask)
    for written in (run_copy / "catalog.gen-1", run_copy / "catalog.gen-1" / "items.jsonl"):
        full = 0o777 if written.is_dir() else 0o666
        assert stat.S_IMODE(written.stat().st_mode) == full & ~umask, written  # a service account can read it

    # Again: the id is now taken; nothing changes.
    assert main(["add-items", f"run_dir={run_copy}", f"items={path}"]) == 2
    assert "'cli-1' is already in the catalog" in capsys.readouterr().err
    path.write_text('{"item_id": "x", "title": "a"}\n{"item_id": "y", "title": \n')
    assert main(["add-items", f"run_dir={run_copy}", f"items={path}"]) == 2
    assert "new.jsonl:2: not valid JSON" in capsys.readouterr().err
    path.write_text('{"item_id": "z"}\n')
    assert main(["add-items", f"run_dir={run_copy}", f"items={path}"]) == 2
    assert "no text" in capsys.readouterr().err
    assert main(["add-items", f"run_dir={run_copy}"]) == 2
    assert current_generation(run_copy) == 1


@pytest.mark.parametrize("item, fragment", [
    ({"item_id": "a\ud800b", "title": "x"}, "new item 0.item_id: text with an unpaired surrogate '\\ud800' at position 1"),
    ({"item_id": "a", "title": "x\udfff"}, "new item 0.title: text with an unpaired surrogate"),
    ({"item_id": "a", "price": float("nan")}, "new item 0.price: nan is not a finite number"),
    ({"item_id": "a", "categories": [["x", float("inf")]]}, "new item 0.categories[0][1]: inf"),
    ({"item_id": "a", "title": b"x"}, "unsupported value of type bytes"),
], ids=["surrogate id", "surrogate title", "nan", "inf in a list", "bytes"])
def test_new_items_must_hold_writable_json(finished_run, item, fragment):

    with pytest.raises(DataError) as info:
        normalise_items([item], load_dataset_files(finished_run))
    assert fragment in str(info.value)


@pytest.mark.parametrize("item, fragment", [
    ({"item_id": "a", "title": 12345}, "new item 0.title: expected a string or null, got an integer"),
    ({"item_id": "a", "title": "x", "brand": ["b"]}, "new item 0.brand: expected a string or null, got an array"),
    ({"item_id": "a", "title": "x", "asin": 5}, "new item 0.asin: expected a string or null, got an integer"),
    ({"item_id": "a", "title": "x", "price": True}, "new item 0.price: expected a number, a string or null"),
    ({"item_id": "a", "title": "x", "categories": "Beauty"}, "new item 0.categories: expected a list"),
    ({"item_id": "a", "title": "x", "categories": [["Beauty", {}]]}, "new item 0.categories[0][1]: expected a string"),
    ({"item_id": "x" * 257, "title": "x"}, "new item 0.item_id: 257 characters; ids have at most 256"),
    ({"item_id": "a", "asin": "x" * 257, "title": "x"}, "new item 0.asin: 257 characters"),
    ({"item_id": -(2**63) - 1, "title": "x"}, "new item 0.item_id: integer ids must fit in 64 bits"),
    ({"item_id": "\u3000\x1c", "title": "x"}, "new item 0: needs an item_id"),
], ids=["title a number", "brand a list", "asin a number", "price a boolean", "categories a string",
        "category an object", "id too long", "asin too long", "id over 64 bits", "blank id"])
def test_new_items_fields_are_typed_and_ids_fit_every_endpoint(finished_run, item, fragment):
    """The fields the item table and the service's answers read have the types they expect, and an
    id is one /recommend accepts: else the item would be stored and then break, or be unreachable."""

    with pytest.raises(DataError) as info:
        normalise_items([item], load_dataset_files(finished_run))
    assert fragment in str(info.value)


def test_new_items_of_the_accepted_shapes(finished_run):

    items = [{"item_id": 7.0 + 100, "title": None, "brand": "b", "price": "$5.99 - $9.99", "categories": ["a"]},
             {"item_id": "n-2", "asin": None, "description": "d", "price": 3, "categories": [["a", "b"], "c"],
              "extra": {"anything": [1, None, True]}}]
    out = normalise_items(items, load_dataset_files(finished_run))
    assert [item["item_id"] for item in out] == ["107", "n-2"]  # 107.0 is the integer 107


def SIDTableOf(run_dir):
    return load_catalog(run_dir)[1].sids


def test_code_group_beyond_the_models_dedup_digit_is_refused(run_copy, fake_encoder):
    dataset, table, _ = load_catalog(run_copy)
    limit = table.level_sizes[-1]
    j = int(np.flatnonzero(group_sizes(table) == limit)[0])  # a group the model's digit cannot grow
    files = {name: (run_copy / name).read_bytes() for name in cold_start.CATALOG_FILES}
    with pytest.raises(DataError, match=f"already shared by {limit} items"):
        add_items(run_copy, [copy_of(dataset.items[j], "full-1")])
    assert {name: (run_copy / name).read_bytes() for name in cold_start.CATALOG_FILES} == files
    assert current_generation(run_copy) == 0


def test_a_collision_refusal_names_every_colliding_item(run_copy, fake_encoder):
    dataset, table, _ = load_catalog(run_copy)
    j = int(np.flatnonzero(group_sizes(table) == table.level_sizes[-1])[0])
    new = [copy_of(dataset.items[j], f"full-{i}") for i in range(8)] + [copy_of(dataset.items[j], "y" * 200)]
    with pytest.raises(DataError) as info:
        add_items(run_copy, new)
    message = str(info.value)
    assert message.startswith("9 new item(s) get a code already shared by") and "all 9: " in message
    assert all(f"'full-{i}'" in message for i in range(8))
    assert "'" + "y" * 40 + "'... (200 characters)" in message and "y" * 41 not in message  # long ids cut short


def test_a_crash_at_any_rename_leaves_the_old_catalog(finished_run, fake_encoder, tmp_path, monkeypatch):
    """Simulates a crash at the 1st, 2nd, ... rename of an add-items until one completes: each time
    the old catalog must load, unchanged and consistent; then the retry must succeed."""
    dataset, table, _ = load_catalog(finished_run)
    j = int(np.flatnonzero(group_sizes(table) < table.level_sizes[-1])[0])
    new = [copy_of(dataset.items[j], "crash-1")]
    real_rename = cold_start._rename
    crash_at, crashed = 1, 0
    while True:
        run_dir = tmp_path / f"run-{crash_at}"
        shutil.copytree(finished_run, run_dir, symlinks=True)
        calls = []

        def rename(src, dst):
            calls.append(dst)
            if len(calls) == crash_at:
                raise OSError("simulated crash")
            real_rename(src, dst)

        monkeypatch.setattr(cold_start, "_rename", rename)
        try:
            add_items(run_dir, new)
        except OSError:
            crashed += 1
            assert_consistent(run_dir, dataset.num_items, table.sids)
            monkeypatch.setattr(cold_start, "_rename", real_rename)
            result = add_items(run_dir, new)  # the retry cleans up and succeeds
            assert_consistent(run_dir, dataset.num_items + 1, result.sid_table.sids)
            crash_at += 1
            continue
        break
    assert crashed >= 6  # generation 0 dir, pointer, 3 file links, new generation, pointer flip

    # A second add on an extended run: a crash at the commit point keeps generation 1.
    run_dir = tmp_path / f"run-{crash_at - 1}"
    gen1_table = load_catalog(run_dir)[1]
    gen1 = gen1_table.sids
    k = int(np.flatnonzero(group_sizes(gen1_table)[: dataset.num_items] < gen1_table.level_sizes[-1])[0])
    second = [copy_of(dataset.items[k], "crash-2")]
    flips = []

    def fail_flip(src, dst):
        if os.path.basename(dst) == cold_start.POINTER:
            flips.append(dst)
            raise OSError("simulated crash")
        real_rename(src, dst)

    monkeypatch.setattr(cold_start, "_rename", fail_flip)
    with pytest.raises(OSError, match="simulated crash"):
        add_items(run_dir, second)
    assert flips and current_generation(run_dir) == 1
    assert_consistent(run_dir, dataset.num_items + 1, gen1)
    monkeypatch.setattr(cold_start, "_rename", real_rename)
    add_items(run_dir, second)
    assert current_generation(run_dir) == 2
    assert sorted(p.name for p in run_dir.glob("catalog.gen-*")) == ["catalog.gen-0", "catalog.gen-1", "catalog.gen-2"]
    assert not list(run_dir.glob(".catalog.tmp-*"))


def test_cold_start_share_reserves_slots_for_added_items(run_copy, fake_encoder):
    dataset, table, _ = load_catalog(run_copy)
    roomy = np.flatnonzero(group_sizes(table) < table.level_sizes[-1])[:3]
    new = [copy_of(dataset.items[j], f"new-{n}") for n, j in enumerate(roomy)]
    add_items(run_copy, new)
    new_ids = {item["item_id"] for item in new}
    histories = [[dataset.items[i]["item_id"] for i in dataset.sequence(u)[:-1]] for u in range(8)]

    plain = Recommender.load(run_copy)
    assert plain.num_trained_items == dataset.num_items and plain.new_item_ranker is None
    baseline = plain.recommend_many(histories, k=10)

    rec = Recommender.load(run_copy, overrides=["decode.cold_start_share=0.2"])
    calls = []
    original = rec.model.prefill
    rec.model.prefill = lambda *args: calls.append(1) or original(*args)
    results = rec.recommend_many(histories, k=10)
    assert len(calls) == 1  # the search over new items reuses the first search's encoder pass
    del rec.model.prefill
    assert [[r.item_id for r in row] for row in results] == [[r.item_id for r in row] for row in
                                                            rec.recommend_many(histories, k=10)]
    for before, after in zip(baseline, results):
        ids = [r.item_id for r in after]
        assert len(ids) == len(set(ids)) == 10
        assert len(new_ids & set(ids)) >= 2  # two of ten slots for the three new items
        kept = [r.item_id for r in before if r.item_id not in new_ids][:8]
        assert set(kept) <= set(ids)  # the model's own top-8 stay
        assert [r.score for r in after] == sorted((r.score for r in after), reverse=True)
    # an empty history gets popular items and the newest item
    empty = rec.recommend([], k=5)
    assert [r.item_id for r in empty][-1] == "new-2" and len(empty) == 5
    with pytest.raises(Exception, match=r"decode.cold_start_share=2.0: expected a number in \[0, 1\]"):
        Recommender.load(run_copy, overrides=["decode.cold_start_share=2"])
    with pytest.raises(Exception, match="needs decode.constrained=true"):
        Recommender.load(run_copy, overrides=["decode.cold_start_share=0.2", "decode.constrained=false"])

    # cold_start_fill=lookup: the same slots go to the new items nearest by text to the last history item
    hybrid = Recommender.load(run_copy, overrides=["decode.cold_start_share=0.2", "decode.cold_start_fill=lookup"])
    unit = hybrid.unit_embeddings()
    for history, before, after in zip(histories, baseline, hybrid.recommend_many(histories, k=10)):
        ids = [r.item_id for r in after]
        kept = [r.item_id for r in before if r.item_id not in new_ids][:8]
        assert ids[:8] == kept and len(set(ids)) == 10  # the model's top-8 first, in its order
        last = unit[hybrid.index_of(history[-1])]
        new_rows = np.arange(dataset.num_items, dataset.num_items + 3)
        nearest = [hybrid.dataset.items[i]["item_id"] for i in new_rows[np.argsort(-(unit[new_rows] @ last))]]
        assert [i for i in ids[8:]] == [i for i in nearest if i not in kept][:2]
        assert [r.score for r in after[8:]] == pytest.approx(sorted((r.score for r in after[8:]), reverse=True))
    with pytest.raises(Exception, match="decode.cold_start_fill='nearest': expected one of model, lookup"):
        Recommender.load(run_copy, overrides=["decode.cold_start_share=0.2", "decode.cold_start_fill=nearest"])


def test_reserve_slots_merges_by_score_and_tops_up():
    from sidrec.recommender import _reserve_slots

    ranked = [(1, -1.0), (2, -2.0), (3, -3.0), (4, -4.0)]
    assert _reserve_slots(ranked, [(9, -9.0), (8, -8.0)], k=3, reserved=1) == [(1, -1.0), (2, -2.0), (9, -9.0)]
    # a new item the model already ranked is not counted twice; the slot goes to the next new item
    assert _reserve_slots(ranked, [(2, -2.0), (9, -9.0)], k=3, reserved=2) == [(1, -1.0), (2, -2.0), (9, -9.0)]
    # fewer new items than reserved slots: top up from the model's list
    assert _reserve_slots(ranked, [], k=3, reserved=2) == ranked[:3]
    # scores of another scale (the lookup's cosines): the new items follow the model's, in their order
    assert _reserve_slots(ranked, [(9, 0.9), (8, 0.5)], k=4, reserved=2, by_score=False) == \
        [(1, -1.0), (2, -2.0), (9, 0.9), (8, 0.5)]
