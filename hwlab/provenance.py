"""Provenance of a run (``env.json``): what ran, where, on which software, from which code."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def git_state(workdir: str | Path) -> dict[str, Any]:
    """Commit of the workflow checkout and whether it has uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(
                ["git", "-C", str(workdir), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def collect(
    device: dict[str, Any],
    *,
    workflow_dir: str | Path,
    config_digest: str,
    snakemake_version: str | None,
) -> dict[str, Any]:
    """What ran where. Light: the torch, CUDA and cuDNN versions come from the package
    metadata and device.json (the device rule imported torch), so this job never loads
    torch or starts CUDA."""
    return {
        "device": {
            "kind": device["kind"],
            "name": device["name"],
            "cpu_model": device.get("cpu_model"),
            "gpu_name": device["name"] if device["kind"] == "cuda" else None,
            "gpu_count": device.get("gpu_count"),
            "capability": device.get("capability"),
            "driver_version": device.get("driver_version"),
            "cuda_version": device.get("torch_cuda"),
            "cudnn_version": device.get("cudnn_version"),
            "catalog_key": device.get("catalog_key"),
        },
        "software": {
            "python": platform.python_version(),
            "torch": _version("torch"),
            "transformers": _version("transformers"),
            "snakemake": snakemake_version or _version("snakemake"),
            "hwlab": _version("hwlab"),
            "ncu_report": _version("ncu-report"),
            "nvidia_ml_py": _version("nvidia-ml-py"),
        },
        "workflow": git_state(workflow_dir),
        "config_digest": config_digest,
        "host": {"hostname": socket.gethostname(), "platform": platform.platform()},
        "utc_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_env_json(
    out: str,
    *,
    device_json: str,
    workflow_dir: str,
    config_digest: str,
    snakemake_version: str | None,
    hardware_json: str | None = None,
) -> None:
    from hwlab.io import write_json
    from hwlab.records import read_device

    write_json(
        out,
        collect(
            read_device(device_json, hardware_json),
            workflow_dir=workflow_dir,
            config_digest=config_digest,
            snakemake_version=snakemake_version,
        ),
    )
