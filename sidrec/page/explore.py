"""What the page shows, computed from a catalog with numpy: no web framework, no training code.

A ``CatalogView`` belongs to one catalog generation (the item table, SID table and embeddings a
``Recommender`` serves); ``CatalogView.of(rec)`` returns the one of ``rec``'s current catalog, so
that what is built once per generation (the title index, the codebook statistics, the 2-D map) is
built once and thrown away when POST /items swaps in a new catalog. Requests cost vectorised
numpy over the catalog, never a Python loop over its items.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sidrec.data.dataset import Dataset
from sidrec.data.split import training_items
from sidrec.io import write_npz
from sidrec.layout import PAGE_MAP
from sidrec.tokenize.diagnostics import neighbour_agreement, sid_diagnostics
from sidrec.tokenize.sid_table import SIDTable

log = logging.getLogger("sidrec")

WORD = re.compile(r"\w+")
MAX_WORD_CHARS = 40  # longer title words are indexed by their first 40 characters
BEYOND = "\U0010ffff"  # sorts after every character: [w, w + BEYOND) holds the words starting with w
MAX_BRANCHES = 12  # codes listed per level of the SID tree (the item's own always among them)
MAX_COLLISIONS = 50  # items listed of a group sharing the item's full code
LARGEST_GROUPS = 10  # collision groups listed by the codebook view
GROUP_EXAMPLES = 5  # items shown per listed collision group
PAGE_NEIGHBOUR_QUERIES = 2_000  # items asked for the neighbour agreement: ~1 s at 10^5 items, once per catalog


def words_of(text: str) -> list[str]:
    """Lowercase words of ``text`` (letters, digits, underscore), each cut to MAX_WORD_CHARS."""
    return [w[:MAX_WORD_CHARS] for w in WORD.findall(text.casefold())]


class TitleIndex:
    """An inverted index of the lowercase words of item titles, plus item ids and ASINs.

    The vocabulary is sorted, and the postings (item indices) of each word lie in one block of a
    single array in vocabulary order, so the items of every word starting with a prefix are one
    slice: a query costs a binary search and numpy set operations per query word."""

    def __init__(self, items: list[dict]):
        self.ids: dict[str, int] = {}  # case-folded item id or ASIN -> item (the first one wins)
        word_ids: dict[str, int] = {}
        pair_words, pair_items = [], []
        for i, item in enumerate(items):  # once per catalog generation
            for key in (item.get("item_id"), item.get("asin")):
                if key is not None and key != "":
                    self.ids.setdefault(str(key).casefold(), i)
            title = item.get("title")
            if isinstance(title, str):
                for word in set(words_of(title)):
                    pair_words.append(word_ids.setdefault(word, len(word_ids)))
                    pair_items.append(i)
        words = list(word_ids)
        order = sorted(range(len(words)), key=words.__getitem__)
        self.vocab = [words[j] for j in order]
        rank = np.empty(len(words), dtype=np.int64)
        rank[order] = np.arange(len(words))
        pair_words = rank[np.asarray(pair_words, dtype=np.int64)]
        pair_items = np.asarray(pair_items, dtype=np.int64)
        by_word = np.lexsort((pair_items, pair_words))
        self.postings = pair_items[by_word]
        self.offsets = np.searchsorted(pair_words[by_word], np.arange(len(words) + 1))

    def _block(self, lo: int, hi: int) -> np.ndarray:
        return self.postings[self.offsets[lo]:self.offsets[hi]]

    def search(self, query: str, popularity: np.ndarray) -> tuple[int | None, np.ndarray]:
        """(the item whose id or ASIN is ``query``, or None; the items whose title has, for every
        query word, a word starting with it). Title matches come most whole-word matches first,
        then most popular first, then in item order; the id match is not among them."""
        exact = self.ids.get(query.strip().casefold())
        words = list(dict.fromkeys(words_of(query)))
        if not words:
            return exact, np.zeros(0, dtype=np.int64)
        matched, whole = None, []
        for word in words:
            lo = bisect.bisect_left(self.vocab, word)
            hi = bisect.bisect_left(self.vocab, word + BEYOND, lo)
            found = np.unique(self._block(lo, hi))  # an item may hold several words with this prefix
            matched = found if matched is None else np.intersect1d(matched, found, assume_unique=True)
            if lo < hi and self.vocab[lo] == word:
                whole.append(self._block(lo, lo + 1))
        whole_count = sum((np.isin(matched, w) for w in whole), np.zeros(len(matched), dtype=np.int64))
        matched = matched[np.lexsort((matched, -popularity[matched], -whole_count))]
        if exact is not None:
            matched = matched[matched != exact]
        return exact, matched


@dataclass
class SplitRows:
    """Each user's history and held-out target in one split (leave-last-out, as evaluated)."""
    starts: np.ndarray  # (U,) where the user's sequence starts in Dataset.seq_items
    target_positions: np.ndarray  # (U,) where its target is; the history is starts[u]:target_positions[u]


def split_rows(dataset: Dataset, split: str) -> SplitRows:
    """``valid``: the second to last item is the target; ``test``: the last (sidrec.data.split)."""
    ends = dataset.seq_offsets[1:]
    return SplitRows(dataset.seq_offsets[:-1], ends - (2 if split == "valid" else 1))


class CatalogView:
    """What the page reads of one catalog generation; built lazily, once."""

    _latest: list["CatalogView"] = []  # the views of the last two catalogs served
    _latest_lock = threading.Lock()

    def __init__(self, dataset: Dataset, sid_table: SIDTable, unit_embeddings: np.ndarray | None,
                 num_trained_items: int, user_index: dict[str, int], run_dir: Path | None = None):
        self.dataset, self.sid_table, self.unit = dataset, sid_table, unit_embeddings
        self.num_trained_items, self.user_index, self.run_dir = num_trained_items, user_index, run_dir
        self.codes = sid_table.codes
        self._lock = threading.Lock()
        self._index: TitleIndex | None = None
        self._popularity: np.ndarray | None = None
        self._codebook: dict | None = None
        self._map: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def of(cls, rec) -> "CatalogView":
        """The view of ``rec``'s (a Recommender's) current catalog, made on first use."""
        with cls._latest_lock:
            for view in cls._latest:
                if view.dataset is rec.dataset and view.sid_table is rec.sid_table:
                    return view
            # Recommender keeps the unit-length embeddings that similar_items uses: shared, not copied.
            view = cls(rec.dataset, rec.sid_table, rec.unit_embeddings(), rec.num_trained_items, rec.user_index, rec.run_dir)
            cls._latest[:] = [view, *cls._latest[:1]]
            return view

    @property
    def num_items(self) -> int:
        return self.dataset.num_items

    # --- items ----------------------------------------------------------------------------------
    def entry(self, index: int, score: float | None = None) -> dict:
        """An item as the HTTP service gives it: index, ids, title, SID, score."""
        item = self.dataset.items[index]
        score = None if score is None or not np.isfinite(score) else float(score)
        return {"index": int(index), "item_id": item["item_id"], "asin": _text(item.get("asin")),
                "title": _text(item.get("title")), "sid": self.sid_table.sids[index].tolist(), "score": score}

    def details(self, index: int) -> dict:
        """The entry plus what the item view shows of the item itself."""
        item = self.dataset.items[index]
        categories = item.get("categories")
        paths = [[str(n) for n in (p if isinstance(p, list) else [p])] for p in categories] \
            if isinstance(categories, list) else []
        price = item.get("price")
        return {**self.entry(index), "codes": self.codes[index].tolist(), "brand": _text(item.get("brand")),
                "price": None if price is None else str(price), "categories": paths,
                "description": _text(item.get("description")),
                "added": bool(index >= self.num_trained_items)}

    def cosine(self, index: int) -> np.ndarray:
        """Cosine similarity of every item's text embedding to the item's (nan without embeddings)."""
        if self.unit is None:
            return np.full(self.num_items, np.nan, dtype=np.float32)
        return np.nan_to_num(self.unit @ self.unit[index])

    def neighbours(self, index: int, k: int) -> list[dict]:
        """The ``k`` items nearest to the item by cosine similarity of text embeddings."""
        sims = self.cosine(index)
        return [self.entry(i, sims[i]) for i in _top(np.delete(np.arange(self.num_items), index), sims, k)]

    def tree(self, index: int, limit: int) -> dict:
        """The SID tree around an item: for each depth d, the items sharing its first d codes
        (their number, and the ``limit`` nearest by text, each marked ``collides`` when its whole
        code is the item's) and the branches there (the codes at level d under the item's first
        d - 1 codes, with their item counts); and the collision group (identical raw codes, told
        apart by the de-dup digit)."""
        codes = self.codes
        shared = np.cumprod(codes == codes[index], axis=1).sum(axis=1)  # leading codes in common
        sims = self.cosine(index)
        levels = []
        for depth in range(1, codes.shape[1] + 1):
            members = np.flatnonzero(shared >= depth)
            others = members[members != index]
            values, counts = np.unique(codes[shared >= depth - 1, depth - 1], return_counts=True)
            own = int(codes[index, depth - 1])
            by_size = np.lexsort((values, -counts))[:MAX_BRANCHES]
            if own not in values[by_size]:
                by_size = np.r_[by_size[:-1], np.flatnonzero(values == own)]
            levels.append({
                "depth": depth, "prefix": codes[index, :depth].tolist(), "count": int(len(members)),
                "items": [{**self.entry(i, sims[i]), "collides": bool(shared[i] == codes.shape[1])}
                          for i in _top(others, sims, limit)],
                "branches": [{"code": int(values[b]), "count": int(counts[b]), "own": bool(values[b] == own)}
                             for b in by_size],
                "num_branches": int(len(values)),
            })
        group = np.flatnonzero(shared == codes.shape[1])  # in item order, the order of the de-dup digit
        return {"item": self.details(index), "levels": levels, "collision_count": int(len(group)),
                "collisions": [self.entry(i, sims[i]) for i in group[:MAX_COLLISIONS]]}

    # --- search ---------------------------------------------------------------------------------
    def popularity(self) -> np.ndarray:
        """Training interactions per item (added items: 0)."""
        with self._lock:
            if self._popularity is None:
                self._popularity = np.bincount(training_items(self.dataset), minlength=self.num_items)
            return self._popularity

    def search(self, query: str, limit: int) -> dict:
        """Items by id, ASIN or title words (prefixes): the id or ASIN match first, then titles."""
        popularity = self.popularity()
        with self._lock:
            if self._index is None:  # built on the first search of this catalog generation
                self._index = TitleIndex(self.dataset.items)
            index = self._index
        exact, titles = index.search(query, popularity)
        found = ([exact] if exact is not None else []) + titles[:limit].tolist()
        return {"query": query, "total": len(titles) + (exact is not None),
                "items": [self.entry(i) for i in found[:limit]]}

    # --- users ----------------------------------------------------------------------------------
    def users(self, split: str, offset: int, limit: int) -> dict:
        """A page of the split's users (dataset order) with their history lengths and targets."""
        rows = split_rows(self.dataset, split)
        first = min(offset, self.dataset.num_users)
        chosen = np.arange(first, min(first + limit, self.dataset.num_users))
        lengths = rows.target_positions[chosen] - rows.starts[chosen]
        targets = self.dataset.seq_items[rows.target_positions[chosen]]
        return {"split": split, "total": self.dataset.num_users, "offset": offset,
                "users": [{"user_id": self.dataset.user_ids[u], "history_length": int(n), "target": self.entry(t)}
                          for u, n, t in zip(chosen, lengths, targets)]}

    def user_index_of(self, user_id: str) -> int | None:
        return self.user_index.get(user_id)

    def user(self, user: int, split: str, max_items: int) -> dict:
        """A user's history in the split (its last ``max_items`` items, oldest first) and target."""
        rows = split_rows(self.dataset, split)
        start, target_at = int(rows.starts[user]), int(rows.target_positions[user])
        history = self.dataset.seq_items[max(start, target_at - max_items):target_at]
        return {"user_id": self.dataset.user_ids[user], "split": split, "history_length": target_at - start,
                "history": [self.entry(i) for i in history],
                "target": self.entry(int(self.dataset.seq_items[target_at]))}

    # --- the codebook ---------------------------------------------------------------------------
    def codebook(self) -> dict:
        """Per-level utilisation, perplexity and code usage; collisions and the largest groups; how
        often an item's nearest item by text shares its first codes."""
        with self._lock:
            if self._codebook is None:
                self._codebook = self._codebook_stats()
            return self._codebook

    def _codebook_stats(self) -> dict:
        table, codes = self.sid_table, self.codes
        width = table.num_codes_per_level
        stats = sid_diagnostics(codes, width, None)
        _, inverse, sizes = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        largest = np.lexsort((np.arange(len(sizes)), -sizes))[:LARGEST_GROUPS]
        groups = []
        for g in largest[sizes[largest] > 1]:
            members = np.flatnonzero(inverse == g)
            groups.append({"codes": codes[members[0]].tolist(), "count": int(sizes[g]),
                           "items": [self.entry(i) for i in members[:GROUP_EXAMPLES]]})
        return {"num_items": stats["num_items"], "num_trained_items": self.num_trained_items,
                "num_levels": stats["num_levels"], "num_codes_per_level": width,
                "level_sizes": [int(s) for s in table.level_sizes], "dedup": table.dedup,
                "utilisation": stats["utilisation"], "perplexity": stats["perplexity"],
                "usage": [np.bincount(codes[:, level], minlength=width).tolist() for level in range(codes.shape[1])],
                "distinct_codes": stats["distinct_sids"], "collision_rate": stats["collision_rate"],
                "max_collision_group": stats["max_collision_group"],
                "colliding_groups": int((sizes > 1).sum()), "largest_groups": groups,
                "neighbour_agreement": neighbour_agreement(codes, self.unit, PAGE_NEIGHBOUR_QUERIES)}

    # --- the 2-D map ----------------------------------------------------------------------------
    def item_map(self, limit: int) -> dict:
        """Every item's position on the first two principal components of the text embeddings
        (at most ``limit`` items, evenly spread over the catalog), with its first-level code."""
        with self._lock:
            if self._map is None:
                self._map = map_coordinates(self.unit, self.num_items, self.num_trained_items, self.run_dir)
            coords, explained = self._map
        shown = np.unique(np.linspace(0, self.num_items - 1, min(limit, self.num_items)).round().astype(np.int64))
        ids = [self.dataset.items[i]["item_id"] for i in shown]
        return {"num_items": self.num_items, "shown": int(len(shown)), "explained_variance": explained.tolist(),
                "index": shown.tolist(), "item_id": ids, "code": self.codes[shown, 0].tolist(),
                "x": np.round(coords[shown, 0].astype(np.float64), 4).tolist(),
                "y": np.round(coords[shown, 1].astype(np.float64), 4).tolist()}


def _text(value) -> str | None:
    return None if value is None else str(value)


def _top(candidates: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` candidates of highest score, best first (ties: item order; nan scores: item order)."""
    if np.isnan(scores).all():
        return candidates[:k]
    if len(candidates) > k:
        candidates = np.sort(candidates[np.argpartition(-scores[candidates], k - 1)[:k]])
    return candidates[np.argsort(-scores[candidates], kind="stable")]


# --- the 2-D map, cached in the run directory -------------------------------------------------------
def embeddings_fingerprint(unit: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(unit, dtype=np.float32).tobytes()).hexdigest()[:16]


def fit_map(unit: np.ndarray) -> dict[str, np.ndarray]:
    """PCA of the rows of ``unit`` to two dimensions (the covariance's top eigenvectors, each
    signed so that its largest loading is positive, so the picture does not flip between runs)."""
    x = np.asarray(unit, dtype=np.float32)
    mean = x.mean(axis=0, dtype=np.float64)
    covariance = (x.T @ x).astype(np.float64) / len(x) - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(covariance)  # ascending
    components = vectors[:, ::-1][:, :2].T
    components *= np.sign(components[np.arange(2), np.abs(components).argmax(axis=1)])[:, None]
    explained = values[::-1][:2] / max(values.sum(), 1e-12)
    return {"mean": mean.astype(np.float32), "components": components.astype(np.float32),
            "explained": explained.astype(np.float32)}


def map_coordinates(unit: np.ndarray | None, num_items: int, num_trained: int,
                    run_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) map positions and the two components' shares of the variance. The projection is
    fitted on the items the model was trained with and cached in ``run_dir/page_map.npz`` (temp
    file + rename), keyed by a fingerprint of their embeddings, so it is computed once per run;
    items added later are projected with it. Without embeddings every item sits at (0, 0)."""
    if unit is None:
        return np.zeros((num_items, 2), dtype=np.float32), np.zeros(2, dtype=np.float32)
    trained = unit[:num_trained]
    fingerprint = embeddings_fingerprint(trained)
    path = None if run_dir is None else Path(run_dir) / PAGE_MAP
    fit = _read_map(path, fingerprint) if path is not None else None
    if fit is None:
        fit = fit_map(trained)
        if path is not None:
            try:
                write_npz(path, fingerprint=np.array(fingerprint), **fit)
            except OSError as exc:  # a read-only run directory: the map is just not cached
                log.warning("could not cache the page's map in %s: %s", path, exc)
    coords = (np.asarray(unit, dtype=np.float32) - fit["mean"]) @ fit["components"].T
    return coords.astype(np.float32), fit["explained"]


def _read_map(path: Path, fingerprint: str) -> dict[str, np.ndarray] | None:
    """The cached projection, if it is there, readable and of these embeddings."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["fingerprint"]) != fingerprint:
                return None
            return {k: f[k] for k in ("mean", "components", "explained")}
    except Exception:  # noqa: BLE001 - a damaged cache is recomputed
        return None
