"""The one subprocess pool: ``sidrec`` commands run ``parallel`` at a time, each in its own Python
process with its output in a log file (several seeds of ``sidrec run``; a study's runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, TypeVar

Job = TypeVar("Job")


def sidrec_command(args: list[str]) -> list[str]:
    """The command line that runs ``sidrec <args>`` with this interpreter."""
    return [sys.executable, "-m", "sidrec.cli", *args]


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
            environment = env(job, slot) if env is not None else None
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
