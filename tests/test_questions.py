"""§3, §5 and §8 pure functions against hand-computed values, and each headline's verdicts."""

import pandas as pd
import pytest

from hwlab import catalog
from hwlab import headlines as H
from hwlab import questions as Q

CATALOG = catalog.load()


# ---- §5 prefill FLOPs and MFU -------------------------------------------------------------


def test_prefill_flops_tiny_model_by_hand():
    # qwen2-tiny: 21,239,680 parameters, tied 32768 x 384 embedding, 4 layers, 6 heads of 64
    emb = 32768 * 384
    got = Q.prefill_flops(21_239_680, 1, 64, layers=4, heads=6, head_dim=64, embedding_params=emb)
    linear = 2 * (21_239_680 - emb) * 64  # 1,108,066,304: the layers, every token
    lm_head = 2 * emb * 1  # 25,165,824: the last position only
    attention = 2 * 1 * 4 * 6 * 64 * 64**2  # 12,582,912: causal half of QK^T and PV
    assert got == linear + lm_head + attention == 1_145_815_040


def test_prefill_flops_issue_formula_and_untied():
    assert Q.prefill_flops(3e9, 1, 128) == 2 * 3e9 * 128  # no architecture: 2 x N x tokens
    # untied: the embedding and the lm_head (10 each) are outside the layers
    assert Q.prefill_flops(100, 2, 5, embedding_params=10, tied=False) == 2 * 80 * 10 + 2 * 10 * 2


def test_mfu_and_peak_basis():
    assert Q.mfu_pct(1e12, 1.0, 10.0) == pytest.approx(10.0)
    assert Q.mfu_pct(1e12, 1.0, None) is None
    spec = {"spec": CATALOG["h100_sxm"], "spec_key": "h100_sxm", "measured": {}}
    assert Q.mfu_peak(spec, "bf16") == (989.4, "spec dense bf16 (h100_sxm)")
    meas = {"spec": None, "measured": {"tflops": {"fp32": 0.177}}}
    assert Q.mfu_peak(meas, "fp32")[0] == 0.177
    assert Q.mfu_peak(meas, "bf16")[0] is None


def test_prefill_mfu_columns():
    df = pd.DataFrame(
        [
            {"batch": 1, "status": "ok", "prefill_ms": 10.0, "prompt_len": 64, "dtype": "fp32"},
            {"batch": 4, "status": "oom", "prefill_ms": None, "prompt_len": 64, "dtype": "fp32"},
        ]
    )
    recs = [
        {"batch": 1, "status": "ok", "param_count": 1e9},
        {"batch": 4, "status": "oom", "param_count": 1e9},
    ]
    peaks = {"spec": None, "measured": {"tflops": {"fp32": 1.0}}}
    out = Q.prefill_mfu_columns(df, recs, peaks)
    # 2 x 1e9 x 64 = 1.28e11 FLOPs in 10 ms = 12.8 TFLOP/s... of a 1 TFLOP/s peak: 1280%
    assert out.loc[0, "prefill_flops"] == 1.28e11
    assert out.loc[0, "prefill_tflops"] == pytest.approx(12.8)
    assert out.loc[0, "prefill_mfu_pct"] == pytest.approx(1280.0)
    assert "2 x parameters x tokens" in out.loc[0, "mfu_peak_basis"]
    assert pd.isna(out.loc[1, "prefill_mfu_pct"])


def decode(mfus, weight_mb=6000.0, dtype="bf16"):
    rows = []
    for i, m in enumerate(mfus):
        r = {"batch": 2**i, "status": "ok", "weight_mb": weight_mb, "dtype": dtype,
             "prefill_mfu_pct": m, "mfu_peak_basis": "spec dense bf16 (h100_sxm)"}  # fmt: skip
        rows.append(r)
    return pd.DataFrame(rows)


def test_prefill_mfu_finding_verdicts():
    assert Q.prefill_mfu_finding(decode([3.0, 4.5])).verdict == H.HOLDS
    f = Q.prefill_mfu_finding(decode([3.0, 12.0]))
    assert f.verdict == H.FAILS and "batch 1" in f.text
    # one prefill timing per batch: read as exact, the band's edge included, and said so
    edge = Q.prefill_mfu_finding(decode([2.0, 5.0]))
    assert edge.verdict == H.HOLDS and "single prefill timing" in edge.text
    assert Q.prefill_mfu_finding(decode([1.99, 3.0])).verdict == H.FAILS
    # no MFU (no peak): not evaluable, the reachable undecided outcome
    nopeak = decode([float("nan")])
    assert Q.prefill_mfu_finding(nopeak).verdict == H.NOT_EVALUABLE
    tiny = Q.prefill_mfu_finding(decode([30.0], weight_mb=85.0, dtype="fp32"))
    assert tiny.verdict == H.NOT_EVALUABLE and "0.0213 B parameters" in tiny.text
    assert Q.prefill_mfu_finding(None).verdict == H.NOT_EVALUABLE


# ---- §3 precision ratio ---------------------------------------------------------------------


def test_precision_pair_reads_the_device():
    from hwlab.device import cpu_matrix_engine

    def cpu(*flags):
        return {"kind": "cpu", "cpu_matrix_engine": cpu_matrix_engine(list(flags))}

    assert Q.precision_pair({"kind": "cuda"})["fast"] == "fp8"
    amx = Q.precision_pair(cpu("amx_bf16", "amx_tile", "avx512_bf16"))
    assert (amx["fast"], amx["base"]) == ("bf16", "fp32") and "AMX" in amx["path"]
    # bf16 dot-product instructions on the vector units are not a matrix engine
    avx = Q.precision_pair(cpu("fma", "avx512f", "avx512_bf16"))
    assert avx["fast"] is None and "no matrix engine" in avx["reason"]
    assert "avx512_bf16" in avx["reason"]
    none = Q.precision_pair(cpu("avx2", "fma"))
    assert none["fast"] is None and "no bf16 instructions" in none["reason"]
    assert "device.json records no" in Q.precision_pair({"kind": "cpu"})["reason"]


def roof(fp8_big, fp8_small=None, spread=0.01):
    """Roofline rows as roofline.build_table writes them: TFLOP/s with its slowest and
    fastest repeat (tflops_lo, tflops_hi), here ``spread`` wide around the median."""
    rows = []
    for dt, big, small in (("bf16", 800.0, 40.0), ("fp8", fp8_big, fp8_small or 60.0)):
        for m, tf in ((1, small), (2048, big)):
            rows.append({"dtype": dt, "status": "ok", "reason": None, "l2": "warm", "M": m,
                         "ai": m, "tflops": tf, "tflops_lo": tf * (1 - spread / 2),
                         "tflops_hi": tf * (1 + spread / 2), "rel_spread": spread})  # fmt: skip
    return pd.DataFrame(rows)


def test_precision_ratio_verdicts():
    dev, spec = {"kind": "cuda"}, CATALOG["h100_sxm"]
    f = Q.precision_ratio_finding(roof(1600.0), dev, spec)
    assert f.verdict == H.HOLDS
    assert f.evidence["ends"]["compute-bound end"]["ratio"] == pytest.approx(2.0)
    assert f.evidence["ends"]["memory-bound end"]["ratio"] == pytest.approx(1.5)
    assert f.evidence["catalog"] == pytest.approx(1978.9 / 989.4)
    # mamf-finder's published H100 maxima: 1402.6 / 794.5 = 1.77x
    mamf = roof(800.0 * 1402.6 / 794.5)
    assert Q.precision_ratio_finding(mamf, dev, spec).verdict == H.FAILS
    assert Q.precision_ratio_finding(roof(1480.0, spread=0.2), dev).verdict == H.INCONCLUSIVE
    # the interval is the points' own slowest / fastest repeats: fast lo / base hi, ...
    c = Q.precision_ratio_finding(roof(1600.0, spread=0.2), dev).evidence["ends"]
    c = c["compute-bound end"]
    assert (c["lo"], c["hi"]) == pytest.approx((1440 / 880, 1760 / 720))


def test_precision_ratio_not_evaluable():
    only_bf16 = roof(1600.0)
    only_bf16 = only_bf16[only_bf16.dtype == "bf16"]
    f = Q.precision_ratio_finding(only_bf16, {"kind": "cuda"})
    assert f.verdict == H.NOT_EVALUABLE and "no fp8 points" in f.text
    skipped = roof(1600.0)
    skipped.loc[skipped.dtype == "fp8", ["status", "reason"]] = ["skipped", "needs sm_89"]
    assert "needs sm_89" in Q.precision_ratio_finding(skipped, {"kind": "cuda"}).text
    cpu = Q.precision_ratio_finding(only_bf16, {"kind": "cpu"})
    assert cpu.verdict == H.NOT_EVALUABLE and "the GEMM sweep has bf16" in cpu.text


# ---- §8 question 3: TP degree ------------------------------------------------------------------


def test_tp_fraction_70b_by_hand():
    # the writeup's example: 70B, batch 32, seq 2048, bf16, H100 989.4 TFLOP/s x 0.8
    kw = dict(params=70e9, d_model=8192, layers=80, batch=32, seq_len=2048,
              peak_tflops=989.4, efficiency=0.8, busbw_gbps=450.0)  # fmt: skip
    r = Q.tp_fraction(tp=8, **kw)
    # FLOPs 2*70e9*65536 + 2*32*80*8192*2048^2 = 9.351e15 -> / (8 * 791.5e12) = 1.4767 s
    assert r["compute_s"] == pytest.approx(1.4767, rel=1e-4)
    # 160 AllReduces x 1.0737e9 B x 1.75 (ring at 8) = 300.6 GB / 450 GB/s = 0.6681 s
    assert r["comm_s"] == pytest.approx(0.6681, rel=1e-4)
    assert r["share"] == pytest.approx(0.3115, rel=1e-3)
    th = Q.tp_threshold(**kw)
    shares = {x["tp"]: x["share"] for x in th["rows"]}
    assert shares[2] == pytest.approx(0.0607, rel=1e-2) and shares[4] == pytest.approx(
        0.1624, rel=1e-2
    )
    assert th["tp"] == 4  # the first degree at >= 10%
    assert Q.tp_threshold(threshold=0.99, **kw)["tp"] is None


def test_napkin_tp_inputs_and_rows():
    nt = pd.DataFrame(
        [
            {"batch": 32, "seq_len": 2048, "bytes_per_el": 2, "bandwidth": "writeup",
             "busbw_gbps": 750.0, "bandwidth_source": "writeup"},
            {"batch": 32, "seq_len": 2048, "bytes_per_el": 2,
             "bandwidth": "catalog NVLink 4 per direction", "busbw_gbps": 450.0,
             "bandwidth_source": "config/hardware.yaml h100_sxm: NVLink 4 900 GB/s"},
            {"batch": 32, "seq_len": 2048, "bytes_per_el": 2,
             "bandwidth": "measured gloo n=2 fp32 busbw at largest size", "busbw_gbps": 1.2,
             "bandwidth_source": "this run"},
        ]
    )  # fmt: skip
    inp = Q.napkin_tp_inputs(nt)
    assert (inp["catalog_key"], inp["catalog_busbw"], inp["measured_busbw"]) == (
        "h100_sxm",
        450.0,
        1.2,
    )
    rows = Q.tp_rows(inp, CATALOG, 0.8)
    by = {r["model"]: r for r in rows}
    assert by["Llama-2/3-70B (the writeup's example)"]["tp_catalog"] == 4
    assert by["Llama-2/3-70B (the writeup's example)"]["tp_measured"] == 2
    assert all(r["tp_catalog"] is not None for r in rows)
    assert all(r["tp_catalog"] is None for r in Q.tp_rows(inp, CATALOG, None))


def test_tp_cell_not_computed_beyond_range_and_reached():
    base = {"batch": 32, "seq_len": 2048, "bytes_per_el": 2, "catalog_key": "h100_sxm"}
    name = "Llama-2/3-70B (the writeup's example)"
    # no busbw measured (a CPU box): not computed, says why, never "> 64"
    cpu = {r["model"]: r for r in Q.tp_rows({**base, "catalog_busbw": 450.0}, CATALOG, 0.8)}
    cell = Q.tp_cell(cpu[name], "measured")
    assert cell.startswith("—") and "no measured busbw" in cell and ">" not in cell
    assert Q.tp_cell(cpu[name], "catalog") == "4"  # reached: the degree
    # a link so fast no degree reaches 10%: beyond the largest degree tried
    fast = {r["model"]: r for r in Q.tp_rows({**base, "catalog_busbw": 1e9}, CATALOG, 0.8)}
    assert fast[name]["tp_catalog"] is None and fast[name]["tp_catalog_why"] is None
    assert Q.tp_cell(fast[name], "catalog") == f"> {Q.TP_DEGREES[-1]}"
    # no GEMM efficiency: not computed on either link
    none = {r["model"]: r for r in Q.tp_rows({**base, "catalog_busbw": 450.0}, CATALOG, None)}
    assert "no GEMM efficiency" in Q.tp_cell(none[name], "catalog")


def test_d_model_trend_read_off_the_rows():
    inp = {"batch": 32, "seq_len": 2048, "bytes_per_el": 2, "catalog_key": "h100_sxm",
           "catalog_busbw": 450.0}  # fmt: skip
    rows = Q.tp_rows(inp, CATALOG, 0.8)
    text = Q.d_model_trend(rows, "catalog")
    assert "falls with d_model" in text and "d_model 4096" in text and "d_model 16384" in text
    up = [{"d_model": 1, "share_tp8_x": 0.1}, {"d_model": 2, "share_tp8_x": 0.2}]
    assert "rises with d_model" in Q.d_model_trend(up, "x")
    mixed = [*up, {"d_model": 3, "share_tp8_x": 0.15}]
    assert "not move monotonically" in Q.d_model_trend(mixed, "x")
    assert "No TP 8 share" in Q.d_model_trend(Q.tp_rows(inp, CATALOG, None), "catalog")


def test_run_efficiency():
    df = pd.DataFrame(
        [
            {
                "status": "ok",
                "pct_dense_peak": 80.0,
                "dtype": "bf16",
                "M": 1024,
                "peak_basis": "spec",
            },
            {
                "status": "ok",
                "pct_dense_peak": 30.0,
                "dtype": "bf16",
                "M": 16,
                "peak_basis": "spec",
            },
        ]
    )
    eff, how = Q.run_efficiency(df)
    assert eff == 0.8 and "M=1024" in how
    assert Q.run_efficiency(None)[0] is None


# ---- §8 question 4: tokens/s per watt ----------------------------------------------------------


def test_per_watt_by_hand():
    rows = {(r["model"], r["device"]): r for r in Q.per_watt_rows(CATALOG)}
    h = rows[("3B", "h100_sxm")]
    # 6 GB / 3350 GB/s = 1.791 ms -> 558.3 tok/s at 700 W = 0.798 tok/s/W
    assert h["tokens_per_s"] == pytest.approx(558.33, rel=1e-4)
    assert h["tokens_per_s_per_watt"] == pytest.approx(0.7976, rel=1e-3)
    nano = rows[("3B", "jetson_orin_nano_8gb")]
    assert nano["min_tp"] == 1 and nano["watts"] == 15  # the top of its 7-15 W range
    assert nano["tokens_per_s_per_watt"] == pytest.approx(68 / 6 / 15, rel=1e-6)
    h70 = rows[("70B", "h100_sxm")]
    # 140 GB with 20% of each GPU kept for the KV cache (napkin.kv_headroom): 2 x 64 GB is
    # too little, TP 4 fits: 35 GB / 3350 GB/s = 10.448 ms of weights per step, plus 160
    # AllReduces over NVLink 4 (6 us + 16 KiB x 1.5 / 450 GB/s each) = 0.9687 ms
    # -> 11.416 ms, 87.59 tok/s at 2800 W
    assert (h70["min_tp"], h70["watts"]) == (4, 2800)
    step_s = 35 / 3350 + 160 * (6e-6 + 16384 * 1.5 / 450e9)
    assert h70["tokens_per_s_per_watt"] == pytest.approx(1 / step_s / 2800, rel=1e-6)
    assert not rows[("70B", "rtx5080")]["eligible"]  # TP 16 without NVLink
    assert rows[("3B", "m3_ultra")]["tokens_per_s_per_watt"] is None  # no TDP
    for b in ("3B", "70B", "405B"):
        best = [r for (m, _), r in rows.items() if m == b and r["best"]]
        assert len(best) == 1
        elig = [r for (m, _), r in rows.items() if m == b and r["eligible"]]
        assert best[0]["tokens_per_s_per_watt"] == max(r["tokens_per_s_per_watt"] for r in elig)
    assert Q.tdp_watts({"tdp_w": [10, 25]}) == 25 and Q.tdp_watts({}) is None
