"""The decode model (where decode time goes) on constructed data: every term against
hand-computed values, the overhead fit, held-out validation, the trace split, the graph
columns of the decode table and the headlines' four verdicts."""

import gzip
import json

import pandas as pd
import pytest
from helpers import REPO

from hwlab import decode_findings as DF
from hwlab import decode_graph as DG
from hwlab import decode_model as DM
from hwlab import decode_ops as DO
from hwlab import decode_tables as DT
from hwlab import formulas as F
from hwlab import headlines as H
from hwlab.model import read_arch

TINY_ARCH = read_arch(REPO / "config" / "models" / "qwen2-tiny.json")


# ---- shapes and the isolated terms ----------------------------------------------------------


def test_linear_shapes_of_qwen2_tiny():
    got = {s["name"]: (s["N"], s["K"], s["per_step"]) for s in DO.linear_shapes(TINY_ARCH)}
    # hidden 384, 6 heads x 64, 2 KV heads, FFN 1536, vocab 32768, 4 layers
    assert got == {
        "q_proj": (384, 384, 4),
        "k_proj": (128, 384, 4),
        "v_proj": (128, 384, 4),
        "o_proj": (384, 384, 4),
        "gate_proj": (1536, 384, 4),
        "up_proj": (1536, 384, 4),
        "down_proj": (384, 1536, 4),
        "lm_head": (32768, 384, 1),
    }
    # every weight once per step: 4 x (2x384x384 + 2x128x384 + 3x1536x384) + 32768x384,
    # the model's parameter count minus the 1-D norms and q/k/v biases
    assert DM.linear_bytes(DO.linear_shapes(TINY_ARCH), "fp32") == 4 * 21_233_664


def test_qwen25_3b_linears_match_the_writeups_ffn_shape():
    arch = read_arch(REPO / "config" / "models" / "qwen2.5-3b.json")
    got = {s["name"]: (s["N"], s["K"]) for s in DO.linear_shapes(arch)}
    assert got["gate_proj"] == (11008, 2048)  # Lab 2's K=2048, N=11008
    assert got["k_proj"] == (256, 2048) and got["lm_head"] == (151936, 2048)


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(DO.ArchError, match="intermediate_size"):
        DO.linear_shapes(
            {
                "model_type": "x",
                "hidden_size": 8,
                "num_attention_heads": 2,
                "num_hidden_layers": 1,
                "vocab_size": 10,
            }
        )


def test_context_and_cache_lengths():
    # timed steps 4..23 see 64 + i + 1 positions: mean 78.5, rounded half to even
    assert DO.eager_context_len(64, 4, 24) == 78
    assert DG.cache_len(64, 24, 3) == 88 and DG.cache_len(16, 2, 5) == 16 + 5
    assert DO.flush_bytes(85e6, 32 << 20) == 85_000_000
    assert DO.flush_bytes(6e9, 60 << 20) == 256 << 20


LIN = [
    {"name": "a", "N": 2, "K": 3, "per_step": 4},
    {"name": "lm", "N": 5, "K": 3, "per_step": 1},
]
GEMM = {
    (2, 3, 1): 10.0,
    (5, 3, 1): 100.0,
    (2, 3, 2): 9.0,
    (5, 3, 2): 90.0,  # M=2 faster than M=1 (as the writeup's 5080 GEMV)
    (2, 3, 4): 20.0,
    (5, 3, 4): 150.0,
}


def test_matmul_and_weights_compute_terms():
    assert DM.matmul_ms(LIN, GEMM, 1) == pytest.approx((4 * 10 + 100) / 1e3)
    assert DM.matmul_ms(LIN, GEMM, 4) == pytest.approx((4 * 20 + 150) / 1e3)
    assert DM.matmul_ms(LIN, GEMM, 8) is None  # not measured at M=8
    # weights = least matmul time at any measured M <= batch, compute = the rest
    assert DM.weights_compute(LIN, GEMM, 1) == pytest.approx((0.14, 0.0))
    assert DM.weights_compute(LIN, GEMM, 2) == pytest.approx((0.126, 0.0))
    assert DM.weights_compute(LIN, GEMM, 4) == pytest.approx((0.126, 0.230 - 0.126))
    # per linear: calls x its own shape's time (4 x 20 µs, 1 x 150 µs)
    assert DM.matmul_ms(LIN[:1], GEMM, 4) == pytest.approx(0.08)
    assert DM.matmul_ms(LIN[1:], GEMM, 4) == pytest.approx(0.15)
    assert DM.attention_ms({("eager", 4): 25.0}, "eager", 4, 4) == pytest.approx(0.1)
    assert DM.attention_ms({("eager", 4): 25.0}, "graph", 4, 4) is None


def test_bound_and_transition():
    assert DM.bound({"weights": 3, "compute": 1, "attention": 0.1, "overhead": 2}) == "weights"
    assert DM.bound({"weights": 3, "compute": None, "attention": 0, "overhead": 0}) is None
    rows = pd.DataFrame(
        {"batch": [1, 4, 16, 64], "bound": ["weights", "weights", "compute", "compute"]}
    )
    tr = DM.weights_transition(rows)
    assert (tr["last_weights"], tr["first_after"], tr["to"]) == (4, 16, "compute")
    over = pd.DataFrame({"batch": [1, 8], "bound": ["overhead", "compute"]})
    assert DM.weights_transition(over)["first_after"] is None
    assert "No batch is bound by weights" in DF.transition_sentence(over.assign(mode="eager"))


# ---- the overhead fit -------------------------------------------------------------------------


def test_fit_overhead_hand_computed():
    # 100 alpha + 1 beta = 300 µs, 100 alpha + 64 beta = 930 µs -> beta 10, alpha 2.9
    f = DM.fit_overhead([(1, 100, 0.3), (64, 100, 0.93)])
    assert f["alpha_us_per_op"] == pytest.approx(2.9) and f["beta_us_per_seq"] == pytest.approx(10)
    assert DM.overhead_ms(f, 100, 16) == pytest.approx((290 + 160) / 1e3)
    # one batch: beta = 0, alpha = overhead / ops
    assert DM.fit_overhead([(4, 200, 1.0)]) == {"alpha_us_per_op": 5.0, "beta_us_per_seq": 0.0}
    # overhead falling with the batch would need beta < 0: constrained to 0, alpha refitted
    f = DM.fit_overhead([(1, 100, 1.0), (64, 100, 0.5)])
    assert f["beta_us_per_seq"] == 0 and f["alpha_us_per_op"] == pytest.approx(7.5)
    with pytest.raises(ValueError):
        DM.fit_overhead([])


def test_fit_host_and_other():
    # batch 1 host-bound (TPOT 1.0 ms > busy 0.5): alpha = 1000 µs / 100 kernels
    h = DM.fit_host([(100, 1.0, 0.5), (100, 2.0, 2.5)])
    assert h["alpha_us_per_op"] == pytest.approx(10.0) and h["host_fit"].startswith("host-bound")
    h = DM.fit_host([(100, 1.0, 1.5), (200, 3.0, 3.2)])  # never host-bound: an upper bound
    assert h["alpha_us_per_op"] == pytest.approx(10.0) and h["host_fit"].startswith("upper")
    o = DM.fit_other([(1, 0.2), (9, 1.0)])  # 200 = a + b, 1000 = a + 9 b
    assert o["other_a_us"] == pytest.approx(100) and o["other_b_us_per_seq"] == pytest.approx(100)


def _ops():
    return {
        "status": "ok",
        "dtype": "fp32",
        "linears": LIN,
        "gemm": [
            {"N": n, "K": k, "M": m, "status": "ok", "time_us": t}
            for (n, k, m), t in {**GEMM, (2, 3, 16): 50.0, (5, 3, 16): 400.0}.items()
        ],
        "sdpa": [
            {"mode": "eager", "batch": b, "status": "ok", "time_us": t}
            for b, t in ((1, 5.0), (2, 5.0), (4, 10.0), (16, 40.0))
        ],
    }


def _rec(batch, tpot, mode_kind="cpu", steps=None):
    steps = steps or [tpot] * 10
    return {
        "batch": batch,
        "status": "ok",
        "layers": 2,
        "device_kind": mode_kind,
        "tpot_ms_p50": tpot,
        "tpot_ms_p10": min(steps),
        "tpot_ms_p90": max(steps),
        "tpot_ms_steps": steps,
        "warmup_steps": 0,
        "weight_bytes": 1e6,
        "kv_bytes_per_step": 0.0,
        # the rest of a decode record's required fields (hwlab/records.py validates them)
        "reason": None,
        "dtype": "fp32",
        "prompt_len": 16,
        "prefill_ms": 1.0,
        "tokens_per_s": batch / tpot * 1e3,
        "timed_steps": len(steps),
    }


def _terms(ops_per_step, mm=0.0, att=0.0, other=0.0):
    return {
        "ops_per_step": ops_per_step,
        "trace_matmul_ms": mm,
        "trace_attention_ms": att,
        "trace_other_ops_ms": other,
        "profiled_step_ms": None,
        "trace_gaps_ms": None,
    }


def test_model_table_sum_hand_computed_and_held_out():
    """CPU: fit on 1 and 16, batch 4 held out and predicted from the fit alone."""
    recs = {"eager": [_rec(1, 0.45), _rec(4, 0.6), _rec(16, 1.6)]}
    terms = {"eager": {1: _terms(100, mm=0.14), 4: _terms(100, mm=0.25), 16: _terms(100, 1.0)}}
    df, meta = DM.model_table(
        ops=_ops(),
        records=recs,
        terms=terms,
        fit_batches=[1, 16],
        predict_batches=[2],
        goal_pct=15,
        bw_gbps=1.0,
    )
    r = df.set_index("batch")
    # residuals: b1 0.45 - 0.14 - 2*5e-3 = 0.30 ms; b16 1.6 - (4*50+400)/1e3 - 2*40e-3 = 0.92
    # -> 100 alpha + beta = 300, 100 alpha + 16 beta = 920: beta = 41.33, alpha = 2.5867
    beta, alpha = 620 / 15, (300 - 620 / 15) / 100
    assert meta["fits"]["eager"]["beta_us_per_seq"] == pytest.approx(beta)
    assert meta["fits"]["eager"]["alpha_us_per_op"] == pytest.approx(alpha)
    assert list(r["role"]) == ["fit", "predicted", "held out", "fit"]
    pred4 = (4 * 20 + 150) / 1e3 + 2 * 10e-3 + (100 * alpha + 4 * beta) / 1e3
    assert r.loc[4, "predicted_ms"] == pytest.approx(pred4)
    assert r.loc[4, "error_pct"] == pytest.approx(100 * (pred4 - 0.6) / 0.6)
    assert r.loc[1, "error_pct"] == pytest.approx(0) and r.loc[16, "error_pct"] == pytest.approx(0)
    # the predicted-only batch 2 (never decoded): GEMMs + SDPA measured, no TPOT
    assert r.loc[2, "status"] == "predicted" and pd.isna(r.loc[2, "tpot_ms"])
    assert r.loc[2, "predicted_ms"] == pytest.approx(0.126 + 0.01 + (100 * alpha + 2 * beta) / 1e3)
    # the per-term check against the trace: errors add up to the total error
    e = r.loc[4]
    total = e["err_matmul_ms"] + e["err_attention_ms"] + e["err_overhead_ms"]
    assert total == pytest.approx(e["predicted_ms"] - e["tpot_ms"])
    assert e["trace_overhead_ms"] == pytest.approx(0.6 - 0.25)
    assert r.loc[1, "napkin_ms"] == pytest.approx(1.0)  # 1 MB at 1 GB/s
    assert r.loc[1, "weights_gbps"] == pytest.approx((4 * 6 + 15) * 4 / 0.14e6)


def test_held_out_prediction_does_not_use_the_held_out_measurement():
    recs = {"eager": [_rec(1, 0.45), _rec(4, 0.6), _rec(16, 1.6)]}
    terms = {"eager": {1: _terms(100), 4: _terms(100), 16: _terms(100)}}
    kw = dict(
        ops=_ops(), terms=terms, fit_batches=[1, 16], predict_batches=[], goal_pct=15, bw_gbps=None
    )
    a, _ = DM.model_table(records=recs, **kw)
    recs["eager"][1] = _rec(4, 5.0)  # the held-out batch measured 8x slower
    terms["eager"][4] = _terms(900)  # and with another op count
    b, _ = DM.model_table(records=recs, **kw)
    pa, pb = a.set_index("batch"), b.set_index("batch")
    assert pa.loc[4, "predicted_ms"] == pytest.approx(pb.loc[4, "predicted_ms"])
    assert pb.loc[4, "error_pct"] < -80 and not pb.loc[4, "within_goal"]
    # a fit batch moves the prediction
    recs["eager"][0] = _rec(1, 0.9)
    c, _ = DM.model_table(records=recs, **kw)
    assert c.set_index("batch").loc[4, "predicted_ms"] > pa.loc[4, "predicted_ms"]


def test_worst_term_names_the_wrong_term():
    # batch 4's trace shows matmuls at 0.5 ms where the isolated GEMMs say 0.23, attention
    # and the rest as predicted (0.02 ms; 0.2587 + 4 x 0.04133 = 0.424 ms): TPOT 0.944
    alpha_beta = (300 - 620 / 15) / 100 * 100 + 4 * 620 / 15
    tpot4 = 0.5 + 0.02 + alpha_beta / 1e3
    recs = {"eager": [_rec(1, 0.45), _rec(4, tpot4), _rec(16, 1.6)]}
    terms = {
        "eager": {1: _terms(100, 0.14), 4: _terms(100, mm=0.5, att=0.02), 16: _terms(100, 0.6)}
    }
    df, _ = DM.model_table(
        ops=_ops(),
        records=recs,
        terms=terms,
        fit_batches=[1, 16],
        predict_batches=[],
        goal_pct=15,
        bw_gbps=None,
    )
    r = df.set_index("batch").loc[4]
    assert r["worst_term"] == "matmul" and r["err_matmul_ms"] == pytest.approx(0.23 - 0.5)
    assert r["err_overhead_ms"] == pytest.approx(0) and r["err_attention_ms"] == pytest.approx(0)


def test_model_table_max_on_an_asynchronous_device():
    """CUDA eager: step = max(host, busy); batch 1 host-bound, batch 16 device-bound."""
    recs = {"eager": [_rec(1, 2.0, "cuda"), _rec(4, 2.0, "cuda"), _rec(16, 2.2, "cuda")]}
    # other kernels: 0.1 ms at batch 1, 1.6 ms at 16 -> a = 0, b = 100 µs per sequence
    terms = {"eager": {b: _terms(100, other=0.1 * b) for b in (1, 4, 16)}}
    df, meta = DM.model_table(
        ops=_ops(),
        records=recs,
        terms=terms,
        fit_batches=[1, 16],
        predict_batches=[],
        goal_pct=10,
        bw_gbps=None,
    )
    f = meta["fits"]["eager"]
    assert f["combine"] == "max"
    assert f["other_a_us"] == pytest.approx(0, abs=1e-9)
    assert f["other_b_us_per_seq"] == pytest.approx(100)
    # batch 1 host-bound: busy 0.14 + 0.01 + 0.1 < 2.0 -> alpha = 2000 µs / 100 kernels;
    # batch 16 device-bound (busy 0.6 + 0.08 + 1.6 = 2.28 > 2.2): no information on alpha
    assert f["alpha_us_per_op"] == pytest.approx(20.0)
    r = df.set_index("batch")
    assert r.loc[4, "predicted_ms"] == pytest.approx(2.0)  # host: 100 x 20 µs
    assert r.loc[4, "host_ms"] == pytest.approx(2.0) and r.loc[4, "other_ms"] == pytest.approx(0.4)
    assert r.loc[4, "overhead_ms"] == pytest.approx(2.0 - 0.23 - 0.02)
    assert r.loc[16, "predicted_ms"] == pytest.approx(2.28)  # busy
    assert DM.combine_rule("cuda", "graph") == "sum" and DM.combine_rule("cpu", "eager") == "sum"


def test_error_interval_from_the_median_ci():
    # two warm-up steps far off, then 15 kept: 0.9 x5, 1.0 x5, 1.1 x5. Order statistics of
    # n = 15: P(Bin(15, 1/2) <= 3) = 576 / 2^15, so [x_(4), x_(12)] covers 96.5% (k = 4;
    # k = 5 would cover 88%): CI [0.9, 1.1] of the kept steps, the warm-ups not in it
    steps = [50.0, 0.01] + [1.0] * 5 + [1.1] * 5 + [0.9] * 5
    recs = {"eager": [_rec(1, 0.45), _rec(16, 1.6)]}
    recs["eager"].append({**_rec(4, 1.0, steps=steps), "warmup_steps": 2})
    terms = {"eager": {b: _terms(100) for b in (1, 4, 16)}}
    df, _ = DM.model_table(
        ops=_ops(),
        records=recs,
        terms=terms,
        fit_batches=[1, 16],
        predict_batches=[],
        goal_pct=15,
        bw_gbps=None,
    )
    r = df.set_index("batch").loc[4]
    assert (r["tpot_ci_lo_ms"], r["tpot_ci_hi_ms"]) == (0.9, 1.1)
    assert (r["tpot_ci_lo_ms"], r["tpot_ci_hi_ms"]) == F.median_ci(steps[2:])
    # the error's interval is the prediction against each end of the CI
    pred = r["predicted_ms"]
    assert r["error_lo_pct"] == pytest.approx(100 * (pred - 1.1) / 1.0)
    assert r["error_hi_pct"] == pytest.approx(100 * (pred - 0.9) / 1.0)
    assert r["error_lo_pct"] <= r["error_pct"] <= r["error_hi_pct"]
    assert DM.abs_interval(-3, 5) == (0.0, 5) and DM.abs_interval(-8, -2) == (2, 8)


# ---- the trace split ---------------------------------------------------------------------------


def _cpu_trace():
    """Two decode steps: step 0 = linear(mm 30 µs) + sdpa 10 µs + add 5 µs in 100 µs;
    step 1 = the same but the mm took 300 µs (a disturbed step); a prefill before."""
    ev = []

    def x(name, ts, dur, cat="cpu_op", dims=None):
        e = {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "pid": 1, "tid": 1}
        if dims is not None:
            e["args"] = {"Input Dims": dims}
        ev.append(e)

    x("hwlab::prefill", 0, 50, "user_annotation")
    x("aten::mm", 10, 20, dims=[[16, 8], [8, 8]])
    for i, (start, mm) in enumerate(((100, 30), (400, 300))):
        dur = 100 if i == 0 else 370
        x("hwlab::decode_step", start, dur, "user_annotation")
        x("aten::linear", start + 5, mm + 4, dims=[[2, 8], [8, 8]])
        x("aten::mm", start + 7, mm, dims=[[2, 8], [8, 8]])
        x("aten::scaled_dot_product_attention", start + mm + 15, 10)
        x("aten::add", start + mm + 30, 5)
    return {"traceEvents": ev}


def test_trace_step_terms_cpu_hand_computed():
    from hwlab.inventory import load_rules

    t = DM.trace_step_terms(_cpu_trace(), load_rules())
    # per step: matmul = linear self 4 + mm self; attention 10; other 5; ops 4
    assert t["steps"] == 2 and t["ops_per_step"] == 4
    assert t["trace_matmul_ms"] == pytest.approx((34 + 304) / 2 / 1e3)  # median of 2
    assert t["trace_attention_ms"] == pytest.approx(0.010)
    assert t["trace_other_ops_ms"] == pytest.approx(0.005)
    assert t["profiled_step_ms"] == pytest.approx((100 + 370) / 2 / 1e3)
    # gaps: 100 - 49 = 51 and 370 - 319 = 51 µs outside every op
    assert t["trace_gaps_ms"] == pytest.approx(0.051)
    assert DM.trace_step_terms({"traceEvents": []}, load_rules()) == {}


def test_trace_step_terms_reads_older_kinetos_operator_category():
    """Older Kineto wrote CPU ops as ``Operator`` (hwlab.inventory reads both): the same
    split as the ``cpu_op`` trace, not an empty one."""
    from hwlab.inventory import load_rules

    trace = _cpu_trace()
    for e in trace["traceEvents"]:
        if e["cat"] == "cpu_op":
            e["cat"] = "Operator"
    assert DM.trace_step_terms(trace, load_rules()) == DM.trace_step_terms(
        _cpu_trace(), load_rules()
    )
    assert DM.trace_step_terms(trace, load_rules())["ops_per_step"] == 4


def test_trace_step_terms_cuda_by_launch_correlation():
    from hwlab.inventory import load_rules

    ev = [
        {"ph": "X", "cat": "user_annotation", "name": "hwlab::decode_step", "ts": 0, "dur": 50},
        {
            "ph": "X",
            "cat": "gpu_user_annotation",
            "name": "hwlab::decode_step",
            "ts": 10,
            "dur": 40,
        },
    ]
    for i, (name, dur) in enumerate(
        (("gemv2T_kernel_val", 10), ("flash_fwd_splitkv_kernel", 5), ("elementwise_kernel", 2))
    ):
        ev.append(
            {
                "ph": "X",
                "cat": "cuda_runtime",
                "name": "cudaLaunchKernel",
                "ts": 1 + i,
                "dur": 1,
                "args": {"correlation": i},
            }
        )
        ev.append(
            {
                "ph": "X",
                "cat": "kernel",
                "name": name,
                "ts": 10 + 12 * i,
                "dur": dur,
                "args": {"correlation": i},
            }
        )
    t = DM.trace_step_terms({"traceEvents": ev}, load_rules())
    assert t["ops_per_step"] == 3 and t["trace_matmul_ms"] == pytest.approx(0.010)
    assert t["trace_attention_ms"] == pytest.approx(0.005)
    assert t["profiled_step_ms"] == pytest.approx(0.040)  # the GPU-side annotation
    assert t["trace_gaps_ms"] == pytest.approx((40 - 17) / 1e3)  # GPU idle


def test_kernels_csv_fallback():
    rows = [
        {"phase": "decode", "kernel": "aten::mm", "class": "gemm", "calls": 6, "time_us": 300.0},
        {
            "phase": "decode",
            "kernel": "aten::add",
            "class": "elementwise",
            "calls": 4,
            "time_us": 30.0,
        },
        {"phase": "prefill", "kernel": "aten::mm", "class": "gemm", "calls": 9, "time_us": 999.0},
    ]
    t = DM.kernels_terms(rows, 2)
    assert t["trace_matmul_ms"] == pytest.approx(0.15) and t["ops_per_step"] == 5
    assert t["trace_other_ops_ms"] == pytest.approx(0.015) and t["trace_gaps_ms"] is None


# ---- config helpers ----------------------------------------------------------------------------


def test_graph_and_fit_batches():
    d = {"batches": [1, 4, 16, 64], "mode": ["eager", "graph"], "graph_batches": [16, 1]}
    assert DG.graph_batches(d) == [1, 16]
    assert DG.graph_batches({**d, "graph_batches": []}) == [1, 4, 16, 64]
    assert DG.graph_batches({**d, "mode": ["eager"]}) == []
    assert DG.fit_batches(d, {"fit_batches": []}) == [1, 64]
    assert DG.fit_batches({"batches": [2, 1]}, {"fit_batches": []}) == [1]
    assert DG.fit_batches(d, {"fit_batches": [4]}) == [4]
    errs = DG.config_errors(
        {"decode": {**d, "graph_batches": [8]}, "decode_model": {"fit_batches": [1, 4, 16, 64]}}
    )
    assert len(errs) == 2 and "decode.graph_batches: [8]" in errs[0]
    assert "leave at least one out" in errs[1]
    assert DG.config_errors({"decode": d, "decode_model": {"fit_batches": [3]}})[0].startswith(
        "decode_model.fit_batches: [3]"
    )


# ---- the decode table's graph columns ----------------------------------------------------------


def test_graph_columns_of_the_decode_table():
    df = pd.DataFrame(
        {
            "batch": [1, 4],
            "status": ["ok", "ok"],
            "tpot_ms_p50": [12.0, 14.0],
            "napkin_ms": [2.0, 2.1],
        }
    )
    g = [
        {
            "batch": 1,
            "status": "ok",
            "tpot_ms_p50": 4.0,
            "tpot_ms_p10": 3.9,
            "tpot_ms_p90": 4.2,
            "compile_s": 30.0,
            "fxgraph_cache_hit": 0,
            "fxgraph_cache_miss": 2,
        }
    ]
    out = DT.graph_columns(df, g)
    r = out.set_index("batch")
    assert r.loc[1, "graph_speedup"] == pytest.approx(3.0)
    assert r.loc[1, "graph_overhead_ratio"] == pytest.approx(2.0)
    assert r.loc[1, "gap_removed"] == pytest.approx((12 - 4) / (12 - 2))
    assert r.loc[1, "graph_fxgraph_cache"] == "miss" and r.loc[1, "graph_compile_s"] == 30
    assert pd.isna(r.loc[4, "graph_tpot_ms_p50"]) and r.loc[4, "graph_status"] is None
    assert DT.gap_removed(2.0, 1.0, 3.0) is None  # no gap to remove
    skipped = DT.graph_columns(df, [{"batch": 4, "status": "skipped", "reason": "no g++"}])
    assert skipped.set_index("batch").loc[4, "graph_reason"] == "no g++"
    assert "graph batch 4: skipped: no g++" in DT.graph_notes(
        [{"batch": 4, "status": "skipped", "reason": "no g++"}]
    )


# ---- headlines: holds / does not hold / too noisy / not evaluable ------------------------------


def _model_df(rows):
    cols = {c: None for c in DM.COLUMNS}
    return pd.DataFrame([{**cols, **r} for r in rows], columns=DM.COLUMNS)


BASE = H.Finding(
    "decode_overhead",
    "Decode overhead vs the napkin bound",
    H.HOLDS,
    "asserted",
    {"batch": 1, "napkin_ms": 2.0},
    {"overhead_ratio": 2.0},
)


def _split_row(tpot, lo, hi, mm, att=0.0, nap=2.0):
    return {
        "mode": "eager",
        "batch": 1,
        "role": "fit",
        "tpot_ms": tpot,
        "tpot_ci_lo_ms": lo,
        "tpot_ci_hi_ms": hi,
        "napkin_ms": nap,
        "trace_matmul_ms": mm,
        "trace_attention_ms": att,
        "napkin_bw_gbps": 100.0,
        "weights_gbps": 20.0,
    }


def test_decode_overhead_finding_four_verdicts():
    # 12 ms step, 2 ms bound, matmuls 3 ms: overhead 9 ms = 90% of the 10 ms gap
    f = DF.decode_overhead_finding(_model_df([_split_row(12, 11.9, 12.1, 3.0)]), BASE)
    assert f.verdict == H.HOLDS and f.key == "decode_overhead"
    assert f.evidence["split"]["overhead_share"] == pytest.approx(0.9)
    assert "asserted" not in f.text and "9 ms" in f.text
    f = DF.decode_overhead_finding(_model_df([_split_row(10, 9.9, 10.1, 8.5)]), BASE)
    assert f.verdict == H.FAILS and "20.0 GB/s" in f.text  # 1.5 of 8 ms: 19%
    assert "matmuls alone take 6.5 ms more than the whole napkin bound" in f.text
    # matmuls under the bound (1.5 < 2 ms), attention 7 ms: overhead 1.5 of the 8 ms gap;
    # no negative "more than the bound": matmuls + attention are 6.5 ms over it, 81%
    f = DF.decode_overhead_finding(_model_df([_split_row(10, 9.9, 10.1, 1.5, att=7.0)]), BASE)
    assert f.verdict == H.FAILS and "alone" not in f.text and " -" not in f.text
    assert "matmuls and attention take 6.5 ms more than the napkin bound, 81% of the gap" in (
        f.text
    )
    # share at CI lo 9.0: (9-6)/(7) = 0.43; at CI hi 15: 9/13 = 0.69 -> straddles 50%
    f = DF.decode_overhead_finding(_model_df([_split_row(11, 9.0, 15.0, 6.0)]), BASE)
    assert f.verdict == H.INCONCLUSIVE
    assert DF.decode_overhead_finding(None, BASE) is BASE  # no model: the base, untouched
    assert DF.decode_overhead_finding(_model_df([_split_row(1.5, 1.4, 1.6, 1.0)]), BASE) is BASE


def test_decode_overhead_finding_with_the_profiled_reading():
    from dataclasses import replace

    row = _model_df([_split_row(12, 11.9, 12.1, 3.0)])  # the model: overhead holds
    # the TPOT / napkin ratio itself undecided or failing: nothing to attribute
    for v in (H.FAILS, H.INCONCLUSIVE):
        base = replace(BASE, evidence={**BASE.evidence, "ratio_verdict": v})
        assert DF.decode_overhead_finding(row, base) is base
    # the profiled step agrees: holds; disagrees: the two readings leave it open
    agree = replace(BASE, evidence={**BASE.evidence, "framework_dominates": H.HOLDS})
    assert DF.decode_overhead_finding(row, agree).verdict == H.HOLDS
    ev = {**BASE.evidence, "framework_dominates": H.FAILS, "outside_ops_share": 0.1}
    f = DF.decode_overhead_finding(row, replace(BASE, evidence=ev))
    assert f.verdict == H.INCONCLUSIVE and "disagree" in f.text


def _pair(e, e_lo, e_hi, g, g_lo, g_hi, nap=2.0):
    return [
        {
            "mode": "eager",
            "batch": 1,
            "role": "fit",
            "tpot_ms": e,
            "tpot_ci_lo_ms": e_lo,
            "tpot_ci_hi_ms": e_hi,
            "napkin_ms": nap,
        },
        {
            "mode": "graph",
            "batch": 1,
            "role": "fit",
            "tpot_ms": g,
            "tpot_ci_lo_ms": g_lo,
            "tpot_ci_hi_ms": g_hi,
            "napkin_ms": nap,
            "matmul_ms": 1.5,
        },
    ]


def test_graph_records_are_the_decode_models_not_every_file(tmp_path):
    """Only the graph batches the decode model lists are read (validated): a record left by
    a batch no longer configured is not, and a listed record that is bad is an error."""
    from hwlab import records as R

    folder = tmp_path / "decode" / "graph"
    folder.mkdir(parents=True)
    (folder / "b1.json").write_text(json.dumps({**_rec(1, 3.0), "compile_s": 41.0}))
    (folder / "b8.json").write_text(json.dumps({**_rec(8, 9.0), "compile_s": 99.0}))
    model = _model_df(_pair(12, 11.9, 12.1, 3.0, 2.9, 3.1))
    got = DF.graph_records(tmp_path, model)
    assert [r["batch"] for r in got] == [1] and got[0]["compile_s"] == 41.0
    assert DF.graph_records(tmp_path, None) == []
    (folder / "b1.json").write_text(json.dumps({**_rec(1, 3.0), "batch": 2}))
    with pytest.raises(R.RecordError):
        DF.graph_records(tmp_path, model)


def test_graph_gap_finding_four_verdicts():
    f = DF.graph_gap_finding(
        _model_df(_pair(12, 11.9, 12.1, 3.0, 2.9, 3.1)),
        [{"batch": 1, "status": "ok", "compile_s": 41.0}],
    )
    assert f.verdict == H.HOLDS and f.evidence["pairs"][0]["removed"] == pytest.approx(0.9)
    assert "41 s" in f.text and "4×" in f.text
    f = DF.graph_gap_finding(_model_df(_pair(10, 9.9, 10.1, 9.5, 9.4, 9.6)))
    assert f.verdict == H.FAILS
    # removed between (8-7.5)/6 = 8% and (14-4)/12 = 83%
    f = DF.graph_gap_finding(_model_df(_pair(10, 8.0, 14.0, 6.0, 4.0, 7.5)))
    assert f.verdict == H.INCONCLUSIVE
    f = DF.graph_gap_finding(
        _model_df(_pair(10, 9, 11, 6, 5, 7)[:1]),
        [{"batch": 1, "status": "skipped", "reason": "no C++ compiler"}],
    )
    assert f.verdict == H.NOT_EVALUABLE and "no C++ compiler" in f.text


def _acc(errs, goal=15.0):
    rows = []
    for b, (e, lo, hi, role) in errs.items():
        rows.append(
            {
                "mode": "eager",
                "batch": b,
                "role": role,
                "tpot_ms": 10.0,
                "predicted_ms": 10 * (1 + e / 100),
                "error_pct": e,
                "error_lo_pct": lo,
                "error_hi_pct": hi,
                "goal_pct": goal,
                "worst_term": "matmul",
                "err_matmul_ms": e / 10,
                "matmul_ms": 8.0,
                "trace_matmul_ms": 8.0 - e / 10,
            }
        )
    return _model_df(rows)


def test_model_accuracy_finding_four_verdicts():
    f = DF.model_accuracy_finding(_acc({1: (2.0, 1, 3, "fit"), 4: (-9.0, -10, -8, "held out")}))
    assert f.verdict == H.HOLDS and f.thresholds == {"goal_pct": 15.0}
    assert "Worst held-out batch: 9.0%" in f.text
    f = DF.model_accuracy_finding(_acc({1: (2.0, 1, 3, "fit"), 4: (30.0, 25, 35, "held out")}))
    assert f.verdict == H.FAILS and "the matmul term is furthest" in f.text
    assert "predicted 8 ms, profiled 5 ms" in f.text
    f = DF.model_accuracy_finding(_acc({1: (2.0, 1, 3, "fit"), 4: (14.0, 8, 20, "held out")}))
    assert f.verdict == H.INCONCLUSIVE
    assert DF.model_accuracy_finding(None).verdict == H.NOT_EVALUABLE
    assert DF.model_accuracy_finding(_acc({})).verdict == H.NOT_EVALUABLE


def test_section_says_why_when_the_model_did_not_run(tmp_path):
    lines = DF.section_lines(tmp_path, {})
    assert lines[0] == f"## {DF.SECTION}" and "did not run here" in lines[2]


def test_write_decode_model_end_to_end_on_files(tmp_path):
    """The aggregation job on files: records, a CPU trace, ops.json, peaks.json."""
    from hwlab.io import write_json

    def trace(path):
        with gzip.open(path, "wt") as fh:
            json.dump(_cpu_trace(), fh)

    recs, traces, kernels = [], [], []
    for b, tpot in ((1, 0.45), (4, 0.6), (16, 1.6)):
        write_json(tmp_path / f"b{b}.json", {**_rec(b, tpot), "profile_steps": 2})
        trace(tmp_path / f"b{b}.trace.json.gz")
        (tmp_path / f"b{b}.kernels.csv").write_text("phase,kernel,rows,calls,time_us,share\n")
        recs.append(str(tmp_path / f"b{b}.json"))
        traces.append(str(tmp_path / f"b{b}.trace.json.gz"))
        kernels.append(str(tmp_path / f"b{b}.kernels.csv"))
    write_json(tmp_path / "ops.json", _ops())
    write_json(
        tmp_path / "peaks.json", {"device": {"kind": "cpu"}, "measured": {"mem_bw_gbps": 10.0}}
    )
    out = {k: str(tmp_path / f"m.{k}") for k in ("csv", "md", "png", "svg")}
    df = DM.write_decode_model(
        records=recs,
        kernels=kernels,
        traces=traces,
        graph_records=[],
        graph_kernels=[],
        graph_traces=[],
        ops_json=str(tmp_path / "ops.json"),
        peaks_json=str(tmp_path / "peaks.json"),
        classes_yaml=str(REPO / "config" / "kernel_classes.yaml"),
        fit_batches=[1, 16],
        predict_batches=[],
        goal_pct=15,
        out=out,
    )
    assert list(df["role"]) == ["fit", "held out", "fit"]
    assert (df["ops_per_step"] == 4).all()
    md = (tmp_path / "m.md").read_text()
    assert "Where decode time goes" in md and "held out" in md and "µs per op" in md
    assert (tmp_path / "m.png").stat().st_size > 0


def test_interleaved_rounds_stop_per_point():
    """One repeat of every open point per round; each point stops on its own rule."""
    from hwlab.device import Device

    dev = Device("cpu")
    order = []
    pts = {
        "a": (lambda: order.append("a"), None),
        "b": (lambda: order.append("b"), None),
    }
    p = dict(warmup=0, repeats=3, iters=2, target_spread=0.0, budget_s=0.0, max_repeats=0)
    got = DO.interleaved(dev, pts, p)
    assert {k: (s.n, s.stopped) for k, s in got.items()} == {"a": (3, "fixed"), "b": (3, "fixed")}
    assert order == ["a", "a", "b", "b"] * 3  # rounds, not one point after the other
    # a target no sample set can reach: max_repeats closes each point
    noisy = {"c": (lambda: sum(range(1000)), None)}
    p = dict(warmup=1, repeats=3, iters=1, target_spread=1e-12, budget_s=0.0, max_repeats=5)
    assert DO.interleaved(dev, noisy, p)["c"].stopped in ("max_repeats", "target")
    assert DO.interleaved(dev, noisy, p)["c"].n <= 5
