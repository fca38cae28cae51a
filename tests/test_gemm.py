"""The GEMM harness on the CPU, for real: timer, skip paths, sanity against the peak."""

import time

import pytest

from hwlab import gemm, peaks
from hwlab.device import CPU_FP8_REASON, Device


@pytest.fixture(scope="module")
def cpu():
    return Device("cpu")


def test_timer_measures_real_time(cpu):
    loop = cpu.bench(lambda: time.sleep(0.01), iters=5, mode="loop", min_repeats=1)
    assert loop.n == 1 and 0.009 < loop.device_s[0] < 0.04  # per call: the region / iters
    # on a CPU the device clock is the wall clock (wall adds only the no-op synchronize)
    assert loop.wall_s[0] == pytest.approx(loop.device_s[0], rel=0.05)
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


# ---- sweeps: memory estimate, launch refusals, timing modes --------------------------------
def test_oversized_point_is_an_oom_record_not_an_allocation(cpu):
    """gemm.M: [1e9] must not try to allocate terabytes: the point is estimated first."""
    recs = gemm.measure_sweep(
        cpu,
        Ms=[4, 10**9],
        N=128,
        K=64,
        dtype="fp32",
        shape="s",
        l2="cold",
        warmup=0,
        repeats=1,
        iters=1,
        flush_mb=1,
    )
    assert recs[4]["status"] == "ok"
    big = recs[10**9]
    assert big["status"] == "oom" and "gpu_time_us" not in big
    assert big["reason"].startswith("not allocated: needs about")
    assert "of host memory available" in big["reason"] and "activation 238 GiB" in big["reason"]
    assert big["memory_estimate_bytes"] > big["memory_limit_bytes"]


def test_point_memory_estimate():
    m = gemm.point_memory(16, 11008, 2048, "bf16", flush=256 * 2**20, device_kind="cuda")
    assert m["activation"] == 16 * 2048 * 2 and m["weight"] == 11008 * 2048 * 2
    assert m["output"] == 16 * 11008 * 2 and m["staging"] == 4 * 11008 * 2048
    assert m["headroom"] == gemm.CUDA_HEADROOM_BYTES
    assert m["total"] == sum(v for k, v in m.items() if k != "total")
    assert gemm.point_memory(1, 8, 8, "fp32")["staging"] == 0
    assert gemm.memory_refusal(m, m["total"], "x") is None
    assert "more than the 1 GiB x" in gemm.memory_refusal(m, 2**30, "x")


class _CudaLabelledCpu(Device):
    """A CPU device that says it is CUDA: the check must refuse before anything launches
    (on this CPU, torch._int_mm at M=16 would run and the point would come out ok)."""

    def __init__(self):
        super().__init__("cpu")
        self.kind = "cuda"

    def dtype_skip_reason(self, dtype):
        return None


def test_int8_on_cuda_needs_M_above_16_refused_before_launch():
    dev = _CudaLabelledCpu()
    rec = gemm.measure_point(
        dev, shape="s", M=16, N=64, K=64, dtype="int8", l2="warm", warmup=0, repeats=1, iters=1
    )
    assert rec["status"] == "skipped"
    assert rec["reason"] == "torch._int_mm on CUDA needs M > 16 (got M=16): not launched"
    assert gemm.launch_refusal("cuda", "int8", 17, 64, 64) is None
    assert gemm.launch_refusal("cpu", "int8", 1, 64, 64) is None
    assert "multiples of 8" in gemm.launch_refusal("cuda", "int8", 32, 64, 60)


def test_timing_plan_and_graph_on_a_cpu(cpu):
    assert gemm.timing_plan("events", "warm", "cuda") == ("loop", None)
    assert gemm.timing_plan("graph", "warm", "cuda") == ("graph", None)
    mode, note = gemm.timing_plan("graph", "cold", "cuda")
    assert mode == "each" and "warm L2 points only" in note
    rec = gemm.measure_point(
        cpu, shape="s", M=4, N=64, K=64, dtype="fp32", l2="warm", warmup=0, repeats=1, iters=1,
        timing="graph",
    )  # fmt: skip
    assert rec["status"] == "skipped" and "CUDA graph" in rec["reason"]
    cold = gemm.measure_point(
        cpu, shape="s", M=4, N=64, K=64, dtype="fp32", l2="cold", warmup=0, repeats=1, iters=1,
        timing="graph", flush_mb=1,
    )  # fmt: skip
    assert cold["status"] == "ok" and cold["timing_mode"] == "each"
    assert "warm L2 points only" in cold["timing_note"]
    with pytest.raises(ValueError, match="gemm.timing"):
        gemm.timing_plan("sometimes", "warm", "cpu")


def test_dispatch_bound_flag():
    assert gemm.dispatch_bound("cpu", "loop", 10.0, 10.0) == (None, None)
    assert gemm.dispatch_bound("cuda", "loop", 5.0, 4.5) == (0.9, True)
    assert gemm.dispatch_bound("cuda", "loop", 50.0, 5.0) == (0.1, False)
    assert gemm.dispatch_bound("cuda", "graph", 5.0, 0.1)[1] is None


def test_adaptive_point_records_how_it_stopped(cpu):
    rec = gemm.measure_point(
        cpu, shape="s", M=8, N=256, K=128, dtype="fp32", l2="warm", warmup=1, repeats=3,
        iters=2, target_spread=0.5, budget_s=2.0, max_repeats=40,
    )  # fmt: skip
    assert rec["status"] == "ok" and rec["stopped"] in ("target", "budget", "max_repeats")
    assert rec["target_spread"] == 0.5 and rec["n_repeats"] >= 3
    assert rec["target_reached"] == (rec["rel_ci"] <= 0.5)
    assert rec["method"]["budget_s"] == 2.0 and rec["timing_mode"] == "loop"


def test_roofline_flags_a_dispatch_bound_point(tmp_path):
    """A GPU point whose host dispatch per call is close to its GPU time is flagged in the
    table and named in its notes (constructed records: no GPU here)."""
    import pandas as pd

    from hwlab import roofline

    def rec(M, t, dispatch, bound):
        d = gemm.derived(M, 11008, 2048, "bf16", t * 1e-6)
        return {"shape": "ffn", "dtype": "bf16", "l2": "warm", "M": M, "N": 11008, "K": 2048,
                "status": "ok", "reason": None, "gpu_time_us": t, "wall_time_us": t,
                "dispatch_us": dispatch, "dispatch_ratio": dispatch / t, "dispatch_bound": bound,
                "timing_mode": "loop", **d}  # fmt: skip

    spec = {"mem_bw_gbps": 4800, "peak_tflops": {"bf16": {"dense": 989.4, "sparse": 1978.9}}}
    peaks = {"spec_key": "h200", "spec": spec,
             "measured": {"tflops": {"bf16": 700}, "mem_bw_gbps": 4000}}  # fmt: skip
    df = roofline.build_table([rec(1, 6.0, 5.5, True), rec(256, 40.0, 5.0, False)], peaks)
    assert list(df.dispatch_bound) == [True, False]
    roofline.write_markdown_table(df, peaks, "cuda", tmp_path / "r.csv", tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert "| dispatch-bound " in md and "dispatch-bound here: bf16 warm M=1." in md
    assert bool(pd.read_csv(tmp_path / "r.csv").dispatch_bound.iloc[0]) is True
