"""The item-level semantic-ID model (sidrec/models/item_sid): network, exact ranking, the run around it."""

import json

import numpy as np
import pytest
import torch

from conftest import TINY, write_tiny_p5
from sidrec.config import model_config
from sidrec.decode.ranker import ItemFeatures
from sidrec.errors import ConfigError
from sidrec.models import build_model
from sidrec.models.item_sid import ItemSID, ItemSIDConfig
from sidrec.run import RunDir

LEVELS = (4, 4, 3)


def catalog(num_items=12, text_dim=8, seed=0) -> ItemFeatures:
    rng = np.random.default_rng(seed)
    sids = np.column_stack([rng.integers(0, s, num_items) for s in LEVELS])
    return ItemFeatures.build(sids, rng.normal(size=(num_items, text_dim)).astype(np.float32))


def network(**kw) -> ItemSID:
    torch.manual_seed(0)
    cfg = dict(level_sizes=LEVELS, text_dim=8, max_history=6, d_model=16, num_layers=1, num_heads=2, d_ff=32,
               dropout=0.0)
    return ItemSID(ItemSIDConfig(**{**cfg, **kw})).eval()


def test_a_state_sees_only_earlier_items():
    model, items = network(), catalog()
    seqs = torch.tensor([[-1, -1, 3, 5, 7, 1], [-1, -1, 3, 5, 2, 9], [-1, 4, 3, 5, 2, 9]])
    states = model.hidden(seqs, items)
    assert states.shape[1] == 5  # the column that is padding in every row is dropped
    torch.testing.assert_close(states[0, :3], states[1, :3])  # the same first items
    assert not torch.allclose(states[0, 3], states[1, 3])
    assert (states[:2, 0] == 0).all()  # padding


def test_left_padding_does_not_change_the_last_state():
    model, items = network(), catalog()
    short = model.user_states(torch.tensor([[3, 5, 7]]), items)
    padded = model.user_states(torch.tensor([[-1, -1, 3, 5, 7]]), items)
    torch.testing.assert_close(short, padded)


def test_levels_head_scores_an_item_by_the_sum_of_its_codes_log_probabilities():
    model, items = network(head="levels"), catalog()
    states = model.user_states(torch.tensor([[3, 5, 7], [1, 2, 0]]), items)
    log_probs = model.level_log_probs(states)
    expected = sum(lp[:, items.sids[:, level]] for level, lp in enumerate(log_probs))
    torch.testing.assert_close(model.scores(states, items), expected)
    for lp in log_probs:  # each level is a distribution over its codes
        torch.testing.assert_close(lp.exp().sum(1), torch.ones(2))


@pytest.mark.parametrize("kw", [dict(), dict(head="levels"), dict(text_sim=True), dict(use_codes=False),
                                dict(text_input=False, text_dim=0), dict(num_id_items=12)])
def test_training_lowers_the_loss(kw):
    model, items = network(**kw).train(), catalog()
    seqs = torch.tensor([[-1, 0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11, 0]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = model.loss(seqs, items)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.isfinite(loss.item()) and loss.item() < first * 0.7


@pytest.mark.parametrize("ids", [0, 12])
def test_items_added_later_are_scored_from_their_sids_and_text(ids):
    model = network(num_id_items=ids)
    items = catalog(num_items=12)
    grown = ItemFeatures(torch.cat([items.sids, torch.tensor([[1, 2, 7]])]),  # a de-dup digit past the level size
                         torch.cat([items.text, items.text[:1]]))
    states = model.user_states(torch.tensor([[3, 5, 7]]), grown)
    scores = model.scores(states, grown, torch.tensor([7]))
    assert scores.shape == (1, 13) and torch.isfinite(scores).all()
    torch.testing.assert_close(scores[:, :12], model.scores(states, items, torch.tensor([7])))
    if ids:  # the new item has no learnt embedding: its vector is its codes' and text's alone
        no_ids = network()
        no_ids.load_state_dict({k: v for k, v in model.state_dict().items() if "ids" not in k})
        torch.testing.assert_close(model.output_vectors(grown)[12], no_ids.output_vectors(grown)[12])


def test_bad_settings_are_one_config_error():
    for kw, fragment in [(dict(head="beam"), "model.head='beam'"), (dict(item_inputs="codes,ids"), "model.item_inputs"),
                         (dict(d_model=30, num_heads=4), "divisible"),
                         (dict(head="levels", item_inputs="text"), "model.head=levels")]:
        with pytest.raises(ConfigError, match=fragment):
            build_model(model_config("item_sid", **kw), 10, 6, 3, level_sizes=LEVELS, text_dim=8)


# --- a finished run -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def item_run(tmp_path_factory):
    from sidrec.cli import main

    root = tmp_path_factory.mktemp("item_sid")
    data = write_tiny_p5(root / "data")
    run_dir = root / "run"
    assert main(["run", *TINY, "model.arch=item_sid", "model.text_sim=true", "model.item_inputs=codes,text,id",
                 f"data.path={data}",
                 f"run_dir={run_dir}"]) == 0
    return run_dir


def test_the_run_writes_metrics_and_a_model_that_reloads_to_the_same_scores(item_run):
    metrics = json.loads((item_run / "metrics.json").read_text())
    assert {"recall@10", "ndcg@10", "steps"} <= set(metrics)
    run = RunDir(item_run)
    model, meta = run.model()
    assert meta["model_config"]["arch"] == "item_sid" and meta["text_dim"] == run.embeddings.shape[1]
    histories = torch.from_numpy(run.samples("test").histories)
    ranker = run.ranker()
    again, _ = RunDir(item_run).model()
    states = model.user_states(histories, ranker.features)
    torch.testing.assert_close(states, again.user_states(histories, ranker.features))


def test_exact_ranking_is_the_top_k_of_every_items_score(item_run):
    run = RunDir(item_run, ["decode.exclude_history=true"])
    model, _ = run.model()
    samples = run.samples("test")
    histories = torch.from_numpy(samples.histories)
    ranker = run.ranker()
    ranked, scores = ranker.rank(model, histories, torch.from_numpy(samples.users), 5, np.random.default_rng(0))
    with torch.no_grad():
        full = model.scores(model.user_states(histories, ranker.features), ranker.features, histories[:, -1])
    for row in range(len(histories)):
        allowed = np.setdiff1d(np.arange(run.dataset.num_items), samples.histories[row])
        best = allowed[np.argsort(-full[row, allowed].numpy(), kind="stable")[:5]]
        np.testing.assert_allclose(np.sort(full[row, ranked[row]].numpy()), np.sort(full[row, best].numpy()),
                                   rtol=1e-6)
        assert not set(ranked[row]) & set(samples.histories[row])
    assert (np.diff(scores, axis=1) <= 0).all()


def test_a_repeated_ranking_gives_the_same_top_10(item_run):
    run = RunDir(item_run)
    model, _ = run.model()
    samples = run.samples("test")
    args = (model, torch.from_numpy(samples.histories), torch.from_numpy(samples.users), 10)
    first = run.ranker().rank(*args, np.random.default_rng(0))
    second = run.ranker().rank(*args, np.random.default_rng(1))
    np.testing.assert_array_equal(first[0], second[0])


def test_items_added_after_training_are_recommended(item_run, tmp_path):
    import shutil

    from sidrec.recommender import Recommender

    run_dir = tmp_path / "run"
    shutil.copytree(item_run, run_dir)
    rec = Recommender.load(run_dir, overrides=["decode.cold_start_share=0.3"])
    added = rec.add_items([{"item_id": f"new-{i}", "title": f"Acme lipstick no. {i}",
                            "categories": [["Beauty", "lipstick"]]} for i in range(3)])
    new_ids = {r.item_id for r in added}
    recs = rec.recommend([rec.dataset.items[0]["item_id"], rec.dataset.items[4]["item_id"]], k=10)
    assert len(recs) == 10 and len(new_ids & {r.item_id for r in recs}) == 3  # 3 of 10 slots reserved
    assert len({r.item_id for r in recs}) == 10
