"""The §1 table from a CUDA-shaped record (the GPU path's aggregation, checked without a
GPU on constructed sweeps) and from a failed / skipped record."""

import math

import pandas as pd
import pytest

from hwlab import catalog
from hwlab import headlines as H
from hwlab.hierarchy import cpu, report, table

MiB = 1024**2
L2 = 60 * MiB


def pts(sizes, f, metric):
    return [
        {"size_bytes": s, metric: f(s), f"{metric}_lo": 0.98 * f(s), f"{metric}_hi": 1.02 * f(s),
         "cycles": 1.98 * f(s) if metric == "ns" else None}
        for s in sizes
    ]  # fmt: skip


def h200_record():
    """Sweeps shaped like gpu-benches' H200/H100 figures: L1 ~25 TB/s up to ~200 KB per SM,
    L2 ~10 TB/s up to ~55 MB, HBM ~3.9 TB/s; chase 18 / 140 / 340 ns."""
    l1s = cpu.size_grid(16 * 1024, 256 * 1024, 6, align=4096)
    sz = cpu.size_grid(16 * 1024, 1 << 30, 6, dense_until=4 * L2, align=16384)
    lat = cpu.size_grid(4096, 8 * L2, 6, align=128)
    return {
        "status": "ok",
        "reason": "copy: CompilationError: at 1:1",
        "device_kind": "cuda",
        "device_name": "NVIDIA H200",
        "reported": {
            "levels": [
                {"level": 1, "name": "L1/shared", "size_bytes": 233472, "aggregate_bytes": None},
                {"level": 2, "name": "L2", "size_bytes": L2, "aggregate_bytes": L2},
            ]
        },
        "memory": {"name": "HBM", "bytes": 141e9},
        "method": {"timer": "cuda_events", "bench": "loop", "compiler": "triton 3.6"},
        "sweeps": {
            "l1_read": {"metric": "gbps", "kind": "bandwidth", "scope": "per SM",
                        "points": pts(l1s, lambda s: 25e3 if s <= 200e3 else 10e3, "gbps")},
            "read": {"metric": "gbps", "kind": "bandwidth", "scope": "whole GPU",
                     "points": pts(sz, lambda s: 10e3 if s <= 55 * MiB else 3.9e3, "gbps")},
            "copy": {"metric": "gbps", "kind": "bandwidth", "points": [], "status": "failed",
                     "reason": "CompilationError: at 1:1"},
            "chase": {"metric": "ns", "kind": "latency", "scope": "1 warp",
                      "points": pts(lat, lambda s: 18.0 if s <= 200e3
                                    else 140.0 if s <= 55 * MiB else 340.0, "ns")},
            "torch_reference": {"kind": "reference", "points": [],
                                "reference": {"sum_gbps": 3.95e3, "copy_gbps": 3.8e3,
                                              "bytes": 1 << 30}},
        },
    }  # fmt: skip


def test_gpu_rows_and_markdown():
    rec = h200_record()
    cat = catalog.load()
    rows = table.hierarchy_rows(rec, {"status": "skipped", "reason": "1 GPU visible"}, cat,
                                cat["h200"])  # fmt: skip
    by = {r["level"]: r for r in rows}
    assert list(by) == ["L1/shared", "L2", "HBM", "Host link", "Peer link", "Registers"]
    assert by["L1/shared"]["bandwidth_sweep"] == "l1_read"
    assert by["L1/shared"]["read_gbps"] == 25e3 and by["L2"]["read_gbps"] == 10e3
    assert by["HBM"]["read_gbps"] == 3.9e3 and by["HBM"]["latency_ns"] == 340.0
    assert by["L2"]["latency_cycles"] == 1.98 * 140.0
    # the L2 knee from the bandwidth sweep, against torch's L2_cache_size
    assert abs(by["L2"]["bandwidth_knee_bytes"] / (55 * MiB) - 1) < 0.07
    assert by["L2"]["writeup_bandwidth"] == "~12 TB/s"
    assert by["HBM"]["catalog_bandwidth"] == "4.8 TB/s"
    md = table.markdown(rows, rec, {"name": "NVIDIA H200"})
    assert "Sweeps not measured: copy: CompilationError" in md
    assert "% of the best (goal: within 5%)" in md and "99%" in md
    assert "(277 cycles)" in md
    t = pd.DataFrame(rows)
    checks = {c["level"]: c for c in report.knee_checks(t)}
    assert checks["L2"]["source"] == "bandwidth" and checks["L2"]["goal"]
    assert not checks["L1/shared"]["goal"]  # L1 is reported, not a goal
    # the principle on the fixture's plateaus (each ±2%): L1 → L2 is bandwidth ÷2.5 with
    # latency ×140/18, log10(140/18) − log10(2.5) = +0.49 decades, and the ±2% spreads
    # widen that to about [0.46, 0.53], across the 0.5-decade tolerance: inconclusive;
    # L2 → HBM (÷10/3.9, ×340/140) is 0.02 decades apart: holds. The whole: inconclusive.
    f = report.principle_finding(t)
    steps = f.evidence["steps"]
    assert [(s["from"], s["to"]) for s in steps] == [("L1/shared", "L2"), ("L2", "HBM")]
    assert steps[0]["decades_apart"] == pytest.approx(math.log10(140 / 18) - math.log10(2.5))
    assert steps[1]["decades_apart"] == pytest.approx(math.log10(340 / 140) - math.log10(10 / 3.9))
    lo, hi = steps[0]["decades_apart_interval"]
    assert lo < report.TOLERANCE_DECADES < hi
    assert [s["verdict"] for s in steps] == [H.INCONCLUSIVE, H.HOLDS]
    assert f.verdict == H.INCONCLUSIVE


def test_failed_record_rows():
    rows = table.hierarchy_rows(
        {"status": "skipped", "reason": "triton is not importable"}, None, catalog.load()
    )
    assert rows[0]["status"] == "skipped" and "triton" in rows[0]["reason"]
    md = table.markdown(rows, {"status": "skipped"}, {"name": "GPU"})
    assert "skipped: triton is not importable" in md
    f = report.principle_finding(pd.DataFrame(rows), "skipped: triton is not importable")
    assert f.verdict == H.NOT_EVALUABLE and "triton" in f.text


def test_plot_without_data(tmp_path):
    table.plot({"status": "skipped", "reason": "no numba"}, {}, str(tmp_path / "a.png"),
               str(tmp_path / "a.svg"))  # fmt: skip
    assert (tmp_path / "a.png").stat().st_size > 0
