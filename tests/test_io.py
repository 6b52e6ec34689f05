import os
import stat

import numpy as np
import pytest

from sidrec.io import atomic_path, make_temp_dir, write_json, write_npy


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_artifacts_follow_the_umask(tmp_path, umask_022):
    write_json(tmp_path / "a.json", {"x": 1})
    write_npy(tmp_path / "b.npy", np.zeros(3))
    assert mode(tmp_path / "a.json") == mode(tmp_path / "b.npy") == 0o644
    assert mode(make_temp_dir(tmp_path, ".tmp-")) == 0o755
    os.umask(0o077)
    write_json(tmp_path / "private.json", {})
    assert mode(tmp_path / "private.json") == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    write_json(tmp_path / "a.json", {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert (tmp_path / "a.json").read_text().strip() == '{\n  "v": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_the_data_is_flushed_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b)))
    write_json(tmp_path / "a.json", {})
    assert events[:2] == ["fsync", "replace"]
