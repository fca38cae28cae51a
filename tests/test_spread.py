"""Spread everywhere: every measured quantity carries its range and repeat count into the
tables (roofline, peaks, decode, kernel classes, AllReduce), numbers read like the writeup's,
and a CPU's matrix engine is read from its flags."""

import subprocess
import sys

import pandas as pd
import pytest
from helpers import REPO

from hwlab import decode_tables as DT
from hwlab import findings as FD
from hwlab import headlines as H
from hwlab import roofline as R
from hwlab.allreduce_table import fit_group, fit_quality, r2_log_time
from hwlab.device import cpu_flags, cpu_matrix_engine
from hwlab.io import fmt_number, group_reasons, markdown
from hwlab.peaks import ceilings, peaks_table

# ---- numbers and reasons ------------------------------------------------------------------


@pytest.mark.parametrize(
    "x,text",
    [(1180.3, "1,180"), (207700.0, "207,700"), (38.62, "38.6"), (9.912, "9.91"),
     (0.5923, "0.592"), (0.00774, "0.00774"), (0, "0"), (5, "5"), (None, "—"),
     (float("nan"), "—")],
)  # fmt: skip
def test_numbers_never_in_exponent_notation(x, text):
    assert fmt_number(x) == text


def test_markdown_right_aligns_numbers_and_shows_missing_as_dash():
    df = pd.DataFrame({"a": [1.0, None], "b": ["x", None]}).astype(object)
    md = markdown(df.where(df.notna(), None))
    assert "|   a | b   |" in md and "|----:|:----|" in md and "|   — | —   |" in md


def test_reasons_are_grouped_not_repeated():
    lines = group_reasons([(1, "skipped", "no GPU"), (32, "skipped", "no GPU"), (4, "oom", "x")])
    assert lines == ["batches 1, 32: skipped: no GPU", "batch 4: oom: x"]


# ---- roofline and peaks -------------------------------------------------------------------


def test_point_range_from_the_slowest_and_fastest_repeat():
    lo, hi = R.point_range(10.0, t_med=100.0, t_min=80.0, t_max=125.0)
    assert lo == pytest.approx(8.0) and hi == pytest.approx(12.5)
    assert R.point_range(10.0, 100.0, None, None) == (10.0, 10.0)  # no spread recorded
    assert R.pct_range(8.0, 12.5, (9.0, 11.0)) == pytest.approx((100 * 8 / 11, 100 * 12.5 / 9))


PEAKS = {
    "spec": None,
    "measured": {
        "tflops": {"fp32": 0.2},
        "tflops_range": {"fp32": [0.18, 0.21]},
        "mem_bw_gbps": 30.0,
        "mem_bw_gbps_range": [27.0, 31.0],
        "method": {"warmup": 1, "repeats": 3, "iters": 2, "timer": "perf_counter_ns"},
        "compute": {"fp32": {"status": "ok", "best_size": 256, "sizes": {"256": {
            "status": "ok", "tflops": 0.2, "tflops_min": 0.18, "tflops_max": 0.21,
            "rel_spread": 0.15, "n_repeats": 3}}}},
        "memory": {"array_bytes": 1024, "copy_gbps": 30.0, "copy_gbps_min": 27.0,
                   "copy_gbps_max": 31.0, "copy_rel_spread": 0.13, "copy_n_repeats": 3,
                   "triad_gbps": 25.0, "mem_bw_gbps": 30.0, "mem_bw_kernel": "copy"},
    },
}  # fmt: skip


def point(M, t, tmin, tmax, dtype="fp32"):
    from hwlab.gemm import derived

    return {"status": "ok", "shape": "s", "M": M, "N": 512, "K": 256, "dtype": dtype,
            "l2": "warm", "gpu_time_us": t, "time_min_us": tmin, "time_max_us": tmax,
            "rel_spread": (tmax - tmin) / t, "repeats_us": [tmin, t, tmax],
            **derived(M, 512, 256, dtype, t * 1e-6)}  # fmt: skip


def test_roofline_table_carries_the_spread_including_the_ceilings():
    df = R.build_table([point(1, 10.0, 9.0, 12.0), point(16, 20.0, 19.0, 25.0)], PEAKS)
    r = df.iloc[0]
    assert r["n_repeats"] == 3
    assert r["tflops_lo"] == pytest.approx(r["tflops"] * 10 / 12)
    assert r["tflops_hi"] == pytest.approx(r["tflops"] * 10 / 9)
    # % of a measured ceiling: the point's range against the ceiling's own range
    assert r["pct_mem_lo"] == pytest.approx(100 * r["eff_gbps_lo"] / 31.0)
    assert r["pct_mem_hi"] == pytest.approx(100 * r["eff_gbps_hi"] / 27.0)
    assert r["pct_mem_lo"] < r["pct_mem_peak"] < r["pct_mem_hi"]
    assert H.rng(r, "pct_mem_peak") == (r["pct_mem_lo"], r["pct_mem_hi"])


def test_ceilings_say_when_the_peak_comes_from_the_sweep():
    c = ceilings(PEAKS, None, "fp32", sweep_best_tflops=0.5, sweep_best_range=(0.4, 0.6))
    assert c["measured_tflops_source"] == "best sweep point" and not c["peak_independent"]
    assert c["peak_tflops_range"] == (0.4, 0.6)
    c = ceilings(PEAKS, None, "fp32", sweep_best_tflops=0.1)
    assert c["peak_independent"] and c["peak_tflops_range"] == (0.18, 0.21)


def test_peaks_table_has_value_range_spread_and_count():
    df = peaks_table(PEAKS)
    comp = df[df.ceiling.str.startswith("compute")].iloc[0]
    assert (comp["value"], comp["lo"], comp["hi"], comp["n_repeats"]) == (0.2, 0.18, 0.21, 3)
    assert bool(comp["used"])
    mem = df.set_index("ceiling")
    assert bool(mem.loc["memory (copy, STREAM-like)", "used"])
    assert not bool(mem.loc["memory (triad, STREAM-like)", "used"])


# ---- decode -----------------------------------------------------------------------------


def record(batch, steps, warmup=2):
    kept = steps[warmup:]
    s = sorted(kept)
    med = s[len(s) // 2]
    return {"batch": batch, "status": "ok", "dtype": "fp32", "prompt_len": 8,
            "weight_bytes": 1e6, "kv_bytes_per_step": 0.0, "warmup_steps": warmup,
            "tpot_ms_steps": steps, "tpot_ms_p50": med, "tpot_ms_p10": min(kept),
            "tpot_ms_p90": max(kept), "tokens_per_s": batch / med * 1e3,
            "timed_steps": len(kept), "gpu_util_raw": [10, 20, 30, 40]}  # fmt: skip


def test_decode_table_ranges():
    recs = [record(1, [9, 9, 10, 10, 10, 11, 12]), record(4, [9, 9, 20, 20, 21, 22, 30])]
    steps = {1: [{"wall_us": 12000.0, "busy_us": 9000.0}, {"wall_us": 14000.0, "busy_us": 9400.0}]}
    df = DT.decode_table(recs, PEAKS, steps).set_index("batch")
    b4 = df.loc[4]
    assert b4["scaling_efficiency"] == pytest.approx(10 / 21)
    assert b4["scaling_efficiency_lo"] == pytest.approx(10 / 30)  # TPOT(1) p10 / TPOT(4) p90
    assert b4["scaling_efficiency_hi"] == pytest.approx(12 / 20)
    assert b4["tokens_per_s_lo"] == pytest.approx(4 / 30 * 1e3)
    assert df.loc[1, "tpot_rel_iqr"] == pytest.approx((11 - 10) / 10)
    assert df.loc[1, "profiled_busy_ms"] == pytest.approx(9.2)
    assert df.loc[1, "profiled_step_ms"] == pytest.approx(13.0)
    assert pd.isna(df.loc[4, "profiled_busy_ms"])
    # napkin from the measured bandwidth's range: 1 MB at 27-31 GB/s
    assert df.loc[1, "napkin_ms_lo"] == pytest.approx(1e6 / 31e9 * 1e3)
    assert df.loc[1, "napkin_ms_hi"] == pytest.approx(1e6 / 27e9 * 1e3)
    assert df.loc[1, "gpu_util_p10_pct"] == pytest.approx(13.0)


def test_class_shares_carry_their_per_step_range_and_partial_phases_are_marked():
    rows = {1: [
        {"phase": "decode", "kernel": "aten::mm", "rows": 1, "calls": 2, "time_us": 8.0,
         "share": 0.8},
        {"phase": "decode", "kernel": "aten::_scaled_dot_product_flash_attention_for_cpu",
         "rows": None, "calls": 2, "time_us": 2.0, "share": 0.2},
        {"phase": "prefill", "kernel": "flash_fwd_kernel", "rows": None, "calls": 0,
         "time_us": 0.5, "share": 0.005},
    ]}  # fmt: skip
    steps = {1: [
        {"busy_us": 5.0, "by_class": {"gemv": 4.5, "attention": 0.5}},
        {"busy_us": 5.0, "by_class": {"gemv": 3.5, "attention": 1.5}},
    ]}  # fmt: skip
    from hwlab.inventory import load_rules

    _, cls = DT.inventory_tables(rows, load_rules(), steps)
    att = cls[(cls.phase == "decode") & (cls["class"] == "attention")].iloc[0]
    assert (att.share, att.share_lo, att.share_hi, att.n_steps) == (0.2, 0.1, 0.3, 2)
    assert H.class_ranges(cls, "attention")[1] == (0.1, 0.2, 0.3)
    pre = cls[cls.phase == "prefill"]
    assert (pre.itemised < DT.ITEMISED).all()  # only one kernel's share given: not itemised


# ---- Lab 3: what beta is and when the fit is poor ----------------------------------------------


def test_r2_and_fit_quality():
    sizes = [8, 1e3, 1e5, 1e7]
    times = [1e-4 + n / 1e9 for n in sizes]
    assert r2_log_time(sizes, times, 1e-4, 1e9) == pytest.approx(1.0)
    assert fit_quality(0.01, 0.999) == "good"
    assert fit_quality(0.4, 0.7) == "poor" and fit_quality(None, None) == "unknown"


def test_lab3_says_what_beta_is_and_flags_a_poor_fit():
    sizes = [2**k for k in range(3, 23, 2)]
    # a latency plateau, then a slope that bends down at the end (beta fit undershoots)
    t_us = [300 + n / 1e3 * (1 if n < 2**20 else 0.5) for n in sizes]
    g = pd.DataFrame({
        "backend": "gloo", "world_size": 2, "nodes": 1, "dtype": "fp32", "status": "ok",
        "size_bytes": sizes, "time_us": t_us, "time_min_us": [t * 0.9 for t in t_us],
        "time_max_us": [t * 1.1 for t in t_us], "correct": True, "reason": None,
        "busbw_gbps": [n / (t * 1e-6) / 1e9 for n, t in zip(sizes, t_us, strict=True)],
    })  # fmt: skip
    fit = pd.DataFrame([fit_group(g)])
    assert fit.loc[0, "busbw_at_max_lo_gbps"] < fit.loc[0, "busbw_at_max_gbps"]
    run = FD.Run(folder=REPO, name="x", device={}, peaks={}, allreduce=g, allreduce_fit=fit)
    text = " ".join(FD.lab3_lines(run))
    assert "tends to as n → ∞" in text and "R² = " in text and "rms relative residual" in text
    fit.loc[0, "fit_quality"] = "poor"
    fit.loc[0, "beta_busbw_gbps"] = 0.5 * fit.loc[0, "busbw_at_max_lo_gbps"]
    text = " ".join(FD.lab3_lines(run))
    assert "describes this sweep poorly" in text and "β lies below the busbw measured" in text
    # the largest size's busbw range is formulas.point_range of its times
    from hwlab.formulas import point_range

    top = g.iloc[-1]
    assert (fit.loc[0, "busbw_at_max_lo_gbps"], fit.loc[0, "busbw_at_max_hi_gbps"]) == (
        pytest.approx(point_range(top.busbw_gbps, top.time_us, top.time_min_us, top.time_max_us))
    )


# ---- calibration: no tautology, noise flagged ----------------------------------------------


def test_operating_line_never_quotes_the_baseline_as_its_own_multiple():
    op = {"baseline_batch": 1, "batch": None, "min_efficiency": 0.5, "flagged": [],
          "uncertain_batches": []}  # fmt: skip
    line = FD.operating_line(op)
    assert "no batch beyond 1" in line and "1× the smallest" not in line
    op.update(flagged=[{"batch": 4, "efficiency": 6.42, "range": [5.0, 7.0]}])
    assert "6.42" in FD.operating_line(op) and "not used" in FD.operating_line(op)


def test_agreement_line():
    sweet = H.Finding("sweet_spot", "t", H.FAILS, "x", {"M": 256, "tied_M": [256]})
    op = {"batch": 16, "baseline_batch": 1, "noise_limited": False, "uncertain_batches": []}
    assert "differ beyond noise" in FD.agreement_line(op, sweet)
    op["noise_limited"], op["uncertain_batches"] = True, [64]
    assert "noise-limited" in FD.agreement_line(op, sweet)
    sweet.evidence = {"M": 16, "tied_M": [16, 64]}
    assert "they agree" in FD.agreement_line(op, sweet)


# ---- CPU matrix engine -----------------------------------------------------------------------


def test_cpu_matrix_engine_from_flags():
    epyc = cpu_matrix_engine(["fpu", "avx512f", "avx512_bf16", "avx512_vnni"])
    assert not epyc["amx"] and epyc["bf16_dot_product"] == ["avx512_bf16", "avx512_vnni"]
    assert "not a matrix engine" in epyc["note"]
    spr = cpu_matrix_engine(["avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"])
    assert spr["amx"] and spr["matrix_dtypes"] == ["bf16", "int8"]
    assert spr["amx_flags"] == ["amx_bf16", "amx_int8", "amx_tile"]
    assert cpu_flags("processor : 0\nflags : fpu amx_bf16\n") == ["fpu", "amx_bf16"]
    assert cpu_flags("Features : fp asimd bf16\n") == ["fp", "asimd", "bf16"]  # arm64


def test_hwlab_catalog_prints_dashes_not_nan():
    out = subprocess.run(
        [sys.executable, "-m", "hwlab.cli", "catalog", "--dtype", "fp8"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    ).stdout  # fmt: skip
    assert "—" in out and not any(cell.strip() == "nan" for cell in out.split("|"))


def test_best_point_one_scan_for_records_and_tables():
    """sweep_best* (records) and best*_from_table (the table) agree on the same points."""
    recs = [
        {"status": "ok", "dtype": "bf16", "tflops": 5.0, "gpu_time_us": 10.0,
         "time_min_us": 8.0, "time_max_us": 12.5},
        {"status": "ok", "dtype": "bf16", "tflops": 2.0, "gpu_time_us": 10.0,
         "time_min_us": 9.0, "time_max_us": 11.0},
        {"status": "skipped", "dtype": "fp8", "tflops": None},
    ]  # fmt: skip
    assert R.sweep_best(recs) == {"bf16": 5.0}
    assert R.sweep_best_ranges(recs) == {"bf16": pytest.approx((4.0, 6.25))}
    df = pd.DataFrame([{**r, "tflops_lo": 4.0, "tflops_hi": 6.25} for r in recs])
    assert R.best_from_table(df) == R.sweep_best(recs)
    assert R.best_range_from_table(df) == {"bf16": (4.0, 6.25)}
    from hwlab.formulas import point_range

    assert R.point_range is point_range
