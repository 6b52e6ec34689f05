"""The page's item search (GET /search) on a large catalog: index build time and query latency.

    python benchmarks/page_search.py [--items 100000] [--queries 2000] [--seed 0]

Catalog: ``--items`` titles made from the bundled Beauty titles (item j takes the words of Beauty
title j mod 12,101, two more words drawn from all Beauty title words, and a model number of its
own, so the vocabulary and word frequencies are Beauty's, plus one rare word per item), random SIDs
and random users' sequences (for the popularity order). Queries, drawn from the same words:
whole words, three-letter prefixes, two-word queries and ASINs. Times ``CatalogView.search(q, 20)``,
what the route runs (the index lookup, the ranking and the 20 items' JSON), after the index is built
by a first query; then the widest query there is, a one-letter prefix.

Ends with the line ``page_search_p99_ms: <x>``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sidrec.data.dataset import Dataset
from sidrec.data.loaders import load_bundled
from sidrec.page.explore import CatalogView, words_of
from sidrec.tokenize.sid_table import SIDTable


def synthetic_catalog(num_items: int, rng: np.random.Generator) -> tuple[Dataset, SIDTable]:
    beauty = load_bundled("beauty")
    titles = [item.get("title") or "" for item in beauty.items]
    pool = [w for t in titles for w in t.split()]
    extra = rng.integers(0, len(pool), size=(num_items, 2))
    items = [{"item_id": str(j), "asin": f"S{j:09d}",
              "title": f"{titles[j % len(titles)]} {pool[extra[j, 0]]} {pool[extra[j, 1]]} model {j:x}"}
             for j in range(num_items)]
    num_users = num_items // 5
    lengths = rng.integers(3, 12, size=num_users)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    sequences = rng.zipf(1.3, size=int(offsets[-1])) % num_items  # popular items and a long tail
    dataset = Dataset("synthetic", items, [str(u) for u in range(num_users)], offsets, sequences.astype(np.int64))
    codes = rng.integers(0, 256, size=(num_items, 3))
    return dataset, SIDTable.build(codes, 256, "extra_digit")


def queries(dataset: Dataset, count: int, rng: np.random.Generator) -> list[str]:
    words = [w for i in rng.integers(0, dataset.num_items, size=count) for w in words_of(dataset.items[i]["title"])]
    words = [w for w in words if len(w) >= 3]
    picks = rng.integers(0, len(words), size=(count, 2))
    out = []
    for n, (a, b) in enumerate(picks):
        kind = n % 4
        out.append(words[a] if kind == 0 else words[a][:3] if kind == 1 else f"{words[a]} {words[b][:4]}"
                   if kind == 2 else dataset.items[int(rng.integers(dataset.num_items))]["asin"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    dataset, table = synthetic_catalog(args.items, rng)
    user_index = {u: i for i, u in enumerate(dataset.user_ids)}
    view = CatalogView(dataset, table, None, dataset.num_items, user_index)
    start = time.perf_counter()
    view.search("warm", 20)  # builds the popularity counts and the title index
    build_s = time.perf_counter() - start

    asked = queries(dataset, args.queries, rng)
    times, found = [], []
    for q in asked:
        start = time.perf_counter()
        result = view.search(q, 20)
        times.append(time.perf_counter() - start)
        found.append(result["total"])
    ms = np.array(times) * 1000
    start = time.perf_counter()
    widest = view.search("s", 20)
    widest_ms = (time.perf_counter() - start) * 1000

    print(f"{args.items:,} items, {len(view._index.vocab):,} distinct title words, "
          f"{len(view._index.postings):,} (item, word) pairs")
    print(f"index build (first search): {build_s:.2f} s")
    print(f"{len(asked)} queries (whole words, 3-letter prefixes, two words, ASINs): "
          f"p50 {np.percentile(ms, 50):.2f} ms, p90 {np.percentile(ms, 90):.2f} ms, "
          f"p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms; median matches {int(np.median(found)):,}")
    print(f"widest query ('s', {widest['total']:,} matches): {widest_ms:.1f} ms")
    print(f"page_search_p99_ms: {np.percentile(ms, 99):.2f}")


if __name__ == "__main__":
    main()
