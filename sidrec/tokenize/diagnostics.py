"""How well a set of raw SIDs spreads the catalog (code usage per level, collisions) and how well it
keeps the text's neighbourhoods (does an item's nearest item by text share its SID prefix?)."""

from __future__ import annotations

import numpy as np


def sid_diagnostics(codes: np.ndarray, num_codes_per_level: int, reconstruction_error: float | None) -> dict:
    """(N, L) raw codes -> a JSON-ready dict:
    utilisation[l]   distinct codes used at level l / W
    perplexity[l]    exp(entropy of code usage at level l): W for perfectly even use, 1 for one code
    collision_rate   share of items whose SID is shared with at least one other item
    distinct_sids, max_collision_group, reconstruction_error (as given)."""
    codes = np.asarray(codes, dtype=np.int64)
    n, levels = codes.shape
    utilisation, perplexity = [], []
    for level in range(levels):
        p = np.bincount(codes[:, level], minlength=num_codes_per_level) / n
        p = p[p > 0]
        utilisation.append(len(p) / num_codes_per_level)
        perplexity.append(float(np.exp(-(p * np.log(p)).sum())))
    _, group_sizes = np.unique(codes, axis=0, return_counts=True)
    return {
        "num_items": n,
        "num_levels": levels,
        "num_codes_per_level": num_codes_per_level,
        "utilisation": utilisation,
        "perplexity": perplexity,
        "distinct_sids": len(group_sizes),
        "collision_rate": float(group_sizes[group_sizes > 1].sum() / n),
        "max_collision_group": int(group_sizes.max()),
        "reconstruction_error": None if reconstruction_error is None else float(reconstruction_error),
    }


NEIGHBOUR_QUERIES = 10_000  # items whose nearest neighbour is looked up (evenly spaced over the catalog)


def neighbour_agreement(codes: np.ndarray, embeddings: np.ndarray, max_queries: int = NEIGHBOUR_QUERIES) -> list[float]:
    """Share of items whose nearest other item by cosine of ``embeddings`` has the same first
    l codes, for l = 1..L: a tokenizer that keeps the encoder's semantics scores high at level 1 (a
    model then learns one coarse code per neighbourhood). Up to ``max_queries`` items are asked
    (evenly spaced, so the figure is deterministic), each against the whole catalog."""
    codes = np.asarray(codes, dtype=np.int64)
    n = len(codes)
    if n < 2:
        return [1.0] * codes.shape[1]
    unit = np.asarray(embeddings, dtype=np.float32)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    queries = np.unique(np.linspace(0, n - 1, min(n, max_queries)).astype(np.int64))
    nearest = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), 1024):
        rows = queries[start:start + 1024]
        scores = unit[rows] @ unit.T
        scores[np.arange(len(rows)), rows] = -np.inf  # not itself
        nearest[start:start + 1024] = scores.argmax(1)
    same = np.cumprod(codes[queries] == codes[nearest], axis=1)  # same prefix up to level l
    return [float(v) for v in same.mean(0)]


def format_diagnostics(diag: dict, title: str = "") -> str:
    w = diag["num_codes_per_level"]
    lines = [title] if title else []
    lines.append(f"{diag['num_items']} items, {diag['num_levels']} levels x {w} codes")
    lines.append(f"{'level':>5}  {'used':>6}  {'util':>6}  {'perplexity':>10}")
    for level, (util, ppl) in enumerate(zip(diag["utilisation"], diag["perplexity"])):
        lines.append(f"{level:>5}  {round(util * w):>6}  {util:>6.1%}  {ppl:>10.1f}")
    recon = diag["reconstruction_error"]
    lines += [
        f"{'distinct SIDs':<24}{diag['distinct_sids']:>10}",
        f"{'colliding items':<24}{diag['collision_rate']:>10.2%}",
        f"{'largest collision group':<24}{diag['max_collision_group']:>10}",
        f"{'reconstruction error':<24}{'n/a' if recon is None else format(recon, '.4f'):>10}",
    ]
    if diag.get("neighbour_agreement"):
        shares = ", ".join(f"{level + 1} code{'s' if level else ''} {share:.1%}"
                           for level, share in enumerate(diag["neighbour_agreement"]))
        lines.append(f"{'text neighbour shares':<24}{shares}")
    return "\n".join(lines)
