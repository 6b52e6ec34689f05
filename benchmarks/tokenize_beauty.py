"""Embedding + SID tokenizer benchmark on the bundled Amazon Beauty data.

Reports the embedding time (default encoder, cold cache), then for each tokenizer at L x W the
fit+encode time and the SID diagnostics (per-level utilisation, perplexity, collisions,
reconstruction error), and checks that extra-digit de-dup gives every item a unique SID.

    python benchmarks/tokenize_beauty.py                      # all three tokenizers, 3x256
    python benchmarks/tokenize_beauty.py --tokenizers rkmeans --rqvae-steps 3000

Ends with one line: ``tokenize_beauty: embed_s=... rkmeans_s=... rvq_s=... rqvae_s=... min_util=... unique_sids=...``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import torch

from sidrec.config import RunConfig, build_config
from sidrec.data.loaders import load_dataset
from sidrec.data.text import item_texts
from sidrec.encode import embed_items
from sidrec.tokenize import build_tokenizer
from sidrec.tokenize.diagnostics import format_diagnostics, sid_diagnostics
from sidrec.tokenize.sid_table import SIDTable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizers", default="rkmeans,rvq,rqvae")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codes", type=int, default=256)
    parser.add_argument("--rqvae-steps", type=int, default=None, help="default: the config's (paper: 15000)")
    parser.add_argument("--embeddings", default="", help="reuse an (N, d) .npy instead of embedding (no embed time)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", default="", help="also write all figures to this JSON file")
    args = parser.parse_args()

    cfg = RunConfig()
    dataset = load_dataset(cfg.data)
    texts = item_texts(dataset.items, cfg.data.text_template)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, cuda={torch.cuda.is_available()}")
    print(f"dataset: {dataset.stats()}")

    if args.embeddings:
        embeddings, embed_s = np.load(args.embeddings), float("nan")
    else:
        with tempfile.TemporaryDirectory() as cache:  # cold: the encoder cache must not hide the cost
            cfg.encoder.cache_dir = cache
            start = time.perf_counter()
            embeddings = embed_items(texts, cfg.encoder, progress=True)
            embed_s = time.perf_counter() - start
    print(f"embeddings: {embeddings.shape} in {embed_s:.1f} s ({cfg.encoder.model})")

    results: dict = {"embed_s": embed_s, "num_items": len(texts), "tokenizers": {}}
    for kind in [k.strip() for k in args.tokenizers.split(",") if k.strip()]:
        overrides = [f"tokenizer.kind={kind}", f"tokenizer.num_levels={args.levels}",
                     f"tokenizer.num_codes_per_level={args.codes}"]
        if args.rqvae_steps is not None and kind == "rqvae":  # an option of RQ-VAE only
            overrides.append(f"tokenizer.rqvae_steps={args.rqvae_steps}")
        tcfg = build_config(overrides).tokenizer
        start = time.perf_counter()
        tokenizer = build_tokenizer(tcfg).fit(embeddings, seed=args.seed, progress=True)
        codes = tokenizer.encode(embeddings)
        seconds = time.perf_counter() - start
        table = SIDTable.build(codes, tcfg.num_codes_per_level, "extra_digit")
        diag = sid_diagnostics(codes, tcfg.num_codes_per_level, tokenizer.reconstruction_error(embeddings))
        diag["fit_encode_seconds"] = round(seconds, 2)
        diag["unique_sids_after_dedup"] = int(len(np.unique(table.sids, axis=0)))
        steps = tcfg.rqvae_steps if kind == "rqvae" else tcfg.steps_per_level
        print(format_diagnostics(diag, title=f"{kind} {args.levels}x{args.codes}: fit+encode {seconds:.1f} s "
                                             f"({'total' if kind == 'rqvae' else 'per-level'} steps {steps})"))
        results["tokenizers"][kind] = diag

    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    tok = results["tokenizers"]
    min_util = min((min(d["utilisation"]) for d in tok.values()), default=float("nan"))
    all_unique = all(d["unique_sids_after_dedup"] == len(texts) for d in tok.values())
    times = " ".join(f"{k}_s={d['fit_encode_seconds']:.1f}" for k, d in tok.items())
    print(f"tokenize_beauty: embed_s={embed_s:.1f} {times} min_util={min_util:.3f} "
          f"unique_sids={'all' if all_unique else 'NO'}")


if __name__ == "__main__":
    main()
