"""``sidrec <command> [key=value ...]``: the command line over the pipeline.

Commands:
  run        prepare -> embed -> tokenize -> train -> test (the main job); ``seeds=0,1,2`` repeats it per seed
  train      same as run
  prepare    load the dataset into the run directory and print its statistics
  tokenize   prepare -> embed -> tokenize, print the SID diagnostics
  evaluate   re-evaluate a finished run: ``sidrec evaluate run_dir=runs/... [stage=valid] [predictions=p.jsonl] [decode.num_beams=20 ...]``
  predict    batch predictions: ``sidrec predict run_dir=runs/... out=predictions.jsonl [split=test|valid | users=histories.jsonl] [k=10]``
  serve      HTTP service over a finished run: ``sidrec serve run_dir=runs/... [port=8000 max_batch=64 ...]``
  add-items  cold start: ``sidrec add-items run_dir=runs/... items=new_items.jsonl`` (no retraining)
  sasrec     SASRec baseline, same split and metrics: ``sidrec sasrec [seeds=3] [sasrec.dropout=0.5 ...]``
  popularity most-popular baseline, same split and metrics: ``sidrec popularity [data.* ...] [eval.ks=5,10,20]``
  lookup     text nearest-neighbour baseline (no training): ``sidrec lookup [lookup.last_n=3] [lookup.exclude_history=false ...]``
  experiment a paper study: ``sidrec experiment <study> dataset=beauty seeds=3 budget=tiny|cpu|paper`` (``list``)
  report     rebuild a study's report: ``sidrec report runs/experiments/<study>-<dataset>``
  findings   the paper's claims against the studies run: ``sidrec findings [root=runs/experiments] [out=docs]``

``config=file.yaml`` (or .json) is the base config; ``key=value`` arguments apply on top.
``sidrec <command> --help`` lists the command's keys; ``sidrec --version`` prints the version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from sidrec.config import (PRESETS, build_config, merge_overrides, parse_overrides, parse_seeds,
                           refuse_repeated_keys, user_path)
from sidrec.errors import ConfigError, SidrecError

log = logging.getLogger("sidrec")


@contextlib.contextmanager
def _run_log(run_dir: Path):
    """Everything logged under the ``sidrec`` logger also goes to ``run_dir/run.log`` meanwhile."""
    from sidrec.layout import RUN_LOG

    handler = logging.FileHandler(run_dir / RUN_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        handler.close()


def _report(text: str) -> None:
    """A result line for the console and the run's log."""
    print(text)
    log.info(text)


def _run_logged(cfg) -> dict:
    from sidrec.pipeline import format_metrics, new_run_dir, resolve_run_dir, run

    with new_run_dir(resolve_run_dir(cfg, create=False)) as run_dir, _run_log(run_dir):
        log.info("sidrec %s: run in %s with config\n%s", _version(), cfg.run_dir, cfg.to_json())
        try:
            result = run(cfg)
        except Exception as exc:
            log.error("failed: %s", exc)
            raise
        if result:
            _report(format_metrics(result, title=f"test metrics (seed {cfg.seed}, run {result['run_dir']})"))
    return result


def _output_file(key: str, value: str) -> str:
    """The file ``key=value`` names for this command to write, checked before the work: a folder,
    a path under a file or an unwritable folder fails now, not when the results are ready."""
    if not value:
        raise ConfigError(f"{key}='': expected a file name")
    path = Path(user_path(value))
    if path.is_dir():
        raise ConfigError(f"{key}={value!r}: is a directory; give a file name")
    folder = next(p for p in path.absolute().parents if p.exists())  # the nearest that exists
    if not folder.is_dir():
        raise ConfigError(f"{key}={value!r}: {folder} is a file, not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={value!r}: {folder} is not writable")
    return str(path)


def _int_arg(key: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ConfigError(f"{key}={value!r}: expected an integer >= {minimum}")
    return number


def _split_seeds(args: list[str]) -> tuple[list[int] | None, int, list[str]]:
    seeds, parallel, rest = None, 1, []
    for key, value in parse_overrides(args):
        if key == "seeds":
            seeds = parse_seeds(value)
        elif key == "parallel":  # run this many seeds at once (e.g. several small runs on one big GPU)
            parallel = _int_arg(key, value, 1)
        else:
            rest.append(f"{key}={value}")
    return seeds, parallel, rest


def _run_seeds_in_subprocesses(args: list[str], seeds: list[int], base: Path, parallel: int) -> list[dict]:
    from sidrec.layout import load_metrics
    from sidrec.subprocesses import run_pool

    results = []

    def done(seed: int, status: int) -> None:
        if status != 0:
            print(f"warning: seed {seed} failed (exit {status}); see {base / f'seed-{seed}.log'}", file=sys.stderr)
        else:
            results.append({"run_dir": str(base / f"seed-{seed}"), **load_metrics(base / f"seed-{seed}")})

    run_pool(seeds, parallel, lambda seed: ["run", *merge_overrides([*args, f"seed={seed}", f"run_dir={base / f'seed-{seed}'}"])],
             lambda seed: base / f"seed-{seed}.log", done)
    return results


def cmd_run(args: list[str]) -> None:
    from sidrec.evaluate.metrics import mean_std
    from sidrec.io import write_json
    from sidrec.pipeline import check_config, check_reusable
    from sidrec.layout import SUMMARY

    seeds, parallel, args = _split_seeds(args)
    cfg = build_config(args)
    check_config(cfg)  # before any work or output: a refusal is the first line
    if seeds is None and cfg.run_dir:
        check_reusable(cfg, Path(cfg.run_dir))
    if cfg.preset and cfg.preset != "paper":
        choices = "\n".join(f"  {key}={value}" for key, value in PRESETS[cfg.preset].items())
        print(f"NOTE: preset={cfg.preset} differs from the paper's configuration in:\n{choices}\n"
              "`sidrec train preset=paper` runs the paper's full configuration (meant for a GPU).")
    if seeds is None:
        _run_logged(cfg)
        return
    base = Path(cfg.run_dir or f"runs/{cfg.data.name}-seeds")
    if parallel > 1:
        per_seed = _run_seeds_in_subprocesses(args, seeds, base, parallel)
    else:
        per_seed = [_run_logged(build_config(args + [f"seed={seed}", f"run_dir={base / f'seed-{seed}'}"]))
                    for seed in seeds]
    per_seed = [r for r in per_seed if r]
    if per_seed:
        summary = mean_std([{k: v for k, v in r.items() if "@" in k} for r in per_seed])
        write_json(base / SUMMARY, {"seeds": seeds, "mean_std": summary, "runs": per_seed})
        lines = [f"test metrics over {len(per_seed)} seeds (mean ± std), {base}"]
        lines += [f"{k:<10}  {m:.4f} ± {s:.4f}" for k, (m, s) in summary.items()]
        with _run_log(base):
            _report("\n".join(lines))


def cmd_prepare(args: list[str]) -> None:
    from sidrec.pipeline import check_config, check_reusable, new_run_dir, prepare, resolve_run_dir, save_config

    cfg = build_config(args)
    check_config(cfg)
    with new_run_dir(resolve_run_dir(cfg, create=False)) as run_dir:
        check_reusable(cfg, run_dir)
        save_config(cfg, run_dir)
        dataset = prepare(cfg, run_dir)
    print(json.dumps(dataset.stats(), indent=2))
    print(f"run directory: {run_dir}")


def cmd_tokenize(args: list[str]) -> None:
    from sidrec.pipeline import new_run_dir, resolve_run_dir, run

    cfg = build_config(args)
    with new_run_dir(resolve_run_dir(cfg, create=False)) as run_dir, _run_log(run_dir):
        result = run(cfg, stages="tokenize")
        _report(f"run directory: {result['run_dir']}")


def _open_run(pairs: dict, command: str):
    """The ``run_dir=`` of ``pairs`` opened with the remaining ``key=value`` pairs as config overrides."""
    from sidrec.run import RunDir

    if "run_dir" not in pairs:
        raise ConfigError(f"sidrec {command} needs run_dir=<a finished run directory>")
    run_dir = user_path(pairs.pop("run_dir"))
    return RunDir(run_dir, [f"{k}={v}" for k, v in pairs.items()])


def cmd_evaluate(args: list[str]) -> None:
    from sidrec.pipeline import evaluate_run, format_metrics
    from sidrec.run import check_split

    pairs = dict(parse_overrides(args))
    stage = check_split(pairs.pop("stage", "test"), key="stage")
    predictions = pairs.pop("predictions", None)
    predictions = _output_file("predictions", predictions) if predictions is not None else None
    run = _open_run(pairs, "evaluate")
    metrics = evaluate_run(run, stage, predictions)
    print(format_metrics(metrics, title=f"{stage} metrics ({run.path})"))
    if predictions:
        print(f"predictions: {predictions}")


def cmd_predict(args: list[str]) -> None:
    from sidrec.pipeline import evaluate_run, format_metrics, predict_run
    from sidrec.run import check_split

    pairs = dict(parse_overrides(args))
    if "out" not in pairs:
        raise ConfigError("sidrec predict needs out=<predictions .jsonl>")
    out = _output_file("out", pairs.pop("out"))
    users, split, k = pairs.pop("users", None), check_split(pairs.pop("split", "test")), pairs.pop("k", None)
    run = _open_run(pairs, "predict")
    if users is not None:
        k = _int_arg("k", k or "10", 1)
        count = predict_run(run, out, user_path(users), k)
        print(f"{out}: top-{k} items for {count} users of {users}")
        return
    if k is not None and _int_arg("k", k, 1) not in run.config.ks():  # lines hold max(eval.ks) items
        run.config.eval.ks += f",{k}"
    metrics = evaluate_run(run, split, out)
    print(format_metrics(metrics, title=f"{split} metrics ({run.path})"))
    print(f"{out}: top-{max(run.config.ks())} items for {len(run.samples(split))} {split} users")


def cmd_sasrec(args: list[str]) -> None:
    from sidrec.baselines.sasrec import cli

    cli(args)


def cmd_popularity(args: list[str]) -> None:
    from sidrec.baselines.popularity import cli

    cli(args)


def cmd_lookup(args: list[str]) -> None:
    from sidrec.baselines.lookup import cli

    cli(args)


def cmd_experiment(args: list[str]) -> None:
    from sidrec.experiments import cli_experiment

    cli_experiment(args)


def cmd_report(args: list[str]) -> None:
    from sidrec.experiments import cli_report

    cli_report(args)


def cmd_findings(args: list[str]) -> None:
    from sidrec.experiments import cli_findings

    cli_findings(args)


def cmd_serve(args: list[str]) -> None:
    from sidrec.serve import main as serve_main

    serve_main(args)


def cmd_add_items(args: list[str]) -> None:
    from sidrec.cold_start import add_items, read_items_file

    pairs = dict(parse_overrides(args))
    if "items" not in pairs:
        raise ConfigError("sidrec add-items needs run_dir=<a finished run directory> items=<new items .jsonl>")
    new_items = read_items_file(user_path(pairs.pop("items")))
    run = _open_run(pairs, "add-items")
    result = add_items(run.path, new_items, run.config)
    for index in result.added:
        item = result.dataset.items[index]
        print(f"{item['item_id']}\tindex {index}\tSID {result.sid_table.sids[index].tolist()}")
    print(f"added {len(result.added)} items to {run.path} (now {result.dataset.num_items} items, "
          f"catalog generation {result.generation}); no retraining needed")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sidrec")
    except PackageNotFoundError:
        return "unknown (not installed)"


def command_help(command: str) -> str:
    """The command's line of the module docstring, then the keys it reads with their defaults."""
    from sidrec.config import RunConfig, describe_keys

    lines = [line for line in __doc__.splitlines() if line.startswith(f"  {command} ")]
    lines.append("")
    if command in ("run", "train", "prepare", "tokenize", "evaluate", "predict", "add-items", "serve"):
        if command in ("run", "train"):
            lines.append("seeds=N|a,b,c  run several seeds (summary.json with mean ± std); parallel=N  that many at once")
        if command == "serve":
            from sidrec.serve import main as serve_main, serve_keys

            lines += [serve_main.__doc__.strip(), "", "service keys:", *serve_keys(), ""]
        if command in ("evaluate", "predict", "add-items", "serve"):
            lines.append("config keys (on top of the run's config.json):")
        else:
            lines.append(f"config keys (config=file.yaml|json as the base, then key=value; preset={'|'.join(PRESETS)}):")
        lines += describe_keys(RunConfig)
    elif command in ("sasrec", "popularity", "lookup"):
        from sidrec.config import LookupRunConfig, PopularityRunConfig, SASRecRunConfig

        if command == "sasrec":
            lines.append("seeds=N|a,b,c  several seeds")
        lines.append("config keys (config=file.yaml|json as the base, then key=value):")
        lines += describe_keys({"sasrec": SASRecRunConfig, "popularity": PopularityRunConfig,
                                "lookup": LookupRunConfig}[command])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"sidrec {_version()}")
        return 0
    command, args = argv[0], argv[1:]
    handlers = {"run": cmd_run, "train": cmd_run, "prepare": cmd_prepare, "tokenize": cmd_tokenize,
                "evaluate": cmd_evaluate, "predict": cmd_predict, "serve": cmd_serve, "add-items": cmd_add_items, "sasrec": cmd_sasrec,
                "popularity": cmd_popularity, "lookup": cmd_lookup,
                "experiment": cmd_experiment, "report": cmd_report, "findings": cmd_findings}
    if command not in handlers:
        print(f"error: unknown command {command!r} (have: {', '.join(handlers)})", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in args) and command != "experiment":
        print(command_help(command))
        return 0
    try:
        refuse_repeated_keys(args)
        handlers[command](args)
    except SidrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
