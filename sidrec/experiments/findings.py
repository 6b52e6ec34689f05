"""The paper's findings against our study runs: ``sidrec findings [root=runs/experiments] [out=docs]``.

Each finding is one claim of the GRID paper (Tables 1 and 3-8) reduced to a comparison of two rows of
one study: ``row`` against ``versus`` (the study's default row, unless the claim pairs two others),
and what the claim says of ``row − versus``: ``better``, ``worse`` or ``on_par``. The command reads
every study directory under ``root`` with the study report's reader (``report.collect``), takes the
paired difference of the two rows over the seeds both finished and its 95% confidence interval
(``sidrec.evaluate.metrics.paired_difference``), and writes ``findings.md`` and ``findings.csv``.

The verdict follows from the interval alone (``verdict``):

- a directional claim is ``confirmed`` when the interval excludes 0 on the claimed side, ``refuted``
  when it excludes 0 on the other side, else ``inconclusive``;
- an on-par claim has an equivalence margin of ±``EQUIVALENCE_MARGIN`` × the ``versus`` row's mean:
  ``confirmed`` when the whole interval lies inside the margin, ``refuted`` when it lies wholly
  outside it, else ``inconclusive``;
- fewer than 2 paired seeds give no interval: ``inconclusive``; a study (or one of the two rows)
  without a finished seed: ``not run``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sidrec.errors import ConfigError
from sidrec.evaluate.metrics import paired_difference
from sidrec.experiments.report import NAMES, collect, collect_baselines, mean_and_std
from sidrec.experiments.studies import METRICS, get_study, paper_value
from sidrec.io import atomic_path, write_text
from sidrec.layout import EXPERIMENT, FINDINGS_PAGE

DIRECTIONS = ("better", "worse", "on_par")
CONFIRMED, REFUTED, INCONCLUSIVE, NOT_RUN = "confirmed", "refuted", "inconclusive", "not run"
EQUIVALENCE_MARGIN = 0.10  # on-par claims: ± this share of the versus row's mean
PRIMARY_METRIC = "recall@10"
CSV_COLUMNS = ("study", "paper_table", "claim", "paper_value", "our_mean", "our_std", "seeds", "budget",
               "paired_diff", "ci95_low", "ci95_high", "verdict")


@dataclass(frozen=True)
class Finding:
    study: str  # the study that tests it: sidrec experiment <study>
    claim: str  # the paper's claim, one sentence
    row: str  # the row the claim is about (a row name of the study) ...
    versus: str  # ... compared with this row
    direction: str  # what the claim says of row − versus: better | worse | on_par
    quote: str  # the paper's words


def _shape_findings() -> list[Finding]:
    quote = "the default choice of (L, W) = (3, 256) leads to the best recommendation performance"
    return [Finding("sid_shape", f"SIDs of shape 3x256 recommend better than {shape}.", shape, "3x256", "worse", quote)
            for shape in ("3x128", "3x512", "2x256", "4x256", "5x256")]


def _user_token_findings() -> list[Finding]:
    quote = "totally removing this design (i.e., 0) leads to the optimal performance"
    return [Finding("user_tokens", f"User tokens do not help: 0 user tokens recommend better than {n}.", str(n), "0",
                    "worse", quote) for n in (2000, 4000, 6000, 8000)]


FINDINGS: tuple[Finding, ...] = (
    Finding("tokenizer", "RK-Means SIDs recommend better than RQ-VAE SIDs.", "rqvae", "rkmeans", "worse",
            "RK-Means and sometimes R-VQ lead to better recommendation performance than RQ-VAE"),
    Finding("tokenizer", "R-VQ SIDs recommend better than RQ-VAE SIDs.", "rqvae", "rvq", "worse",
            "RK-Means and sometimes R-VQ lead to better recommendation performance than RQ-VAE"),
    *_shape_findings(),
    *_user_token_findings(),
    Finding("architecture", "The encoder-decoder significantly beats the decoder-only model.", "decoder_only",
            "encoder_decoder", "worse", "decoder-only models significantly under-perform encoder-decoder models"),
    Finding("augmentation", "Sliding-window augmentation is paramount: training without it is worse.",
            "no_augmentation", "sliding_window", "worse",
            "proper data augmentation is paramount for achieving robust and high-performing GR models"),
    Finding("dedup", "The two SID de-duplications (an extra digit, a random pick) are on par.", "random",
            "extra_digit", "on_par", "both perform comparably, with TIGER's strategy having a slight edge"),
    Finding("decoding", "Constrained and free-form beam search are on par.", "free_form", "constrained", "on_par",
            "both yield similar performance"),
)


def verdict(direction: str, interval: dict | None, margin: float = 0.0) -> str:
    """The verdict on a claim about ``row − versus`` from the 95% interval of the paired difference
    (``{"low": .., "high": ..}``, None with fewer than 2 pairs); ``margin``: the equivalence margin
    of an on-par claim, in the metric's units."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: expected one of {', '.join(DIRECTIONS)}")
    if interval is None:
        return INCONCLUSIVE
    low, high = interval["low"], interval["high"]
    if direction == "on_par":
        if -margin <= low and high <= margin:
            return CONFIRMED
        if low > margin or high < -margin:
            return REFUTED
        return INCONCLUSIVE
    if low > 0:
        observed = "better"
    elif high < 0:
        observed = "worse"
    else:
        return INCONCLUSIVE
    return CONFIRMED if observed == direction else REFUTED


def _paper_values(finding: Finding, dataset: str) -> tuple[dict | None, dict | None]:
    """The paper's metrics of the finding's two rows on ``dataset``."""
    study = get_study(finding.study)
    paper_rows = {r.name: r.paper_row for r in study.rows}
    return (paper_value(study.table, dataset, paper_rows[finding.row]),
            paper_value(study.table, dataset, paper_rows[finding.versus]))


def judge(finding: Finding, collected: tuple[dict, list[dict]] | None, dataset: str,
          metric: str = PRIMARY_METRIC) -> dict:
    """One finding against its study's ``report.collect`` result (None: the study was not run): the
    paper's numbers, ours, the paired difference with its interval, and the verdict."""
    study = get_study(finding.study)
    result = {"finding": finding, "study": finding.study, "paper_table": study.table, "claim": finding.claim,
              "metric": metric, "budget": "", "seeds": [], "our": None, "our_versus": None, "paired": None,
              "margin": None, "verdict": NOT_RUN}
    if collected is not None:
        exp, rows = collected
        by_name = {r["name"]: r for r in rows}
        dataset = exp["paper_dataset"]
        result["budget"] = exp["budget"]
        if finding.row in by_name and finding.versus in by_name:
            row = {s: v[metric] for s, v in by_name[finding.row]["per_seed"].items()}
            versus = {s: v[metric] for s, v in by_name[finding.versus]["per_seed"].items()}
            seeds = sorted(set(row) & set(versus))
            if seeds:
                result["seeds"] = seeds
                result["our"] = mean_and_std([row[s] for s in seeds])
                result["our_versus"] = mean_and_std([versus[s] for s in seeds])
                result["paired"] = paired_difference(row, versus)
                if finding.direction == "on_par":
                    result["margin"] = EQUIVALENCE_MARGIN * abs(result["our_versus"][0])
                result["verdict"] = verdict(finding.direction, result["paired"], result["margin"] or 0.0)
    paper_row, paper_versus = _paper_values(finding, dataset)
    result["paper"] = paper_row[metric] if paper_row else None
    result["paper_versus"] = paper_versus[metric] if paper_versus else None
    return result


def judge_all(root: Path, dataset: str = "beauty", metric: str = PRIMARY_METRIC,
              findings: tuple[Finding, ...] = FINDINGS) -> list[dict]:
    """Every finding against its study's directory under ``root`` (``<study>-<dataset>``, as
    ``sidrec experiment`` names it)."""
    if metric not in METRICS:
        raise ConfigError(f"metric={metric!r}: expected one of {', '.join(METRICS)}")
    studies = {}
    for study in dict.fromkeys(f.study for f in findings):
        study_dir = root / f"{study}-{dataset}"
        studies[study] = collect(study_dir) if (study_dir / EXPERIMENT).exists() else None
    return [judge(f, studies[f.study], dataset, metric) for f in findings]


# --- the page ---------------------------------------------------------------------------------
def _number(value: float | None, signed: bool = False) -> str:
    return "—" if value is None else f"{value:+.4f}" if signed else f"{value:.4f}"


def _label(study: str, row: str) -> str:
    return next(r.label for r in get_study(study).rows if r.name == row)


def _rule_lines(metric: str) -> list[str]:
    return [
        "## How a verdict follows from the numbers", "",
        f"Each finding compares two rows of one study on test {NAMES[metric]}: the claim's row against the "
        "row it is compared with (the study's default row unless the claim pairs two others). Both rows run "
        "with the same seeds, so the difference is taken per seed (row − compared row) and averaged, with "
        "its 95% confidence interval (Student's t over the seeds both rows finished), as in the study's report. "
        "The rule is fixed before any number is read (`sidrec/experiments/findings.py`, `verdict`):", "",
        "- **better / worse** (the claim says which row wins): `confirmed` if the interval excludes 0 on the "
        "claimed side, `refuted` if it excludes 0 on the other side, else `inconclusive`.",
        f"- **on par**: an equivalence margin of ±{EQUIVALENCE_MARGIN:.0%} of the compared row's mean. "
        "`confirmed` if the whole interval lies inside the margin, `refuted` if it lies wholly outside it "
        "(the rows differ by more than the margin), else `inconclusive`.",
        "- Fewer than 2 seeds finished by both rows give no interval: `inconclusive`. `not run`: the study, "
        "or one of its two rows, has no finished seed under the root.",
        "", "A verdict holds for the budget it was measured at. Budgets other than `paper` train a smaller "
        "model for less time than the paper (`docs/experiments.md`): they test whether the ordering of the "
        "rows reproduces, not the paper's absolute numbers.", ""]


def markdown(results: list[dict], root: Path, dataset: str, metric: str, baselines: dict[str, list[dict]]) -> str:
    name = NAMES[metric]
    lines = ["# Findings: the paper's claims against our runs", "",
             f"Generated by `sidrec findings root={root}` from the study reports under `{root}` "
             f"(dataset {dataset}); not edited by hand. Machine-readable twin: `findings.csv` (one row per "
             f"finding). Paper: GRID, \"Generative Recommendation with Semantic IDs: A Practitioner's Handbook\" "
             f"(numbers in `sidrec/experiments/paper_tables.json`, means of 5 seeds). Metric: {name}"
             + (" (the primary metric)" if metric == PRIMARY_METRIC else f"; the primary metric is "
                                                                         f"{NAMES[PRIMARY_METRIC]}") + ".", ""]
    counts = {v: sum(r["verdict"] == v for r in results) for v in (CONFIRMED, REFUTED, INCONCLUSIVE, NOT_RUN)}
    lines += ["**" + ", ".join(f"{n} {v}" for v, n in counts.items()) + f"** of {len(results)} findings.", ""]
    missing = sorted({r["study"] for r in results if r["verdict"] == NOT_RUN})
    if missing:
        lines += [f"Not run yet: {', '.join(f'`{s}`' for s in missing)} (no finished seed of the rows compared "
                  f"under `{root}`). Run `sidrec experiment <study> dataset={dataset} budget=cpu seeds=3`, then "
                  "`sidrec findings` again to fill these rows in.", ""]
    lines += _rule_lines(metric)
    lines += ["## Findings", "",
              f"Paper and ours: {name} of the claim's row vs the compared row (mean ± sample std over the "
              "seeds both finished). Δ: the paired difference row − compared row with its 95% interval. "
              "In `findings.csv`, `paper_value`, `our_mean` and `our_std` are the claim's row's; `paired_diff`, "
              "`ci95_low` and `ci95_high` are row − compared row.", "",
              "| Table | claim | rows: claim's vs compared | paper | paper Δ | ours | Δ [95% CI] | seeds | budget | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        f = r["finding"]
        paper_delta = (r["paper"] - r["paper_versus"]) if r["paper"] is not None and r["paper_versus"] is not None \
            else None
        ours = "—" if r["our"] is None else \
            f"{r['our'][0]:.4f} ± {r['our'][1]:.4f} vs {r['our_versus'][0]:.4f} ± {r['our_versus'][1]:.4f}"
        p = r["paired"]
        delta = "—" if p is None else f"{p['diff']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}]"
        if r["margin"] is not None:
            delta += f" (margin ±{r['margin']:.4f})"
        lines.append("| " + " | ".join([
            str(r["paper_table"]), f.claim, f"{_label(f.study, f.row)} vs {_label(f.study, f.versus)}",
            f"{_number(r['paper'])} vs {_number(r['paper_versus'])}", _number(paper_delta, signed=True), ours, delta,
            " ".join(map(str, r["seeds"])) or "—", f"`{r['budget']}`" if r["budget"] else "—",
            f"**{r['verdict']}**"]) + " |")
    lines += ["", "The paper's words, per claim:", ""]
    quoted = []
    for r in results:
        key = (r["paper_table"], r["finding"].quote)
        if key not in quoted:
            quoted.append(key)
            lines.append(f"- Table {key[0]} (`{r['study']}`): \"{key[1]}\".")
    lines += ["", "## Baselines for scale", "",
              "The baselines each study ran on its own data, split and metrics: popularity and the text lookup "
              "(no training, deterministic) and SASRec (the mean over the study's seeds):", ""]
    if not baselines:
        lines.append("None yet: no study has been run under this root.")
    else:
        lines += ["| study | budget | " + " | ".join(f"{b} {name}" for b in ("popularity", "lookup", "SASRec")) + " |",
                  "|---|---|---|---|---|"]
        budgets = {r["study"]: r["budget"] for r in results}
        for study, rows in baselines.items():
            values = {b["name"]: b.get(metric) for b in rows}
            lines.append("| " + " | ".join([f"`{study}`", f"`{budgets.get(study, '')}`",
                                            *(_number(values.get(b)) for b in ("popularity", "lookup", "sasrec"))]) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, results: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for r in results:
                p = r["paired"]
                writer.writerow({
                    "study": r["study"], "paper_table": r["paper_table"], "claim": r["claim"],
                    "paper_value": "" if r["paper"] is None else r["paper"],
                    "our_mean": r["our"][0] if r["our"] else "", "our_std": r["our"][1] if r["our"] else "",
                    "seeds": " ".join(map(str, r["seeds"])), "budget": r["budget"],
                    "paired_diff": p["diff"] if p else "", "ci95_low": p["low"] if p else "",
                    "ci95_high": p["high"] if p else "", "verdict": r["verdict"]})


def write_findings(root: str | Path, out: str | Path, dataset: str = "beauty",
                   metric: str = PRIMARY_METRIC) -> dict[str, Path]:
    """Judge every finding against the studies under ``root``; write findings.md and findings.csv
    into ``out``. Returns the paths."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise ConfigError(f"root={root}: no such directory (run a study first: sidrec experiment <study> ...)")
    results = judge_all(root, dataset, metric)
    baselines = {}
    for study in dict.fromkeys(r["study"] for r in results):
        study_dir = root / f"{study}-{dataset}"
        if (study_dir / EXPERIMENT).exists() and (rows := collect_baselines(study_dir)):
            baselines[study] = rows
    paths = {kind: out / name for kind, name in FINDINGS_PAGE.items()}
    write_text(paths["markdown"], markdown(results, root, dataset, metric, baselines))
    write_csv(paths["csv"], results)
    return paths
