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


def test_gpu_ids_take_the_first_visible():
    assert lock.gpu_ids(1, visible="3,1") == ["3"]
    assert lock.gpu_ids(4, visible="3,1") == ["3", "1"]
    assert lock.gpu_ids(2, visible="") == ["0", "1"]


def test_the_held_note_names_each_lock_and_its_mode(tmp_path):
    lock.NOTES.clear()
    lk = lock.MeasureLock(tmp_path, lock.plan("cuda", 1, visible="2"), out=io.StringIO())
    lk.acquire().release()
    assert "measurement lock (cpu shared, gpu2 exclusive) held since" in lock.NOTES[-1]


def _mode(p):
    return os.stat(p).st_mode & 0o7777


def test_a_configured_folder_is_open_to_every_user(tmp_path):
    """measure_lock set: folder and holders/ 1777, lock files 0666, holder files 0644, under
    any umask; the default per-user folder stays 0700."""
    old = os.umask(0o077)
    try:
        shared = tmp_path / "shared" / "locks"
        lk = lock.MeasureLock(shared, lock.plan("cuda", 1, visible="0"), shared=True)
        lk.acquire()
        assert _mode(shared) == 0o1777 and _mode(shared / "holders") == 0o1777
        assert {_mode(lk.path(n)) for n in ("cpu", "gpu0")} == {0o666}
        holders = list((shared / "holders").glob("*.json"))
        assert len(holders) == 2 and {_mode(f) for f in holders} == {0o644}
        lk.release()
        own = lock.MeasureLock(tmp_path / "own", [("cpu", fcntl.LOCK_EX)]).acquire()
        assert _mode(tmp_path / "own") == 0o700 and _mode(tmp_path / "own" / "holders") == 0o700
        own.release()
    finally:
        os.umask(old)


class _Job:
    """The parts of a Snakemake job object for_job reads."""

    def __init__(self, measure_lock, measure=0):
        self.resources = type("R", (), {"measure": measure})()
        self.config = {"run": "r", "measure_lock": measure_lock}
        self.rule, self.wildcards, self.input = "x", None, None


def test_for_job_shares_a_configured_folder_only(tmp_path, monkeypatch):
    monkeypatch.delenv(lock.ENV_HELD, raising=False)
    lk = lock.for_job(_Job(str(tmp_path / "set"), measure=1))
    assert lk.shared and _mode(tmp_path / "set") == 0o1777
    lk.release()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    lk = lock.for_job(_Job(""))
    assert not lk.shared and _mode(tmp_path / "hwlab") == 0o700
    lk.release()


SECOND_USER = """
import io, sys
sys.path.insert(0, {repo!r})
from hwlab import lock
out = io.StringIO()
ex = lock.fcntl.LOCK_EX
lk = lock.MeasureLock(lock.Path({folder!r}), [("cpu", ex), ("gpu7", ex)],
                      who={{"run": "run-b"}}, out=out, shared=True)
lk.acquire()
print(round(lk.waited_s, 2), out.getvalue().replace(chr(10), " "), flush=True)
lk.release()
"""


def _second_user_python():
    """(uid, interpreter) for a real second user: root running a system Python as nobody."""
    import pwd
    import shutil

    if os.geteuid() != 0:
        pytest.skip("needs root to start a process as a second user")
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no user nobody")
    for exe in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if not exe:
            continue
        try:
            r = subprocess.run([exe, "-c", "0"], user=uid, group=uid, capture_output=True)
        except OSError:
            continue
        if r.returncode == 0:
            return uid, exe
    pytest.skip("no Python interpreter the user nobody may run")


def test_a_second_user_waits_for_the_first_and_names_it():
    """Root holds the CPU lock of a shared folder; nobody waits for it, reads root's holder
    file, then takes it and creates a lock file of its own (gpu7) in root's folder."""
    import tempfile

    uid, exe = _second_user_python()
    base = tempfile.mkdtemp(prefix="hwlab-share-test-")
    os.chmod(base, 0o755)  # mkdtemp makes 0700: the second user must reach the folder
    folder = os.path.join(base, "locks")
    try:
        old = os.umask(0o022)
        try:
            lk = lock.MeasureLock(lock.Path(folder), [("cpu", fcntl.LOCK_EX)], shared=True)
            lk.who = {"run": "run-a", "rule": "gemm_point"}
            lk.acquire()
        finally:
            os.umask(old)
        code = SECOND_USER.format(repo=str(REPO), folder=folder)
        p = subprocess.Popen(
            [exe, "-c", code], user=uid, group=uid, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)
        lk.release()
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        waited, said = out.split(" ", 1)
        assert float(waited) > 0.5, out
        assert f"held by pid {os.getpid()}" in said and "run run-a" in said, out
        gpu = os.path.join(folder, f"measure-{lock._host()}-gpu7.lock")
        assert os.stat(gpu).st_uid == uid and _mode(gpu) == 0o666
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
