"""The machine-wide measurement lock: measuring jobs never overlap on a host, whichever
Snakemake (or user session) started them.

Snakemake's ``measure=1`` resource serialises measuring jobs inside one Snakemake process
only; two runs in one folder, or two folders, would measure at once. So every measuring
job (every rule that declares ``resources: measure=1``) takes an ``flock`` before it
measures, taken in ``scripts/_setup.py`` from the job's own resources, so no script needs
code for it:

- one lock file per host and device in a lock folder (config ``measure_lock``; default
  ``$XDG_RUNTIME_DIR/hwlab``, else ``<tmp>/hwlab-<uid>``): ``measure-<host>-cpu.lock``
  for the host's CPUs, ``measure-<host>-gpu<id>.lock`` for each GPU;
- a CPU measurement takes the CPU lock exclusively; a GPU measurement takes the lock of
  each GPU it uses exclusively and the CPU lock shared (GPU runs on different GPUs may run
  side by side; no CPU measurement runs beside any of them: it would steal the cores that
  launch the kernels);
- every other job of the workflow (aggregations, figures, detection) takes the CPU lock
  shared: it waits while a CPU measurement of any run on the host is on, and none starts
  while it runs, so a measurement runs alone on the host;
- ``flock`` locks belong to the open file: the kernel releases them when the holder exits,
  however it dies (kill -9 included), so a lock is never left stale; processes the job
  starts (torchrun and its ranks) die with it (see :mod:`hwlab.allreduce`);
- the holder writes who it is (pid, host, run, rule, wildcards, since when) beside the
  lock; a job that has to wait prints that on the console and in its log, and again
  every minute while it waits;
- the default folder is per user (0700). A folder set in ``measure_lock`` is shared
  between users: hwlab creates it, and its ``holders/``, 1777 (everyone creates files,
  the sticky bit keeps each user's files theirs, as in /tmp), its lock files 0666 and its
  holder files 0644, whatever the umask, so every user can take every lock and name who
  holds it.

Light imports only: every script job imports this before anything else.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_HELD = "HWLAB_MEASURE_LOCK_HELD"
REPORT_EVERY_S = 60.0
POLL_S = 0.2

# what the job printed while it waited; hwlab.logs.to_log copies it into the job's log
NOTES: list[str] = []


def default_dir() -> Path:
    """Per-user runtime folder: $XDG_RUNTIME_DIR/hwlab, else <tmp>/hwlab-<uid>."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK):
        return Path(xdg) / "hwlab"
    return Path(tempfile.gettempdir()) / f"hwlab-{os.getuid()}"


def lock_dir(configured: str | os.PathLike | None) -> Path:
    """The configured lock folder (``~`` expanded), else the per-user default."""
    return Path(configured).expanduser() if configured else default_dir()


SHARED_DIR_MODE, PRIVATE_DIR_MODE = 0o1777, 0o700
SHARED_LOCK_MODE, HOLDER_MODE = 0o666, 0o644


def _make_dir(path: Path, shared: bool) -> None:
    """Create ``path`` (parents too) unless it exists: 0700 for a per-user folder, 1777
    for a shared one, set with chmod after mkdir (mkdir's mode passes through the umask).
    A folder that exists keeps its mode: whoever made it (an admin) chose it."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE)
    except FileExistsError:
        return  # another process made it at the same moment (and sets its mode)
    if shared:
        os.chmod(path, SHARED_DIR_MODE)


def _host() -> str:
    return socket.gethostname().split(".")[0] or "host"


def gpu_ids(count: int, visible: str | None = None) -> list[str]:
    """Ids of the first ``count`` GPUs this process sees (CUDA_VISIBLE_DEVICES order)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if visible:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def plan(kind: str, gpus: int = 1, visible: str | None = None) -> list[tuple[str, int]]:
    """(lock name, flock mode) a measurement on ``kind`` takes, in a fixed order."""
    if kind != "cuda" or gpus < 1:
        return [("cpu", fcntl.LOCK_EX)]
    names = sorted(
        {f"gpu{''.join(c if c.isalnum() else '-' for c in g)}" for g in gpu_ids(gpus, visible)}
    )
    return [("cpu", fcntl.LOCK_SH), *[(n, fcntl.LOCK_EX) for n in names]]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ago(t: float) -> str:
    s = max(0, int(time.time() - t))
    return f"{s} s" if s < 120 else f"{s // 60} min"


def describe(holder: dict[str, Any]) -> str:
    """One holder in words: pid, run, rule and wildcards, since when."""
    parts = [f"pid {holder.get('pid')}"]
    if holder.get("host"):
        parts[0] += f" on {holder['host']}"
    what = ", ".join(
        x
        for x in (
            f"run {holder['run']}" if holder.get("run") else "",
            f"rule {holder['rule']}" if holder.get("rule") else "",
            holder.get("wildcards") or "",
        )
        if x
    )
    since = holder.get("since")
    when = (
        f"since {time.strftime('%H:%M:%S', time.localtime(since))} ({_ago(since)} ago)"
        if isinstance(since, int | float)
        else ""
    )
    return " ".join(p for p in (parts[0], f"({what})" if what else "", when) if p)


@dataclass
class MeasureLock:
    """The locks one measuring job holds; see the module docstring."""

    folder: Path
    locks: list[tuple[str, int]]
    who: dict[str, Any] = field(default_factory=dict)
    out: Any = None  # where waiting messages go (default: stderr)
    quiet: bool = False  # a light job: say only that it waits, not every minute
    shared: bool = False  # a folder shared between users (measure_lock set): see above
    _fds: list[int] = field(default_factory=list)
    _sidecars: list[Path] = field(default_factory=list)
    waited_s: float = 0.0
    acquired_at: float | None = None

    def path(self, name: str) -> Path:
        return self.folder / f"measure-{_host()}-{name}.lock"

    def _holders_dir(self) -> Path:
        return self.folder / "holders"

    def holders(self, name: str) -> list[dict[str, Any]]:
        """Who holds lock ``name`` now, from the holder files of living processes."""
        out = []
        for f in sorted(self._holders_dir().glob(f"{self.path(name).name}.*.json")):
            try:
                h = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(h, dict) and isinstance(h.get("pid"), int) and _alive(h["pid"]):
                if h["pid"] != os.getpid():
                    out.append(h)
            else:
                with contextlib.suppress(OSError):
                    f.unlink()  # its process is gone: the kernel released its lock
        return out

    def _say(self, msg: str) -> None:
        NOTES.append(msg)
        out = self.out or sys.stderr
        with contextlib.suppress(OSError, ValueError):
            print(msg, file=out, flush=True)

    def _open(self, path: Path) -> int:
        """An fd on lock file ``path``, created if missing (0666 in a shared folder)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, SHARED_LOCK_MODE)
        except PermissionError:
            # another user's lock file (0644 from an older hwlab, or protected_regular
            # refusing O_CREAT on it): flock needs only read access
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except PermissionError as e:
                raise RuntimeError(
                    f"measure_lock: cannot open the lock file {path} ({e.strerror}); a lock "
                    "folder shared between users must be open to all of them (chmod 1777 "
                    f"{self.folder}, then chmod 666 its lock files)"
                ) from None
        if self.shared:
            # the umask took bits off: every user must be able to open it read-write
            with contextlib.suppress(PermissionError):  # EPERM: not its owner
                os.fchmod(fd, SHARED_LOCK_MODE)
        return fd

    def acquire(self) -> MeasureLock:
        try:
            _make_dir(self.folder, self.shared)
        except OSError as e:
            raise RuntimeError(
                f"measure_lock: cannot create the lock folder {self.folder} ({e.strerror}); "
                "set measure_lock to a writable local folder"
            ) from None
        t0 = time.monotonic()
        for name, mode in self.locks:
            path = self.path(name)
            fd = self._open(path)
            self._fds.append(fd)
            last_report, last_key = None, None
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                now = time.monotonic()
                held = self.holders(name)
                text = "; ".join(describe(h) for h in held) or "a process that did not say"
                key = tuple(sorted(h["pid"] for h in held))
                due = last_report is None or (
                    not self.quiet and (key != last_key or now - last_report > REPORT_EVERY_S)
                )
                if due:
                    self._say(
                        f"hwlab: waiting for the measurement lock {path} "
                        f"({'shared' if mode == fcntl.LOCK_SH else 'exclusive'}), held by "
                        f"{text}; a measurement runs alone on a host"
                    )
                    last_report, last_key = now, key
                time.sleep(POLL_S)
            self._register(name)
        self.waited_s = time.monotonic() - t0
        self.acquired_at = time.time()
        if self.waited_s > POLL_S:
            self._say(f"hwlab: measurement lock acquired after {self.waited_s:.1f} s")
        held = ", ".join(
            f"{name} {'exclusive' if mode == fcntl.LOCK_EX else 'shared'}"
            for name, mode in self.locks
        )
        NOTES.append(f"hwlab: measurement lock ({held}) held since {self.acquired_at:.3f}")
        os.environ[ENV_HELD] = str(os.getpid())
        atexit.register(self.release)
        return self

    def _register(self, name: str) -> None:
        """Write who holds lock ``name`` (atomically: hwlab.io.write_json) in holders/;
        world-readable in a shared folder, so a waiting user can name another user's job."""
        from hwlab.io import write_json  # stdlib only, like this module

        d = self._holders_dir()
        info = {**self.who, "pid": os.getpid(), "host": _host(), "since": time.time()}
        try:
            _make_dir(d, self.shared)
            f = d / f"{self.path(name).name}.{os.getpid()}.json"
            write_json(f, info)
            self._sidecars.append(f)
            if self.shared:
                os.chmod(f, HOLDER_MODE)
        except OSError:
            pass  # the lock still holds; waiters just cannot name us

    def release(self) -> None:
        for f in self._sidecars:
            with contextlib.suppress(OSError):
                f.unlink()
        self._sidecars.clear()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        os.environ.pop(ENV_HELD, None)


def for_job(smk: Any) -> MeasureLock | None:
    """The lock a Snakemake script job takes before it does anything (see above):

    - a measuring job (``resources: measure``): exclusive, on its device's locks;
    - any other job of the workflow (aggregation, figures, detection): the CPU lock
      shared, so it waits while any run on this host measures on the CPU, and no CPU
      measurement starts while it runs (inside one Snakemake the measuring jobs also
      claim every core, so none is scheduled beside them in the first place).

    None outside a Snakemake job, or in a process started by a job that holds it.
    """
    if smk is None or os.environ.get(ENV_HELD):
        return None
    resources = getattr(smk, "resources", None)
    try:
        measure = int(getattr(resources, "measure", 0) or 0)
    except (TypeError, ValueError):
        measure = 0
    config = getattr(smk, "config", {}) or {}
    wildcards = getattr(smk, "wildcards", None)
    wc = ", ".join(f"{k}={v}" for k, v in dict(wildcards.items()).items()) if wildcards else ""
    who = {"run": config.get("run"), "rule": getattr(smk, "rule", None), "wildcards": wc}
    folder = lock_dir(config.get("measure_lock"))
    shared = bool(config.get("measure_lock"))  # set: a folder shared between users
    if measure < 1:
        who["measuring"] = False
        light = MeasureLock(folder, [("cpu", fcntl.LOCK_SH)], who=who, quiet=True, shared=shared)
        return light.acquire()
    kind = "cpu"
    device = getattr(getattr(smk, "input", None), "device", None)
    if device:
        try:
            kind = json.loads(Path(device).read_text()).get("kind", "cpu")
        except (OSError, ValueError, AttributeError):
            kind = "cpu"  # the job itself will say what is wrong with device.json
    try:
        gpus = int(getattr(resources, "gpu", 1) or 0)
    except (TypeError, ValueError):
        gpus = 1
    who["measuring"] = True
    locks = plan(kind, max(gpus, 1) if kind == "cuda" else 0)
    return MeasureLock(folder, locks, who=who, shared=shared).acquire()


# ---- temp folders owned by a living process --------------------------------------------
# A job's scratch folder carries an flock held for the job's life: a folder whose lock can
# be taken belongs to nobody (its job died, kill -9 included) and is swept.

OWNER = ".owner.lock"


def _owner_free(folder: Path) -> bool:
    f = folder / OWNER
    try:
        fd = os.open(f, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        # made by an older version, or its job died before taking the lock (or is about
        # to take it: a folder a minute old without one is nobody's)
        try:
            return time.time() - folder.stat().st_mtime > 60
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def sweep_stale(parent: str | os.PathLike, prefix: str) -> list[Path]:
    """Remove ``parent/prefix*`` folders whose owner is gone; returns what was removed."""
    import shutil

    removed = []
    parent = Path(parent)
    if not parent.is_dir():
        return removed
    for d in sorted(parent.glob(f"{prefix}*")):
        if d.is_dir() and not d.is_symlink() and _owner_free(d):
            shutil.rmtree(d, ignore_errors=True)
            if not d.exists():
                removed.append(d)
    return removed


def sweep_stale_files(parent: str | os.PathLike, pattern: str, min_age_s: float) -> list[Path]:
    """Remove files matching ``pattern`` under ``parent`` not modified for ``min_age_s``
    (temporary files of atomic writes whose writer was killed); returns what was removed."""
    removed = []
    parent = Path(parent)
    if not parent.is_dir():
        return removed
    now = time.time()
    for f in parent.rglob(pattern):
        try:
            if f.is_file() and not f.is_symlink() and now - f.stat().st_mtime > min_age_s:
                f.unlink()
                removed.append(f)
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def owned_tempdir(parent: str | os.PathLike, prefix: str):
    """A scratch folder under ``parent``, held by this process (see above), removed on
    exit; stale ones of dead owners are swept first."""
    import shutil

    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(parent, prefix)
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    fd = os.open(folder / OWNER, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)
