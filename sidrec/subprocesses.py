"""The one subprocess pool: ``sidrec`` commands run ``parallel`` at a time, each in its own Python
process with its output in a log file (several seeds of ``sidrec run``; a study's runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, TypeVar

Job = TypeVar("Job")


def sidrec_command(args: list[str]) -> list[str]:
    """The command line that runs ``sidrec <args>`` with this interpreter."""
    return [sys.executable, "-m", "sidrec.cli", *args]


def shared_cores(environment: dict | None, parallel: int) -> dict:
    """The environment of one of ``parallel`` processes: each gets its share of the CPU cores
    (``OMP_NUM_THREADS``, unless already set) instead of every process starting a thread per core. On
    2 cores two 1-thread training runs made 1.5x the steps per second of one 2-thread run
    (docs/experiments.md)."""
    environment = dict(os.environ if environment is None else environment)
    if "OMP_NUM_THREADS" not in environment:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        environment["OMP_NUM_THREADS"] = str(max(1, cores // parallel))
    return environment


def run_pool(jobs: list[Job], parallel: int, args: Callable[[Job], list[str]], log: Callable[[Job], Path],
             done: Callable[[Job, int], None], env: Callable[[Job, int], dict | None] | None = None) -> None:
    """Runs ``sidrec <args(job)>`` for every job, at most ``parallel`` at once, output to
    ``log(job)``. ``env(job, slot)`` is called just before a job starts (the n-th started has slot
    n): it may prepare the job and returns its environment (None: this process's). ``done(job,
    exit status)`` is called as jobs end, in the order they started."""
    pending, running, slot = list(jobs), [], 0
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            environment = shared_cores(env(job, slot) if env is not None else None, parallel)
            slot += 1
            path = log(job)
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "w")
            proc = subprocess.Popen(sidrec_command(args(job)), stdout=fh, stderr=subprocess.STDOUT, env=environment)
            running.append((job, proc, fh))
        job, proc, fh = running.pop(0)
        proc.wait()
        fh.close()
        done(job, proc.returncode)
