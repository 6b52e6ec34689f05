"""The baselines users compare against, one command each, on any dataset, with the main run's
leave-last-out split and metrics: ``sidrec popularity`` (most popular training items),
``sidrec lookup`` (text nearest neighbours of the last history items, no training) and
``sidrec sasrec`` (a trained SASRec). Shared run directory, evaluation and command line:
``sidrec.baselines.common``."""

from sidrec.baselines.lookup import run_lookup
from sidrec.baselines.popularity import run_popularity
from sidrec.baselines.sasrec import run_sasrec

__all__ = ["run_lookup", "run_popularity", "run_sasrec"]
