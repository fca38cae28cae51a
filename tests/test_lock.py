"""The machine-wide measurement lock (hwlab/lock.py) and owned scratch folders, with real
processes: a holder is named while a job waits, kill -9 releases at once, shared vs
exclusive, a killed job's scratch folder is swept."""

import fcntl
import io
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import REPO

from hwlab import lock

HOLD = """
import sys, time
sys.path.insert(0, {repo!r})
from hwlab import lock
mode = lock.fcntl.LOCK_EX if {mode!r} == "ex" else lock.fcntl.LOCK_SH
lk = lock.MeasureLock(lock.Path({folder!r}), [("cpu", mode)],
                      who={{"run": "run-a", "rule": "gemm_point", "wildcards": "M=16"}})
lk.acquire()
print("held", flush=True)
time.sleep({hold})
"""


def _holder(folder, hold=30.0, mode="ex"):
    code = HOLD.format(repo=str(REPO), folder=str(folder), hold=hold, mode=mode)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def _lock(folder, mode=fcntl.LOCK_EX):
    return lock.MeasureLock(folder, [("cpu", mode)], out=io.StringIO())


def test_a_waiting_job_names_the_holder(tmp_path):
    p = _holder(tmp_path, hold=1.5)
    try:
        lk = _lock(tmp_path).acquire()
        said = lk.out.getvalue()
        assert lk.waited_s > 0.8
        assert f"held by pid {p.pid}" in said
        assert "run run-a, rule gemm_point, M=16" in said and " since " in said
        assert said.count("waiting for the measurement lock") == 1
        lk.release()
    finally:
        p.kill()
        p.wait()


def test_kill_9_of_the_holder_releases_the_lock(tmp_path):
    p = _holder(tmp_path)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    lk = _lock(tmp_path).acquire()
    assert lk.waited_s < 0.5  # the kernel released it with the process
    assert lk.holders("cpu") == []  # the dead holder's note is ignored (and removed)
    lk.release()


def test_shared_holders_coexist_and_exclude_an_exclusive_one(tmp_path):
    p = _holder(tmp_path, hold=1.0, mode="sh")
    try:
        t0 = time.monotonic()
        shared = _lock(tmp_path, fcntl.LOCK_SH).acquire()
        assert time.monotonic() - t0 < 0.5
        shared.release()
        ex = _lock(tmp_path).acquire()  # waits for the shared holder to finish
        assert ex.waited_s > 0.5 and f"pid {p.pid}" in ex.out.getvalue()
        ex.release()
    finally:
        p.kill()
        p.wait()


def test_plan_per_device():
    assert lock.plan("cpu") == [("cpu", fcntl.LOCK_EX)]
    assert lock.plan("cuda", 2, visible="2,3") == [
        ("cpu", fcntl.LOCK_SH),
        ("gpu2", fcntl.LOCK_EX),
        ("gpu3", fcntl.LOCK_EX),
    ]
    assert lock.plan("cuda", 1, visible="GPU-ab12:cd") == [
        ("cpu", fcntl.LOCK_SH),
        ("gpuGPU-ab12-cd", fcntl.LOCK_EX),
    ]


def test_lock_folder_default_and_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert lock.lock_dir("") == tmp_path / "hwlab"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert lock.lock_dir("").name == f"hwlab-{os.getuid()}"
    assert lock.lock_dir(str(tmp_path / "x")) == tmp_path / "x"


OWN = """
import sys, time
sys.path.insert(0, {repo!r})
from hwlab.lock import owned_tempdir
with owned_tempdir({parent!r}, ".allreduce-") as d:
    print(d, flush=True)
    time.sleep(30)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_jobs_scratch_folder_is_swept(tmp_path, sig):
    code = OWN.format(repo=str(REPO), parent=str(tmp_path))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    folder = tmp_path / os.path.basename(p.stdout.readline().strip())
    assert folder.is_dir()
    assert lock.sweep_stale(tmp_path, ".allreduce-") == []  # its owner lives
    os.kill(p.pid, sig)
    p.wait()
    assert lock.sweep_stale(tmp_path, ".allreduce-") == [folder]
    assert not folder.exists()


def test_old_temporary_files_of_killed_writers_are_swept(tmp_path):
    old = tmp_path / "gemm" / ".m16.json.abc123.tmp"
    old.parent.mkdir()
    old.write_text("{")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / ".roofline.csv.def456.tmp"  # a writer may still be on it
    fresh.write_text("a,b")
    assert lock.sweep_stale_files(tmp_path, ".*.tmp", min_age_s=3600) == [old]
    assert fresh.exists() and not old.exists()
