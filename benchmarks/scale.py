"""Synthetic-catalog scale benchmark: tokenizer fit, encoding, de-dup, trie and constrained decoding
at 10^4 .. 10^6 items, with ONE model decoding against every catalog.

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--threads 2] [--users 512]
                               [--source random|beauty] [--out docs/figures/scale.png] [--json scale.json]

Catalog: N unit embeddings of ``--dim`` dimensions (384, like all-MiniLM-L6-v2), either i.i.d.
Gaussian directions (``random``) or the bundled Beauty embeddings tiled to N rows with Gaussian noise
(``beauty``; needs the embedding cache or ~70 s to embed; the copies of an item stay close, so
collision groups grow with N: 1,184 items at 10^6 with --noise 1, so use --digit-size 2048 there).
Stages, timed one by one:

    fit       RK-Means tokenizer, the default RK-Means options (3 x 256, 1000 mini-batch steps/level, CPU)
    encode    all N items -> (N, 3) codes
    dedup     SIDTable.build (extra digit; the digit level has ``--digit-size`` values for every N)
    trie      PrefixTrie.from_sids over the N SID token rows
    decode    recommend() for ``--users`` synthetic histories (5..20 random items of the catalog),
              batches of 256, 10 beams, top-10, history excluded; best of ``--repeats`` passes

The model is the paper's default ModelConfig (4+4-layer encoder-decoder, d_model 128, 6 heads x 64,
MLP 1024), randomly initialised from ``--seed``. Its vocabulary depends only on the level sizes
(3 x 256 codes + the fixed digit level), so every size decodes with the same weights (the weights'
checksum is printed per size). Each size runs in its own process so that its peak RSS
(``ru_maxrss``, the process high-water mark, embeddings included) is its own.

Prints one row per size, writes a log-log PNG of seconds per stage against N, and ends with the
line ``decode_cost_ratio_1m: <x>`` = decode seconds per user at 10^6 items / at 10^4 (with other
sizes: largest / smallest, under the name ``decode_cost_ratio``).

Where the time and memory go at 10^6 (development runs, nice'd on a shared 2-core CPU, so only
the shape is meaningful): fit = a fixed part (3 x 1000 mini-batch steps of 2048 points, independent
of N) plus one nearest-code pass over all N per level; encode = three such passes, linear; de-dup
and trie are one int64 sort each (~0.3 s); decoding costs the same per user at every size (the
search's own work, masks, trie steps and SID lookups, is ~0.3 ms per user at 10^4 and at 10^6 with
a free model, against ~10 ms of network). Peak RSS ~3.3 GiB = the 1.5 GiB embeddings + the
tokenizer's one 1.5 GiB working copy of them (residuals computed in place) + ~0.3 GiB of runtime.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

TOP_K = 10
NUM_BEAMS = 10  # DecodeConfig's default
DECODE_BATCH = 256
STAGES = ("fit", "encode", "dedup", "trie", "decode")


def unit_embeddings(n: int, dim: int, source: str, noise: float, seed: int) -> np.ndarray:
    """(n, dim) float32 unit rows, built in place in chunks (a float64 or second copy of 10^6 x 384
    would cost more memory than the stages being measured)."""
    rng = np.random.default_rng(seed)
    if source == "beauty":
        base = beauty_embeddings()
        if base.shape[1] != dim:
            raise SystemExit(f"--source beauty: the Beauty embeddings are {base.shape[1]}-dim, not --dim {dim}")
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):
        rows = x[start:start + 65536]
        rng.standard_normal(rows.shape, dtype=np.float32, out=rows)
        if source == "beauty":  # item (start + i) mod len(base), plus noise of norm ~ noise
            rows *= noise / np.sqrt(dim)
            rows += base[np.arange(start, start + len(rows)) % len(base)]
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return x


def beauty_embeddings() -> np.ndarray:
    from sidrec.config import RunConfig
    from sidrec.data.loaders import load_dataset
    from sidrec.data.text import item_texts
    from sidrec.encode import load_or_embed

    cfg = RunConfig()
    dataset = load_dataset(cfg.data)
    texts = item_texts(dataset.items, cfg.data.text_template, cfg.data.missing_text, cfg.data.max_text_chars)
    return load_or_embed(dataset.content_hash(), cfg.data.text_template, texts, cfg.encoder, progress=False)[0]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def trie_bytes(trie) -> int:
    tensors = [v for v in vars(trie).values() if isinstance(v, (torch.Tensor, np.ndarray))]
    return sum(t.nbytes for t in tensors)


def run_size(args, n: int) -> dict:
    """Every stage at one catalog size, in this process. Returns the figures as a dict."""
    from sidrec.config import model_config, tokenizer_config
    from sidrec.decode import PrefixTrie, recommend
    from sidrec.models import build_model
    from sidrec.tokenize import build_tokenizer
    from sidrec.tokenize.sid_table import SIDTable, sid_keys
    from sidrec.tokenize.vocab import PAD, SIDVocab

    torch.set_num_threads(args.threads)
    out: dict = {"items": n, "users": args.users, "seconds": {}, "rss_mib": {}}

    def stage(name, fn):
        start = time.perf_counter()
        result = fn()
        out["seconds"][name] = time.perf_counter() - start
        out["rss_mib"][name] = peak_rss_mib()
        return result

    embeddings = stage("embeddings", lambda: unit_embeddings(n, args.dim, args.source, args.noise, args.seed))
    tok_cfg = tokenizer_config("rkmeans", device="cpu")
    if args.steps:
        tok_cfg = dataclasses.replace(tok_cfg, steps_per_level=args.steps)
    tokenizer = stage("fit", lambda: build_tokenizer(tok_cfg).fit(embeddings, seed=args.seed, progress=False))
    codes = stage("encode", lambda: tokenizer.encode(embeddings))
    del embeddings
    table = stage("dedup", lambda: SIDTable.build(codes, tok_cfg.num_codes_per_level, "extra_digit",
                                                  digit_size=args.digit_size))
    if table.level_sizes[-1] > args.digit_size:
        raise SystemExit(f"{n} items: the largest SID collision group has {table.level_sizes[-1]} items, "
                         f"more than --digit-size {args.digit_size}; raise it (the same for every size)")
    vocab = SIDVocab(table.level_sizes)
    sid_tokens = vocab.sid_to_tokens(table.sids)
    trie = stage("trie", lambda: PrefixTrie.from_sids(sid_tokens, vocab.size))
    out["distinct_raw_sids"] = int(len(np.unique(sid_keys(table.codes, table.level_sizes[:-1]))))
    out["largest_group"] = int(table.sids[:, -1].max()) + 1
    out["trie_nodes"], out["trie_mib"] = trie.num_nodes, trie_bytes(trie) / 2**20

    # One model for every size: seeded init, vocabulary fixed by the level sizes alone.
    model_cfg = model_config(dropout=0.0)
    max_items = 20
    torch.manual_seed(args.seed)
    model = build_model(model_cfg, vocab.size, max_items * vocab.num_levels, vocab.num_levels).eval()
    out["model_checksum"] = float(sum(p.detach().double().sum() for p in model.parameters()))
    rng = np.random.default_rng(args.seed + 1)
    lengths = rng.integers(5, max_items + 1, args.users)
    histories = rng.integers(0, n, (args.users, max_items))
    histories[np.arange(max_items)[None, :] >= lengths[:, None]] = -1
    tokens = torch.as_tensor(sid_tokens[histories]).flatten(1)
    mask = torch.as_tensor(np.repeat(histories >= 0, vocab.num_levels, axis=1))
    tokens = tokens.masked_fill(~mask, PAD)

    def decode_all():
        return [recommend(model, tokens[i:i + DECODE_BATCH], mask[i:i + DECODE_BATCH], vocab, trie, table.lookup,
                          k=TOP_K, num_beams=NUM_BEAMS, exclude=histories[i:i + DECODE_BATCH])[0]
                for i in range(0, args.users, DECODE_BATCH)]

    recommend(model, tokens[:8], mask[:8], vocab, trie, table.lookup, k=TOP_K, num_beams=NUM_BEAMS)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        items = torch.cat(decode_all())
        times.append(time.perf_counter() - start)
    out["seconds"]["decode"] = min(times)
    out["rss_mib"]["decode"] = peak_rss_mib()
    out["decode_ms_per_user"] = 1000 * min(times) / args.users
    out["found_top_k"] = float((items >= 0).float().mean())
    return out


def plot(results: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = np.array([r["items"] for r in results], dtype=float)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in STAGES:
        label = f"decode ({results[0]['users']} users)" if name == "decode" else name
        ax_t.plot(sizes, [r["seconds"][name] for r in results], "o-", label=label)
    linear = sizes / sizes[0] * results[0]["seconds"]["encode"]
    ax_t.plot(sizes, linear, "k:", lw=1, label="linear (from encode)")
    ax_t.set(xscale="log", yscale="log", xlabel="catalog items", ylabel="seconds",
             title="seconds per stage")
    ax_t.legend(fontsize=8)
    ax_m.plot(sizes, [r["rss_mib"]["trie"] for r in results], "o-", label="peak RSS through trie")
    ax_m.plot(sizes, [r["rss_mib"]["embeddings"] for r in results], "o--", label="RSS after embeddings")
    ax_m.plot(sizes, [r["trie_mib"] for r in results], "o-", label="trie arrays")
    ax_m.set(xscale="log", yscale="log", xlabel="catalog items", ylabel="MiB", title="memory")
    ax_m.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)  # atomic: a killed run leaves the old figure


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--users", type=int, default=512, help="synthetic users decoded per size")
    parser.add_argument("--repeats", type=int, default=3, help="decode passes; the fastest counts")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--source", choices=("random", "beauty"), default="random")
    parser.add_argument("--noise", type=float, default=0.3, help="--source beauty: norm of the added noise")
    parser.add_argument("--digit-size", type=int, default=64, help="values of the de-dup digit level (all sizes)")
    parser.add_argument("--steps", type=int, default=0, help="RK-Means steps per level (0 = the config's, 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/figures/scale.png", help="PNG path ('' = none)")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.child:  # one size, figures as JSON on the last stdout line
        print(json.dumps(run_size(args, args.child)))
        return []

    from sidrec.config import tokenizer_config

    sizes = [int(s) for s in args.sizes.split(",")]
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
               f"{args.threads} threads")
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"machine: {machine}; {date}")
    print(f"catalog: {args.source} unit embeddings, dim {args.dim}; RK-Means 3x256, "
          f"{args.steps or tokenizer_config('rkmeans').steps_per_level} steps/level (default tokenizer config); "
          f"digit level {args.digit_size}; model: paper ModelConfig, random init (seed {args.seed}); "
          f"{args.users} users, batch {DECODE_BATCH}, {NUM_BEAMS} beams, top-{TOP_K}")
    header = (f"{'items':>9} {'fit s':>7} {'encode s':>8} {'dedup s':>7} {'trie s':>7} {'tok+dedup+trie s':>16} "
              f"{'peak RSS MiB':>12} {'trie MiB':>8} {'trie nodes':>10} {'max group':>9} {'users/s':>8} "
              f"{'ms/user':>7} {'model sum':>11}")
    print(header)
    results = []
    # The children import the sidrec of this script's checkout, as this process does when run from it.
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    for n in sizes:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--child", str(n)],
                              stdout=subprocess.PIPE, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{n} items: child process failed with exit code {proc.returncode}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        s = r["seconds"]
        pipeline_s = s["fit"] + s["encode"] + s["dedup"] + s["trie"]
        print(f"{n:>9} {s['fit']:>7.1f} {s['encode']:>8.1f} {s['dedup']:>7.2f} {s['trie']:>7.2f} {pipeline_s:>16.1f} "
              f"{r['rss_mib']['trie']:>12.0f} {r['trie_mib']:>8.1f} {r['trie_nodes']:>10} {r['largest_group']:>9} "
              f"{1000 / r['decode_ms_per_user']:>8.1f} {r['decode_ms_per_user']:>7.2f} {r['model_checksum']:>11.4f}",
              flush=True)
    if args.out:
        plot(results, args.out, f"benchmarks/scale.py --sizes {args.sizes} --threads {args.threads}; {machine}; {date}")
        print(f"figure: {args.out}")
    if args.json:
        from sidrec.io import write_json
        write_json(args.json, {"machine": machine, "date": date, "args": vars(args), "results": results})
    per_user = {r["items"]: r["decode_ms_per_user"] for r in results}
    if 10**4 in per_user and 10**6 in per_user:
        print(f"decode_cost_ratio_1m: {per_user[10**6] / per_user[10**4]:.2f}")
    else:
        print(f"decode_cost_ratio: {per_user[max(per_user)] / per_user[min(per_user)]:.2f}")
    return results


if __name__ == "__main__":
    main()
