"""The GEMM harness on the CPU, for real: timer, skip paths, sanity against the peak."""

import time

import pytest

from hwlab import gemm, peaks
from hwlab.device import CPU_FP8_REASON, Device


@pytest.fixture(scope="module")
def cpu():
    return Device("cpu")


def test_timer_measures_real_time(cpu):
    t = cpu.time_loop(lambda: time.sleep(0.01), 5)
    assert 0.045 < t.device_s < 0.2
    assert t.wall_s == pytest.approx(t.device_s)
    each = cpu.time_each(lambda: time.sleep(0.005), 3, before=lambda: time.sleep(0.02))
    assert len(each) == 3
    assert all(0.004 < x.device_s < 0.02 for x in each)  # `before` is not timed


def test_event_pair_on_cpu(cpu):
    a, b = cpu.event_pair()
    a.record()
    time.sleep(0.01)
    b.record()
    assert 0.009 < cpu.elapsed_s(a, b) < 0.1


def test_fp8_and_tf32_skipped_on_cpu(cpu):
    rec = gemm.measure_point(
        cpu, shape="s", M=16, N=64, K=64, dtype="fp8", l2="warm", warmup=0, repeats=1, iters=1
    )
    assert rec["status"] == "skipped"
    assert rec["reason"] == CPU_FP8_REASON
    assert "gpu_time_us" not in rec
    assert cpu.dtype_skip_reason("tf32")
    assert cpu.dtype_skip_reason("bf16") is None


def test_point_record(cpu):
    rec = gemm.measure_point(
        cpu,
        shape="s",
        M=8,
        N=256,
        K=128,
        dtype="bf16",
        l2="cold",
        warmup=1,
        repeats=3,
        iters=2,
        flush_mb=4,
    )
    assert rec["status"] == "ok"
    assert len(rec["repeats_us"]) == 3
    assert rec["time_min_us"] <= rec["gpu_time_us"] <= rec["time_max_us"]
    assert rec["method"]["flush_bytes"] == 4 * 1024**2
    d = gemm.derived(8, 256, 128, "bf16", rec["gpu_time_us"] * 1e-6)
    assert rec["tflops"] == pytest.approx(d["tflops"])
    assert rec["ai"] == pytest.approx(2 * 8 * 256 * 128 / (2 * (8 * 128 + 256 * 128 + 8 * 256)))


def test_flush_size():
    assert gemm.flush_bytes(0, 50 * 2**20) == 256 * 2**20
    assert gemm.flush_bytes(0, 260 * 2**20) == 520 * 2**20
    assert gemm.flush_bytes(64, 260 * 2**20) == 64 * 2**20


def test_harness_sanity_against_measured_peak(cpu):
    """At a large M the sweep's GFLOP/s is within a factor 3 of the measured peak, and at
    least two of five repeats agree within 20%."""
    peak = peaks.measure_compute(cpu, "fp32", [768], warmup=2, repeats=3, iters=3)
    assert peak["status"] == "ok"
    rec = gemm.measure_point(
        cpu, shape="s", M=512, N=1024, K=768, dtype="fp32", l2="warm", warmup=2, repeats=5, iters=3
    )
    assert peak["tflops"] / 3 < rec["tflops"] < peak["tflops"] * 3
    xs = sorted(rec["repeats_us"])
    assert min(b / a for a, b in zip(xs, xs[1:], strict=False)) < 1.2, xs


def test_memory_bandwidth_is_plausible(cpu):
    m = peaks.measure_memory(cpu, 64 * 2**20, warmup=1, repeats=3, iters=2)
    # any machine this runs on moves between 0.5 GB/s and 10 TB/s
    assert 0.5 < m["copy_gbps"] < 1e4
    assert m["mem_bw_gbps"] == max(m["copy_gbps"], m["triad_gbps"])


def test_ceilings_basis():
    pk = {"measured": {"tflops": {"bf16": 0.1}, "mem_bw_gbps": 20.0}}
    c = peaks.ceilings(pk, None, "bf16")
    assert c["basis"] == "measured" and c["peak_tflops"] == 0.1 and c["bw_gbps"] == 20.0
    c = peaks.ceilings(pk, None, "bf16", sweep_best_tflops=0.2)
    assert c["peak_tflops"] == 0.2 and c["measured_tflops_source"] == "best sweep point"
    spec = {"mem_bw_gbps": 960, "peak_tflops": {"bf16": {"dense": 112.6, "sparse": 225.1}}}
    c = peaks.ceilings(pk, spec, "bf16")
    assert c["basis"] == "spec" and c["peak_tflops"] == 112.6 and c["bw_gbps"] == 960
    assert c["measured_tflops"] == 0.1
