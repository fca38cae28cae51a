"""The pipeline through profiles/slurm on a real single-node SLURM (profiles/slurm/local-slurm.sh).

The cluster advertises fake GPUs (character devices as gres), so GPU rules are submitted
with their GPU request and see CUDA_VISIBLE_DEVICES; on this CPU machine they still run on
the CPU (or skip with their reason). Jobs must really go through sbatch: sacct lists them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, TINY, smk, write_config

pytestmark = pytest.mark.slurm

SETUP = REPO / "profiles" / "slurm" / "local-slurm.sh"


def _slurm_up() -> bool:
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "up" in r.stdout


@pytest.fixture(scope="module")
def slurm():
    """A running local SLURM: started by this fixture if installed but not running."""
    if shutil.which("slurmctld") is None:
        msg = "SLURM is not installed here (profiles/slurm/local-slurm.sh install)"
        if os.environ.get("HWLAB_REQUIRE_SLURM") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    if not _slurm_up():
        r = subprocess.run(
            ["bash", str(SETUP), "start"], capture_output=True, text=True, timeout=180
        )
        assert r.returncode == 0, r.stderr
    assert _slurm_up()
    # a job left in the queue (by a run killed mid-test) would hold the node: fail fast
    # with what is queued instead of pending until the test's timeout
    deadline = time.monotonic() + 60
    while True:
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i %j %T %M"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        state = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not queue and state.startswith("idle"):
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"the local SLURM is busy (node {state!r}; queue: {queue!r}): "
                "scancel those jobs, or restart it (local-slurm.sh stop; local-slurm.sh start)"
            )
        time.sleep(1)


def small_config() -> dict:
    """The tiny config cut to one point per stage: SLURM costs seconds per job."""
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["run"] = "slurm"
    cfg["gemm"].update(dtypes=["fp32"], M=[4], l2=["warm"])
    cfg["decode"].update(batches=[1], lab1a_batches=[1, 1])
    cfg["ncu"] = {"batches": [1]}
    cfg["allreduce"]["backends"] = ["auto"]
    return cfg


def result_files(res: Path) -> set[str]:
    return {p.relative_to(res).as_posix() for p in res.rglob("*") if p.is_file()}


def sacct(job_ids: list[str]) -> dict[str, dict[str, str]]:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", "JobID,State,AllocTRES"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        jid, state, tres = line.split("|")
        rows[jid] = {"state": state, "tres": tres}
    return rows


def test_profile_runs_through_sbatch(slurm, tmp_path):
    cfgfile = write_config(tmp_path / "slurm.yaml", small_config())
    local_wd, slurm_wd = tmp_path / "local", tmp_path / "slurm"
    local_wd.mkdir()
    slurm_wd.mkdir()
    local = smk(local_wd, "all", configfile=cfgfile)
    assert local.returncode == 0, local.stderr[-3000:]

    proc = smk(
        slurm_wd,
        "all",
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "1",
        "--slurm-logdir",
        str(tmp_path / "slurm_logs"),
        configfile=cfgfile,
        timeout=900,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    # every non-local job went through sbatch, and sacct has it COMPLETED
    job_ids = re.findall(r"SLURM jobid (\d+)", log)
    remote_rules = {
        "device",
        "provenance",
        "peaks",
        "gemm_sweep",
        "model",
        "decode_batch",
        "decode_ops",
        "ncu_capture",
        "allreduce",
        "hierarchy_memory",
        "hierarchy_link",
    }
    assert len(job_ids) >= len(remote_rules), log[-3000:]
    acct = sacct(job_ids)
    assert set(acct) == set(job_ids)
    assert all(r["state"] == "COMPLETED" for r in acct.values()), acct

    # GPU rules asked for their GPU: sacct shows it, the job saw CUDA_VISIBLE_DEVICES
    gpu_jobs = sum("gres/gpu=1" in r["tres"] for r in acct.values())
    # device, peaks, gemm_sweep, decode_batch, decode_ops, ncu_capture, hierarchy_memory,
    # hierarchy_link
    assert gpu_jobs == 8, acct
    res = slurm_wd / "results" / "slurm"
    device = json.loads((res / "device.json").read_text())
    assert device["cuda_visible_devices"] not in (None, "")
    assert device["kind"] == "cpu"  # fake GPUs: the job still measures on the CPU
    ncu = json.loads((res / "ncu" / "b1.json").read_text())  # a GPU-only rule: skipped
    assert ncu["status"] == "skipped" and "no GPU" in ncu["reason"]

    # the same files as a local run
    assert result_files(slurm_wd / "results" / "slurm") == result_files(
        local_wd / "results" / "slurm"
    )
