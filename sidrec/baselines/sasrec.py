"""``sidrec sasrec``: the SASRec baseline's run, under exactly the generative model's protocol.

    sidrec sasrec                              # bundled Beauty, CPU ok (a few minutes)
    sidrec sasrec seeds=3 sasrec.dropout=0.5   # several seeds -> summary.json with mean ± std

Settings: ``SASRecRunConfig`` in sidrec/config.py (``data.*``, ``eval.*``, ``sasrec.*``); network:
sidrec/models/sasrec.py; training: sidrec/train/sasrec.py. The run directory has a main run's layout
where SASRec has the artifact (sidrec/baselines/common.py), plus model.pt (``sidrec.model_file``
format) and log.csv (per epoch loss and validation metrics); metrics.json holds the test metrics.
"""

from __future__ import annotations

from sidrec.baselines.common import baseline_cli, finish_run, start_run
from sidrec.config import SASRecRunConfig, build_sasrec_config
from sidrec.data.split import evaluation_samples
from sidrec.layout import MODEL
from sidrec.model_file import sasrec_meta, save_model_file
from sidrec.train.sasrec import device_for, evaluate_sasrec, network_config, train_sasrec


def run_sasrec(cfg: SASRecRunConfig, progress: bool = True) -> dict:
    """Load data -> train -> test, writing the run directory as it goes."""
    run_dir, dataset = start_run(cfg, "sasrec", progress)
    model, summary = train_sasrec(cfg, dataset, run_dir, progress)
    save_model_file(run_dir / MODEL, model, sasrec_meta(network_config(cfg.sasrec, dataset.num_items), summary))
    test = evaluation_samples(dataset, cfg.sasrec.max_len, "test")
    metrics = evaluate_sasrec(model, test, cfg.ks(), cfg.sasrec.eval_batch_size, device_for(cfg.sasrec.device),
                               cfg.sasrec.exclude_history)
    metrics.update(summary, seed=cfg.seed, model="sasrec")
    return finish_run(run_dir, metrics)


def cli(args: list[str]) -> None:
    """``sidrec sasrec [seeds=N|a,b,c] [key=value ...]``"""
    baseline_cli(args, "sasrec", "SASRec", build_sasrec_config, run_sasrec, seeded=True)
