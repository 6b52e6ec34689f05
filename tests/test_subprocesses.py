from sidrec.subprocesses import run_pool


def test_jobs_run_in_parallel_each_with_its_log_and_status(tmp_path):
    started, ended = [], []

    def env(job, slot):
        started.append((job, slot))
        return None

    run_pool(["--version", "nonsense-command"], 2, lambda job: [job], lambda job: tmp_path / f"{job}.log",
             lambda job, status: ended.append((job, status)), env)
    assert started == [("--version", 0), ("nonsense-command", 1)]
    assert ended[0] == ("--version", 0) and ended[1][0] == "nonsense-command" and ended[1][1] != 0
    assert "sidrec" in (tmp_path / "--version.log").read_text()
    assert "nonsense-command" in (tmp_path / "nonsense-command.log").read_text()


def test_parallel_processes_share_the_cores_unless_threads_are_set(monkeypatch):
    import os

    from sidrec.subprocesses import shared_cores

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert shared_cores(None, 2)["OMP_NUM_THREADS"] == "2"
    assert shared_cores(None, 8)["OMP_NUM_THREADS"] == "1"
    assert shared_cores({"PATH": "/bin"}, 1) == {"PATH": "/bin", "OMP_NUM_THREADS": "4"}
    assert shared_cores({"OMP_NUM_THREADS": "3"}, 2)["OMP_NUM_THREADS"] == "3"  # the user's choice stands
