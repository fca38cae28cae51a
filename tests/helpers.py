"""Helpers for tests: run the real workflow with Snakemake on tiny configs in temp folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# A config small enough for seconds per job, still exercising every code path of the
# backbone: two L2 modes, a dtype the CPU cannot run natively (fp8 -> skipped record).
TINY = {
    "run": "tiny",
    "peaks": {
        "gemm_sizes": [256],
        "stream_mb": 16,
        "warmup": 1,
        "repeats": 3,
        "iters": 3,
        "budget_s": 0.2,
    },
    "gemm": {
        "shapes": [{"name": "small", "N": 512, "K": 256}],
        "dtypes": ["fp32", "fp8"],
        "M": [1, 16],
        "l2": ["warm", "cold"],
        "warmup": 1,
        "repeats": 3,
        "iters": 3,
        "flush_mb": 8,
        "budget_s": 0.2,
    },
    # Lab 3: a real 2-process gloo sweep on small sizes; nccl on a CPU host -> skipped.
    "allreduce": {
        "backends": ["auto", "nccl"],
        "max_bytes": 1 << 20,
        "warmup": 1,
        "iters": 3,
    },
    # §1 hierarchy: a few points per octave up to 8 MiB (past L2, into L3), short calls
    "hierarchy": {
        "max_bytes": 8 << 20,
        "latency_max_bytes": 8 << 20,
        "points_per_octave": 2,
        "target_ms": 1.0,
        "latency_target_ms": 0.5,
        "repeats": 3,
        "target_spread": 0,
    },
    # decode: the CPU default's tiny Qwen2-shaped model, two batches, a few steps
    "decode": {
        "batches": [1, 2],
        "prompt_len": 16,
        "new_tokens": 6,
        "warmup_steps": 2,
        "profile_steps": 2,
        "lab1a_batches": [1, 2],
    },
}


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def smk(
    workdir: Path,
    *args: str,
    configfile: Path | None = None,
    timeout: int = 900,
    cores: int = 2,
    snakefile: Path = REPO / "Snakefile",
) -> subprocess.CompletedProcess:
    """Run Snakemake on ``snakefile`` with ``workdir`` as working directory."""
    cmd = [*SNAKEMAKE, "-s", str(snakefile), "-d", str(workdir), "--cores", str(cores)]
    cmd += list(args)
    if configfile is not None:  # last: --configfile takes several values
        cmd += ["--configfile", str(configfile)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir
    )


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> count from the 'Job stats' table of a Snakemake (dry) run."""
    jobs: dict[str, int] = {}
    lines = proc.stdout.splitlines() + proc.stderr.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        return jobs
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs
