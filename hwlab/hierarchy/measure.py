"""The hierarchy stage's measuring jobs: ``hierarchy/memory.json`` and ``hierarchy/link.json``.

``memory``: bandwidth and latency by working set on the run's device (CPU:
:mod:`hwlab.hierarchy.cpu`, numba; CUDA: :mod:`hwlab.hierarchy.gpu`, Triton), with what the
machine reports about its caches. ``link``: host↔device copies (pinned and pageable) and
peer-to-peer copies between two GPUs (CUDA only; a CPU host writes a ``skipped`` record
saying why). Nothing GPU-specific is imported on a CPU host.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hwlab.io import FAILED, OK, SKIPPED, read_json, record, with_window, write_json

log = logging.getLogger("hwlab.hierarchy")

METHOD_KEYS = ("points_per_octave", "target_ms", "latency_target_ms", "repeats", "target_spread")
CPU_LINK_REASON = (
    "device is a CPU: host↔device (pinned / pageable) and peer-to-peer copies need a "
    "CUDA GPU (device.json kind = cpu)"
)


def config_errors(config: dict[str, Any]) -> list[str]:
    """Rules across the hierarchy keys (run at parse time; each error names its key)."""
    h = config.get("hierarchy") or {}
    lo = h.get("min_bytes", 4096)
    out = []
    for k in ("max_bytes", "latency_max_bytes"):
        v = h.get(k, 0)
        if v and v < lo:
            out.append(f"hierarchy.{k}: {v} is below hierarchy.min_bytes = {lo}.")
    if (h.get("gpu") or {}).get("l1_max_bytes", 262144) > 262144:
        out.append("hierarchy.gpu.l1_max_bytes: the L1 sweep reuses at most 256 KiB per SM.")
    return out


def auto_max_bytes(max_bytes: int, llc_bytes: int | None, floor: int = 1024**3) -> int:
    """``max_bytes`` if set, else max(4 x last-level cache, ``floor``)."""
    if max_bytes:
        return int(max_bytes)
    return max(4 * (llc_bytes or 0), floor)


def cpu_memory(info: dict[str, Any], p: dict[str, Any], threads: int) -> dict[str, Any]:
    from hwlab.device import Device
    from hwlab.hierarchy import cpu

    try:
        k = cpu.kernels()
    except ImportError as e:
        return record(SKIPPED, str(e), device_kind="cpu")
    dev = Device.from_info(info, threads)
    affinity = cpu.cpu_affinity()
    reported = cpu.reported_levels(affinity, dev.threads)
    llc = reported[-1]["size_bytes"] if reported else info.get("llc_bytes")
    line = (reported[0].get("line_bytes") if reported else None) or 64
    bw_max = auto_max_bytes(p["max_bytes"], llc)
    lat_max = int(p["latency_max_bytes"] or max(8 * (llc or 0), 64 * 1024**2))
    dense_until = 4 * llc if llc else None
    grid = dict(
        dense_until=dense_until,
        sparse_points_per_octave=p["sparse_points_per_octave"],
        align=max(64, 8 * 8 * dev.threads),
    )
    bw_sizes = cpu.size_grid(p["min_bytes"], bw_max, p["points_per_octave"], **grid)
    lat_sizes = cpu.size_grid(p["min_bytes"], lat_max, p["points_per_octave"], **grid)
    t0 = time.perf_counter()
    buf = cpu.Buffer(max(bw_max, lat_max), huge=p["huge_pages"])
    alloc_s = time.perf_counter() - t0
    common = dict(target_ms=p["target_ms"], repeats=p["repeats"], target_spread=p["target_spread"])
    timings = {"buffer_s": alloc_s}
    sweeps = {}
    try:
        for kernel in p["kernels"]:
            t0 = time.perf_counter()
            sweeps[kernel] = {
                "metric": "gbps",
                "kind": "bandwidth",
                "scope": f"{dev.threads} threads, whole working set",
                "threads": dev.threads,
                "points": cpu.bandwidth_sweep(
                    dev,
                    buf,
                    bw_sizes,
                    kernel=kernel,
                    threads=dev.threads,
                    log=log.info,
                    **common,
                ),
            }
            timings[f"{kernel}_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sweeps["chase"] = {
            "metric": "ns",
            "kind": "latency",
            "scope": "1 thread",
            "threads": 1,
            "points": cpu.latency_sweep(
                dev,
                buf,
                lat_sizes,
                line_bytes=line,
                llc_bytes=llc,
                seed=p["seed"],
                log=log.info,
                **{**common, "target_ms": p["latency_target_ms"]},
            ),
        }
        timings["chase_s"] = time.perf_counter() - t0
    finally:
        huge = buf.huge_fraction
        buf.close()
    return record(
        OK,
        None,
        device_kind="cpu",
        device_name=info.get("name"),
        threads=dev.threads,
        reported={
            "source": "sysfs /sys/devices/system/cpu/cpu*/cache",
            "cpus": affinity,
            "levels": reported,
        },
        memory={"name": "DRAM", "bytes": info.get("host_memory_bytes")},
        method={
            "timer": dev.timer_name,
            "bench": "Device.bench loop mode, 1 call per repeat, 1 warmup call",
            "compiler": f"numba {k['numba']}",
            "buffer_bytes": buf.nbytes,
            "huge_pages_advised": buf.huge_advised,
            "huge_page_fraction": huge,
            "line_bytes": line,
            "bandwidth_sizes": [bw_sizes[0], bw_sizes[-1], len(bw_sizes)],
            "latency_sizes": [lat_sizes[0], lat_sizes[-1], len(lat_sizes)],
            **{k2: p[k2] for k2 in METHOD_KEYS},
        },
        timings_s=timings,
        sweeps=sweeps,
    )


def write_memory_json(out: str, *, device_json: str, threads: int, **p: Any) -> dict[str, Any]:
    """Snakemake entry of the ``hierarchy_memory`` job."""
    start = time.time()
    info = read_json(device_json)
    kind = info.get("kind", "cpu")
    try:
        if kind == "cuda":
            from hwlab.hierarchy import gpu

            rec = gpu.gpu_memory(info, p)
        else:
            rec = cpu_memory(info, p, threads)
    except MemoryError as e:
        rec = record(FAILED, f"out of memory allocating the sweep's buffer: {e}", device_kind=kind)
    rec.setdefault("params", p)
    write_json(out, with_window(rec, start))
    return rec


def write_link_json(out: str, *, device_json: str, **p: Any) -> dict[str, Any]:
    """Snakemake entry of the ``hierarchy_link`` job."""
    start = time.time()
    info = read_json(device_json)
    if info.get("kind") != "cuda":
        rec = record(SKIPPED, CPU_LINK_REASON, device_kind=info.get("kind", "cpu"))
    else:
        from hwlab.hierarchy import gpu

        rec = gpu.link(info, p)
    rec.setdefault("params", p)
    write_json(out, with_window(rec, start))
    return rec
