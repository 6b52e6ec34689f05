"""``sidrec lookup``: the text nearest-neighbour lookup, no training. The catalog is ranked by cosine
similarity of the item text embeddings (the pipeline's embed stage: the run's encoder, the shared
embedding cache) to the user's last history item, or to a recency-weighted mean of the last
``lookup.last_n`` items; the user's history items are excluded (``lookup.exclude_history``).

    sidrec lookup                                       # bundled Beauty, MiniLM
    sidrec lookup lookup.last_n=3 lookup.decay=0.5      # the last 3 items, weights 0.25, 0.5, 1
    sidrec lookup data.format=p5 data.path=... data.name=sports encoder.model=...

Same leave-last-out split and metrics as a main run, whole histories; the run directory also holds
embeddings.npy + embeddings.json as a main run's does. Scores: ``sidrec.evaluate.lookup``.
"""

from __future__ import annotations

from sidrec.baselines.common import baseline_cli, finish_run, split_metrics, start_run
from sidrec.config import LookupRunConfig, build_lookup_config
from sidrec.devices import resolve_device
from sidrec.evaluate.lookup import text_lookup_rank
from sidrec.pipeline import embed


def run_lookup(cfg: LookupRunConfig, progress: bool = True) -> dict:
    run_dir, dataset = start_run(cfg, "lookup", progress)
    embeddings = embed(cfg, run_dir, dataset)
    o = cfg.lookup
    device = resolve_device(o.device, "lookup.device")

    def rank(samples, k):
        return text_lookup_rank(embeddings, samples.histories, k, o.batch_size, device, last_n=o.last_n,
                                decay=o.decay, exclude_history=o.exclude_history)

    metrics = split_metrics(dataset, rank, cfg.ks(), cfg.eval.test)
    return finish_run(run_dir, {**metrics, "model": "lookup"})


def cli(args: list[str]) -> None:
    """``sidrec lookup [key=value ...]``"""
    baseline_cli(args, "lookup", "Text lookup", build_lookup_config, run_lookup)
