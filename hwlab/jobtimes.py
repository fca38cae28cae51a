"""Per-job wall time of a pipeline run, for the per-rule benchmark (benchmarks/bench_rules.py).

With ``HWLAB_JOB_TIMES=DIR`` set, every script job (``scripts/_setup.py``) writes, when its
interpreter exits, ``DIR/<pid>.json``: its rule, wildcards and outputs, the seconds from the
interpreter's start (``/proc/self/stat`` start time, against ``CLOCK_BOOTTIME``: the same
clock) to ``_setup``'s import (interpreter + Snakemake's script preamble) and to the exit.
The measured window of a job is the sum of the ``window`` durations in the JSON records it
wrote (what the measurement itself occupied); the rest of its wall time is its fixed cost
(a new interpreter, imports, a CUDA context, building a model). Without the variable
nothing happens.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ENV = "HWLAB_JOB_TIMES"


def start_ticks(pid: int | str = "self") -> int | None:
    """When process ``pid`` started, in clock ticks since boot (field 22 of proc(5)'s
    ``/proc/PID/stat``, read after the last ``)`` so a command name with spaces or
    parentheses cannot shift it), or None where unknown (no such process, no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # fields[0] is field 3
    except (OSError, ValueError, IndexError):
        return None


def process_age_s() -> float | None:
    """Seconds since this process started (Linux), or None where unknown."""
    ticks = start_ticks()
    if ticks is None:
        return None
    try:
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
        return now - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None


def install(folder: str) -> None:
    """Register the exit hook (called by scripts/_setup.py when ``HWLAB_JOB_TIMES`` is set)."""
    to_setup = process_age_s()

    def write() -> None:
        smk = getattr(sys.modules.get("__main__"), "snakemake", None)
        if smk is None:
            return
        rec = {
            "rule": smk.rule,
            "wildcards": dict(smk.wildcards.items()),
            "output": [str(o) for o in smk.output],
            "to_setup_s": to_setup,
            "wall_s": process_age_s(),
            "end": time.time(),
            "pid": os.getpid(),
        }
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".{os.getpid()}.tmp"
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, out / f"{os.getpid()}.json")

    atexit.register(write)


def measured_window_s(outputs: Iterable[str], workdir: str | os.PathLike = ".") -> float:
    """Seconds the job's own records say their measurement occupied (sum of windows)."""
    total = 0.0
    for o in outputs:
        p = Path(workdir) / o
        if p.suffix != ".json" or not p.is_file():
            continue
        try:
            w = json.loads(p.read_text()).get("window")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(w, dict) and "start" in w and "end" in w:
            total += max(0.0, float(w["end"]) - float(w["start"]))
    return total


def load(folder: str | os.PathLike, workdir: str | os.PathLike = ".") -> list[dict[str, Any]]:
    """Every job record in ``folder``, each with its measured window and fixed cost."""
    jobs = []
    for p in sorted(Path(folder).glob("*.json")):
        rec = json.loads(p.read_text())
        if rec.get("wall_s") is None:
            continue
        rec["measured_s"] = measured_window_s(rec["output"], workdir)
        rec["fixed_s"] = max(0.0, rec["wall_s"] - rec["measured_s"])
        jobs.append(rec)
    return sorted(jobs, key=lambda r: r["end"])


def per_rule(jobs: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """rule -> jobs, wall, measured and fixed seconds (totals), fixed per job."""
    out: dict[str, dict[str, float]] = {}
    for j in jobs:
        r = out.setdefault(j["rule"], {"jobs": 0, "wall_s": 0.0, "measured_s": 0.0, "fixed_s": 0.0})
        r["jobs"] += 1
        r["wall_s"] += j["wall_s"]
        r["measured_s"] += j["measured_s"]
        r["fixed_s"] += j["fixed_s"]
    for r in out.values():
        r["fixed_per_job_s"] = r["fixed_s"] / r["jobs"]
    return out
