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
