"""What the Snakefile checks about the host before any job runs (no torch import).

- :func:`cuda_problem`: why ``device: cuda`` cannot run here. The device job would find
  out only after Snakemake removed the run's device.json (so the next normal run would
  re-measure everything); this finds out at parse time, in a child process (the Snakemake
  process itself never initialises CUDA): is the installed torch a CUDA (or ROCm) build
  (read from torch/version.py, not imported), does the CUDA driver load and count at
  least one device (``cuInit`` / ``cuDeviceGetCount`` through ctypes, as torch's own
  check does)?
- :func:`space_free_interpreter`: Snakemake starts script jobs as the unquoted shell
  command ``{sys.executable} {script}``; an interpreter under a path with a space fails
  every job. The fix: a symlink to the interpreter's prefix (the venv) in a folder without
  such characters, and that path as ``sys.executable``, so the venv stays the venv.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from hwlab.lock import default_dir

_PROBE = r"""
import ctypes, sys
names = ["libcuda.so.1", "libcuda.so", "/usr/lib/wsl/lib/libcuda.so.1"]
lib = None
for n in names:
    try:
        lib = ctypes.CDLL(n)
        break
    except OSError:
        pass
if lib is None:
    print("no CUDA driver (libcuda.so.1 cannot be loaded: no NVIDIA driver on this host)")
    sys.exit(1)
rc = lib.cuInit(0)
if rc != 0:
    msg = ctypes.c_char_p()
    lib.cuGetErrorString(rc, ctypes.byref(msg))
    text = msg.value.decode() if msg.value else f"error {rc}"
    print(f"the CUDA driver does not initialise (cuInit: {text})")
    sys.exit(1)
n = ctypes.c_int(0)
lib.cuDeviceGetCount(ctypes.byref(n))
if n.value < 1:
    print("the CUDA driver sees no GPU (CUDA_VISIBLE_DEVICES hides them all?)")
    sys.exit(1)
print(n.value)
"""


def torch_build() -> dict[str, str | None]:
    """{'cuda': ..., 'hip': ...} of the installed torch, read without importing it."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return {"cuda": None, "hip": None, "installed": None}
    text = ""
    for loc in spec.submodule_search_locations:
        f = Path(loc) / "version.py"
        if f.is_file():
            text = f.read_text(errors="replace")
            break

    def field(name: str) -> str | None:
        m = re.search(rf"^{name}\s*(?::[^=\n]*)?=\s*(.+)$", text, flags=re.M)
        if not m:
            return None
        v = m.group(1).strip().strip("'\"")
        return None if v == "None" else v

    return {"cuda": field("cuda"), "hip": field("hip"), "installed": field("__version__")}


def cuda_problem(timeout_s: float = 60.0) -> str | None:
    """Why a CUDA measurement cannot run on this host, or None if it can (see above)."""
    build = torch_build()
    if build["installed"] is None:
        return "torch is not installed in this environment"
    if not build["cuda"] and not build["hip"]:
        return (
            f"the installed torch {build['installed']} is a CPU-only build "
            "(torch.version.cuda is None)"
        )
    if build["hip"]:
        return None  # ROCm: torch.cuda is HIP; the device job checks it
    try:
        r = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the CUDA driver probe did not finish ({e})"
    if r.returncode != 0:
        return (r.stdout.strip() or r.stderr.strip().splitlines()[-1:] or ["probe failed"])[0]
    return None


def shell_safe(path: str) -> bool:
    """Whether the shell takes ``path`` as one word unquoted (shlex.quote leaves it as is)."""
    return shlex.quote(path) == path


def interpreter_path_problem(executable: str) -> str | None:
    """Why Snakemake cannot start script jobs with this interpreter, or None.

    Snakemake (9.x, upstream issue #2645) runs ``script:`` jobs as the shell command
    ``{sys.executable} {script}`` without quoting the interpreter, so a path with a space
    (or another character the shell splits on) makes every job fail with exit 126/127.
    """
    if shell_safe(executable):
        return None
    return (
        f"the Python interpreter path {executable!r} contains characters the shell splits "
        "on (a space?), and Snakemake does not quote it when it starts script jobs "
        "(snakemake issue #2645)"
    )


def space_free_interpreter(
    executable: str | None = None, prefix: str | None = None, base: str | None = None
) -> str:
    """A path to the same interpreter (same venv) without characters the shell splits on.

    Returns ``executable`` when it is already safe. Otherwise links
    ``<base>/py-<hash>`` to ``prefix`` (sys.prefix: the venv, whose ``pyvenv.cfg`` Python
    finds through the link) and returns the interpreter's path under the link. Raises
    RuntimeError when there is no safe folder for the link or the linked interpreter does
    not start. ``base`` defaults to the per-user runtime folder (hwlab.lock.default_dir).
    """
    executable = executable or sys.executable
    prefix = prefix or sys.prefix
    if shell_safe(executable):
        return executable
    exe, pre = Path(executable), Path(prefix)
    try:
        rel = exe.relative_to(pre)
    except ValueError:
        raise RuntimeError(f"{executable} is not inside its prefix {prefix}") from None
    folder = Path(base) if base else default_dir()  # the per-user runtime folder
    if not shell_safe(str(folder)):
        raise RuntimeError(f"no folder without spaces for the interpreter link ({folder})")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    link = folder / f"py-{hashlib.sha256(str(pre).encode()).hexdigest()[:12]}"
    if not (link.is_symlink() and os.readlink(link) == str(pre)):
        tmp = folder / f".{link.name}.{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(pre, target_is_directory=True)
        os.replace(tmp, link)
    alias = str(link / rel)
    r = subprocess.run(
        [alias, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise RuntimeError(f"the linked interpreter {alias} does not start: {r.stderr.strip()}")
    return alias
