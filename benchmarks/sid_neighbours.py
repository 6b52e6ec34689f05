"""How much of the text's neighbourhood each run's SIDs keep (``neighbour_agreement`` in
sid_diagnostics.json, computed here for run directories made before it existed), beside the run's
test Recall@10:

    python benchmarks/sid_neighbours.py runs/experiments/tokenizer-beauty/*/seed-*
"""

from __future__ import annotations

import argparse

from sidrec.run import RunDir
from sidrec.tokenize.diagnostics import neighbour_agreement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+")
    args = parser.parse_args()
    print(f"{'run':<60} {'tokenizer':<10} " + " ".join(f"{f'L1-{n}':>6}" for n in (1, 2, 3)) + "  recall@10")
    for path in args.run_dirs:
        run = RunDir(path)
        shares = neighbour_agreement(run.sid_table.codes, run.embeddings)
        recall = run.metrics().get("recall@10", float("nan"))
        print(f"{path:<60} {run.config.tokenizer.kind:<10} " + " ".join(f"{s:>6.1%}" for s in shares)
              + f"  {recall:.4f}")


if __name__ == "__main__":
    main()
