"""The paper's studies (GRID Tables 1-8) as one command each, resumable, with a report.

    sidrec experiment tokenizer dataset=beauty seeds=5 budget=paper
    sidrec experiment decoding dataset=beauty seeds=2 budget=cpu
    sidrec experiment sid_shape dataset=tiny budget=tiny data.format=p5 data.path=/path/to/tiny
    sidrec experiment cold_start seeds=3 budget=cpu [share=0.1 reserve=0.2 warm_users=2000]
    sidrec report runs/experiments/tokenizer-beauty
    sidrec findings [root=runs/experiments] [out=docs]     the paper's claims against the studies run

Options: ``dataset=`` (beauty is bundled; others need data.format/data.path), ``seeds=N`` or
``seeds=0,3,7``, ``budget=tiny|cpu|paper`` (the config preset; cpu = ``cpu-encdec``), ``root=`` (default
runs/experiments), ``encoders=a,b`` (encoder study), ``paper_dataset=`` (whose paper numbers to
show), ``timing_users=N`` (decoding study), ``parallel=N`` and ``gpus=0,1`` (runs at once, one
process and GPU each); the cold_start study's ``share=`` (items held out), ``reserve=`` (slots kept
for added items) and ``warm_users=``; anything else is a config override for every run.
"""

from __future__ import annotations

from pathlib import Path

from sidrec.experiments.studies import OWN_STUDIES, STUDIES, get_study, paper_tables, paper_value

__all__ = ["STUDIES", "cli_experiment", "cli_findings", "cli_report", "get_study", "paper_tables", "paper_value"]


def cli_experiment(args: list[str]) -> dict:
    from sidrec.experiments.runner import parse_experiment_args, run_experiment

    if not args or args[0] in ("list", "-h", "--help"):
        print(__doc__)
        for name in STUDIES + OWN_STUDIES:
            study = get_study(name)
            source = "ours" if study.table is None else f"Table {study.table}"
            print(f"  {name:<13} {source}: {study.title}; rows: {', '.join(r.name for r in study.rows)}")
        return {}
    experiment = parse_experiment_args(args)
    result = run_experiment(experiment)
    reports = ", ".join(result[kind] for kind in ("markdown", "csv", "plot") if kind in result)
    print(f"{experiment.study.name}: {result['trained']} trained, {result['skipped']} skipped (finished), "
          f"{result['failed']} failed; report: {reports}")
    return result


def cli_report(args: list[str]) -> None:
    from sidrec.errors import ConfigError
    from sidrec.experiments.cold_start_study import write_cold_start_report
    from sidrec.experiments.report import read_experiment, write_report

    dirs = [a.split("=", 1)[1] if a.startswith("dir=") else a for a in args]
    if not dirs:
        raise ConfigError("sidrec report needs a study directory, e.g. sidrec report runs/experiments/tokenizer-beauty")
    for d in dirs:
        kind = read_experiment(Path(d)).get("kind", "rows")
        paths = write_cold_start_report(Path(d)) if kind == "cold_start" else write_report(Path(d))
        print(f"report: {', '.join(map(str, paths.values()))}")


def cli_findings(args: list[str]) -> None:
    """``sidrec findings [root=runs/experiments] [out=docs] [dataset=beauty] [metric=recall@10]``"""
    from sidrec.config import parse_overrides, user_path
    from sidrec.errors import ConfigError
    from sidrec.experiments.findings import PRIMARY_METRIC, write_findings

    options = dict(parse_overrides(args))
    unknown = sorted(set(options) - {"root", "out", "dataset", "metric"})
    if unknown:
        raise ConfigError(f"sidrec findings: unknown option {unknown[0]}= (have: root=, out=, dataset=, metric=)")
    paths = write_findings(user_path(options.get("root", "runs/experiments")), user_path(options.get("out", "docs")),
                           options.get("dataset", "beauty"), options.get("metric", PRIMARY_METRIC))
    print(f"findings: {paths['markdown']}, {paths['csv']}")
