"""Python API over a finished run directory: ``Recommender.load(run_dir).recommend(history, k=10)``.

Loads artifacts only (config, item table, SID table, model.pt); imports no training code.
Histories are given by external item ids (the dataset's ``item_id`` or the ASIN).
"""

from __future__ import annotations

import copy
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sidrec.config import RunConfig
from sidrec.data.dataset import Dataset
from sidrec.data.split import PAD_ITEM, training_items
from sidrec.errors import ArtifactError, ConfigError, DataError
from sidrec.run import RunDir, build_ranker
from sidrec.tokenize.sid_table import SIDTable
from sidrec.tokenize.vocab import SIDVocab


@dataclass
class Recommendation:
    index: int  # internal item index
    item_id: str
    asin: str | None
    title: str | None
    sid: list[int]
    score: float  # log-probability of the SID under the model (nan for the empty-history fallback)


FILLS = ("model", "lookup")  # decode.cold_start_fill


def _reserve_slots(ranked: list[tuple[int, float]], new: list[tuple[int, float]], k: int,
                   reserved: int, by_score: bool = True) -> list[tuple[int, float]]:
    """The best ``k - reserved`` of ``ranked`` plus the best new items not among them (up to
    ``reserved``), topped up from ``ranked`` when there are fewer new items; sorted by score when
    the two lists' scores are comparable (``by_score``), else in that order."""
    chosen = ranked[: k - reserved]
    taken = {i for i, _ in chosen}
    extra = [(i, s) for i, s in new if i not in taken][:reserved]
    taken.update(i for i, _ in extra)
    chosen = (chosen + extra + [(i, s) for i, s in ranked[k - reserved:] if i not in taken])[:k]
    return sorted(chosen, key=lambda pair: -pair[1]) if by_score else chosen


class Recommender:
    def __init__(self, cfg: RunConfig, dataset: Dataset, sid_table: SIDTable, model: torch.nn.Module,
                 device: str = "cpu", run_dir: str | Path | None = None, embeddings: np.ndarray | None = None,
                 num_trained_items: int | None = None):
        """``num_trained_items``: items the model was trained with (the first rows); later rows are
        cold-start items (``decode.cold_start_share``). None = all."""
        self.cfg, self.model, self.device = cfg, model.to(device).eval(), device
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.num_trained_items = dataset.num_items if num_trained_items is None else num_trained_items
        share = cfg.decode.cold_start_share
        if not 0 <= share <= 1:
            raise ConfigError(f"decode.cold_start_share={share}: expected a share between 0 and 1")
        if cfg.decode.cold_start_fill not in FILLS:
            raise ConfigError(f"decode.cold_start_fill={cfg.decode.cold_start_fill!r}: expected one of {', '.join(FILLS)}")
        self.rng = np.random.default_rng(cfg.seed)
        self._set_catalog(dataset, sid_table, embeddings)

    def _set_catalog(self, dataset: Dataset, sid_table: SIDTable, embeddings: np.ndarray | None) -> None:
        """Item table, SID table, trie and lookups (rebuilt when cold-start items are added)."""
        if dataset.num_items != sid_table.num_items:
            raise ArtifactError(f"the item table has {dataset.num_items} items but the SID table {sid_table.num_items}")
        if embeddings is not None and len(embeddings) != dataset.num_items:
            raise ArtifactError(f"{len(embeddings)} embeddings for {dataset.num_items} items")
        vocab = SIDVocab.for_table(sid_table, self.cfg.model.user_tokens())
        # Empty histories (documented fallback): the most popular items of the training interactions.
        counts = np.bincount(training_items(dataset), minlength=dataset.num_items)
        popular = np.argsort(-counts, kind="stable")
        ranker = build_ranker(self.cfg.decode, sid_table, vocab, self.device, fallback_items=popular,
                              item_text=embeddings)
        new_items = np.arange(self.num_trained_items, dataset.num_items)
        self.new_item_ranker = None
        if self.cfg.decode.cold_start_share > 0 and len(new_items):
            if self.cfg.decode.cold_start_fill == "lookup" and embeddings is None:
                raise ConfigError("decode.cold_start_fill=lookup needs the run's text embeddings")
            if not self.cfg.decode.constrained and not getattr(self.model, "ranks_catalog", False):
                raise ConfigError("decode.cold_start_share needs decode.constrained=true")
            # empty histories: the most recently added items
            self.new_item_ranker = build_ranker(self.cfg.decode, sid_table, vocab, self.device,
                                                fallback_items=new_items[::-1], items=new_items,
                                                item_text=embeddings)
        item_index = dataset.item_index()
        item_index.update({item["asin"]: i for i, item in enumerate(dataset.items) if item.get("asin")})
        self.dataset, self.sid_table, self.ranker, self.item_index = dataset, sid_table, ranker, item_index
        self.user_index = {u: i for i, u in enumerate(dataset.user_ids)}
        self._embeddings, self._unit_embeddings = embeddings, None

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu", overrides: list[str] | None = None) -> "Recommender":
        """``overrides``: ``key=value`` config overrides on top of the run's config.json (e.g. decode.num_beams=20)."""
        return cls.from_run(RunDir(run_dir, overrides), device)

    @classmethod
    def from_run(cls, run: RunDir, device: str = "cpu") -> "Recommender":
        model, meta = run.model()
        return cls(run.config, run.dataset, run.sid_table, model, device, run.path, run.embeddings,
                   meta.get("num_items"))

    def with_catalog(self, dataset: Dataset, sid_table: SIDTable, embeddings: np.ndarray | None = None) -> "Recommender":
        """A new Recommender sharing this one's model, config and random state over another catalog
        (serving builds it beside the one in use, then swaps it in). Leaves the model and ``self``
        alone, so it may run in another thread while ``self`` recommends."""
        new = copy.copy(self)
        new._set_catalog(dataset, sid_table, embeddings)
        return new

    def index_of(self, item) -> int:
        """Internal index of an item given by its item id or ASIN; DataError if unknown."""
        index = self.item_index.get(str(item))
        if index is None:
            raise DataError(f"item {item!r} is not in the catalog")
        return index

    def describe(self, item) -> Recommendation:
        """The item (by id or ASIN) as a Recommendation with score nan."""
        return self._describe(self.index_of(item), float("nan"))

    def _indices(self, history: list, row: int) -> list[int]:
        indices = []
        for item in history:
            index = self.item_index.get(str(item))
            if index is None:
                message = f"history {row}: item {item!r} is not in the catalog"
                if self.cfg.decode.unknown_items == "error":
                    raise DataError(message + " (set decode.unknown_items=skip to drop unknown items)")
                warnings.warn(message + "; skipped", stacklevel=3)
                continue
            indices.append(index)
        return indices

    def _user_index(self, user_id) -> int:
        if user_id is None:
            return 0
        # Unknown users still get a stable user token: hash of their id.
        return self.user_index.get(str(user_id), zlib.crc32(str(user_id).encode()))

    def recommend_many(self, histories: list[list], k: int = 10, user_ids: list | None = None,
                       exclude: list[list] | None = None) -> list[list[Recommendation]]:
        h = self.cfg.model.max_history
        rows = [self._indices(history, row)[-h:] for row, history in enumerate(histories)]
        matrix = np.full((len(rows), h), PAD_ITEM, dtype=np.int64)
        for r, idx in enumerate(rows):
            if idx:
                matrix[r, -len(idx):] = idx
        users = torch.as_tensor([self._user_index(u) for u in (user_ids or [None] * len(rows))])
        excluded = [set(self._indices(e, r)) for r, e in enumerate(exclude)] if exclude else [set()] * len(rows)
        # Over-fetch so that excluded items can be dropped and still leave k.
        extra = max((len(e) for e in excluded), default=0)
        histories = torch.from_numpy(matrix)
        reserved = round(self.cfg.decode.cold_start_share * k) if self.new_item_ranker is not None else 0
        # The second search (new items only) reuses the first one's encoder pass.
        prefilled = self.ranker.prefill(self.model, histories, users) if reserved else None
        items, scores = self.ranker.rank(self.model, histories, users, k + extra, self.rng, prefilled)
        by_model = self.cfg.decode.cold_start_fill == "model"
        if reserved:
            new_items, new_scores = (self.new_item_ranker.rank(self.model, histories, users, reserved + extra,
                                                               self.rng, prefilled)
                                     if by_model else self._nearest_new_items(histories, reserved + extra))
        results = []
        for r in range(len(rows)):
            keep = [(int(i), float(s)) for i, s in zip(items[r], scores[r]) if i >= 0 and int(i) not in excluded[r]]
            if reserved:
                keep = _reserve_slots(keep, [(int(i), float(s)) for i, s in zip(new_items[r], new_scores[r])
                                             if i >= 0 and int(i) not in excluded[r]], k, reserved, by_model)
            results.append([self._describe(i, s) for i, s in keep[:k]])
        return results

    def _nearest_new_items(self, histories: torch.Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, n) items added after training nearest by text to each history's last item (the text
        lookup over the new items; history items excluded), with their cosine similarities; -1 /
        -inf where there are fewer."""
        from sidrec.evaluate.lookup import text_lookup_scores

        first = self.num_trained_items
        scores = text_lookup_scores(torch.from_numpy(self.unit_embeddings()), histories, normalized=True)[:, first:]
        top = scores.topk(min(n, scores.shape[1]), dim=1)
        items = torch.where(torch.isfinite(top.values), top.indices + first, -1)
        return items.numpy(), top.values.numpy()

    def recommend(self, history: list, k: int = 10, user_id=None, exclude: list | None = None) -> list[Recommendation]:
        return self.recommend_many([history], k, [user_id], [exclude] if exclude else None)[0]

    def _describe(self, index: int, score: float) -> Recommendation:
        item = self.dataset.items[index]
        return Recommendation(index, item["item_id"], item.get("asin"), item.get("title"),
                              self.sid_table.sids[index].tolist(), score)

    # --- similar items ------------------------------------------------------------------------
    def unit_embeddings(self) -> np.ndarray | None:
        """(N, D) unit-norm text embeddings of the catalog (None when the run has none)."""
        if self._unit_embeddings is None:
            emb = self._embeddings
            if emb is None or len(emb) != self.dataset.num_items:
                return None
            emb = np.asarray(emb, dtype=np.float32)
            self._unit_embeddings = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return self._unit_embeddings

    def similar_items(self, item, k: int = 10) -> list[Recommendation]:
        """Items most like ``item`` (id or ASIN): first those sharing the longest SID prefix (raw
        tokenizer codes, level by level), then, within the same shared depth, nearest by cosine
        similarity of the run's item embeddings (``embeddings.npy``). ``score`` is that cosine
        similarity (nan when the run has no embeddings; the order is then by prefix, then index)."""
        if k < 1:
            raise DataError(f"k={k}: must be >= 1")
        index = self.index_of(item)
        codes = self.sid_table.codes
        shared = np.cumprod(codes == codes[index], axis=1).sum(axis=1)  # leading levels in common
        unit = self.unit_embeddings()
        sims = unit @ unit[index] if unit is not None else np.full(len(codes), np.nan, dtype=np.float32)
        order = np.lexsort((np.nan_to_num(-sims, nan=0.0), -shared))  # the last key sorts first
        order = order[order != index][:k]
        return [self._describe(int(i), float(sims[i])) for i in order]

    # --- cold start: the one add-items path of the Python API and the service --------------------
    def _extend_catalog(self, new_items: list[dict]):
        from sidrec.cold_start import add_items

        if self.run_dir is None:
            raise ArtifactError("adding items needs a Recommender loaded from a run directory (Recommender.load)")
        return add_items(self.run_dir, new_items, self.cfg)

    def with_added_items(self, new_items: list[dict]):
        """(a Recommender over the extended catalog, sidrec.cold_start.AddResult): the run's catalog
        on disk gains the items (embedded, coded with the frozen tokenizer, one atomic generation
        swap), and the new Recommender is built beside this one, which goes on recommending from
        the old catalog meanwhile (the service swaps them)."""
        result = self._extend_catalog(new_items)
        return self.with_catalog(result.dataset, result.sid_table, result.embeddings), result

    def add_items(self, new_items: list[dict]) -> list[Recommendation]:
        """``with_added_items`` in place: the items are recommendable at once. Returns the new items
        (score nan)."""
        result = self._extend_catalog(new_items)
        self._set_catalog(result.dataset, result.sid_table, result.embeddings)
        return [self._describe(i, float("nan")) for i in result.added]
