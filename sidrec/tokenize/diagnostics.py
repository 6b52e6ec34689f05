"""How well a set of raw SIDs spreads the catalog: code usage per level and collisions."""

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
    return "\n".join(lines)
