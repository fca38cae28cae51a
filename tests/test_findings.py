"""findings.md: the writeup regenerated from data — reference run, a real CPU run, the
headline functions on synthetic data, and comparison figures."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO, TINY, smk, write_config

from hwlab import findings as FD
from hwlab import headlines as H

REF = REPO / "config" / "reference" / "rtx5080"


@pytest.fixture(scope="module")
def reference():
    return FD.load_run(REF)


def test_reference_reaches_the_writeups_lab2_conclusions(reference):
    """Fed only the writeup's RTX 5080 data: ridge at M=128, plateau ~100-102 TFLOP/s,
    M=64 sweet spot."""
    by = {f.key: f for f in FD.headlines(reference)}
    assert by["ridge"].holds and by["ridge"].evidence["measured_ridge_M"] == 128
    lo, hi = by["plateau"].evidence["low_tflops"], by["plateau"].evidence["best_tflops"]
    assert 98.5 <= lo <= hi <= 102
    assert by["plateau"].holds  # the sparse peak is ruled out
    assert by["sweet_spot"].evidence["M"] == 64
    # and Lab 1a's: the switch between batch 1 and 32, attention never the bottleneck
    assert by["gemv_switch"].holds and by["gemv_switch"].evidence["switch_batch"] == 32
    assert by["attention"].holds


def test_reference_renders_every_section(reference):
    md = FD.render(reference)
    for section in FD.SECTIONS:
        assert f"## {section}" in md
    assert "M=128" in md and "117.3" in md
    lab1b = md.split("\n## Lab 1b")[1].split("\n## ")[0]
    assert "flash_fwd_kernel" in lab1b
    assert re.search(r"\| SM Busy +\| +1\.13 +\| +31\.5 +\| +27\.876 +\|", lab1b), lab1b
    assert "SM Busy 1.13% → 31.5%" in md  # cross-reference cell from the Lab 1b data


def test_lab2_peaks_line_has_no_exponent_numbers(reference, monkeypatch):
    """A catalog GPU's peaks (H100-like: 3,350 GB/s, 1,979 TFLOP/s) read as prose."""
    ceil = {"basis": "spec", "dtype": "bf16", "spec_tflops": 989.4,
            "spec_sparse_tflops": 1978.9, "spec_bw_gbps": 3350.0}  # fmt: skip
    monkeypatch.setattr(FD, "roofline_ceilings", lambda run: ceil)
    peaks = next(x for x in FD.lab2_method_lines(reference) if x.startswith("- Peaks"))
    assert "e+" not in peaks
    assert "989 TFLOP/s dense bf16, sparse 1,979, 3,350 GB/s" in peaks


def test_cpu_run_findings(tiny_run):
    res = tiny_run[2]
    md = (res / "findings.md").read_text()
    for section in FD.SECTIONS:
        assert f"## {section}" in md, section
    # each skipped stage states its reason in place of its table
    sections = {s.split("\n", 1)[0]: s for s in md.split("\n## ")[1:]}
    lab1b = sections["Lab 1b — NCU Speed-of-Light"]
    assert "skipped: no GPU (device kind cpu)" in lab1b
    lab3 = sections["Lab 3 — AllReduce Sweep"]
    assert "nccl" in lab3 and "skipped" in lab3
    # no unfilled placeholders or stray Python values
    for bad in (r"\{", r"\}", r"\bNone\b", r"\bnan\b", r"\bNaN\b"):
        assert not re.search(bad, md), bad
    data = json.loads((res / "findings.json").read_text())
    keys = [f["key"] for f in data["findings"]]
    assert keys == [
        "gpu_util",
        "gemv_switch",
        "regimes",
        "ridge",
        "plateau",
        "sweet_spot",
        "attention",
        "decode_overhead",
        "cache",
        "hierarchy_principle",
        "hierarchy_knees",
        "precision_ratio",
        "prefill_mfu",
        "graph_gap",
        "decode_model",
    ]
    by = {f["key"]: f for f in data["findings"]}
    assert by["gpu_util"]["holds"] is None and "CPU" in by["gpu_util"]["text"]
    assert by["decode_overhead"]["evidence"]["napkin_ms"] > 0
    assert data["verdicts"] == {f["key"]: f["verdict"] for f in data["findings"]}
    # the CPU's GEMV -> matrix-engine switch: not evaluable without a matrix engine; with
    # AMX only in a bf16 model (the tiny config's dtype decides)
    dev = json.loads((res / "device.json").read_text())
    if not dev["cpu_matrix_engine"]["amx"]:
        assert by["gemv_switch"]["verdict"] == H.NOT_EVALUABLE
        assert "no matrix engine" in by["gemv_switch"]["text"]
    else:
        assert (
            by["gemv_switch"]["verdict"] != H.NOT_EVALUABLE
            or "model.dtype" in (by["gemv_switch"]["text"])
        )
    # §8's TP cells: a degree, '> N' (computed, none reaches the threshold) or '— (why)'
    # (not computed) — never a '> 64' standing in for a missing input
    table = md.split("| Model | Writeup practice |")[1].split("\n\n")[0]
    rows = [ln.split(" | ") for ln in table.splitlines()[2:] if ln.startswith("|")]
    assert rows
    for cells in rows:
        for c in (cells[2], cells[4]):
            assert re.fullmatch(r"\d+|> \d+|— \(.+\)", c), c
    # the GPU-Util line names the headline that says why
    n = keys.index("gpu_util") + 1
    assert f"not evaluable on this run (headline {n} says why)" in md


def test_cpu_run_findings_read_cleanly(tiny_run):
    """The slips of the first findings.md: heading levels, a duplicated heading, a hidden
    column named in a note, exponent numbers, a skip reason repeated four times."""
    md = (tiny_run[2] / "findings.md").read_text()
    levels = [len(m.group(1)) for m in re.finditer(r"^(#+) ", md, flags=re.M)]
    assert levels[0] == 1, levels
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), levels
    assert md.count("Lab 2 — Roofline") == 1
    assert "gpu_time_us" not in md
    assert not re.search(r"\d\.\d+e[+-]\d\d", md), re.findall(r".{30}\d\.\d+e[+-]\d\d", md)
    # the NCU skip reason: once in the headline, once in Lab 1b, not repeated per batch
    reasons = FD.load_run(tiny_run[2]).reasons["ncu"]
    assert reasons, "the tiny run's NCU stage records why it was skipped"
    skip = reasons[0].split(": ", 2)[-1]
    assert 1 <= md.count(skip) <= 2, (skip, md.count(skip))
    # spread and repeat counts in the tables
    for table, col in (("roofline", "spread (%)"), ("decode", "spread (%)"),
                       ("peaks", "spread (%)")):  # fmt: skip
        assert col in (tiny_run[2] / "tables" / f"{table}.md").read_text(), table
    assert "Measured ceilings" in md and "(max − min) / median" in md


def test_configured_record_paths_leave_stale_files_out(tiny_run, tmp_path):
    """Given the workflow's record paths, load_run reads those (validated) and not a stale
    record of a batch no longer configured, which the folder glob would pick up."""
    import shutil

    from hwlab.records import RecordError

    res = tiny_run[2]
    run_dir = tmp_path / "run"
    shutil.copytree(res, run_dir)
    configured = sorted(str(p) for p in (run_dir / "decode").glob("b*.json"))
    stale = run_dir / "decode" / "b9999.json"
    stale.write_text(Path(configured[0]).read_text())
    globbed = FD.stage_records(run_dir, "decode")
    assert len(globbed) == len(configured) + 1
    read = FD.stage_records(run_dir, "decode", {"decode": configured})
    assert len(read) == len(configured)
    # validated: the stale copy says another batch than its b9999 path
    with pytest.raises(RecordError):
        FD.stage_records(run_dir, "decode", {"decode": [str(stale)]})
    run = FD.load_run(run_dir, record_paths={"decode": configured})
    assert not any("9999" in r for r in run.reasons["decode"])


def test_compare_with_reference(tiny_run, tmp_path):
    wd, original, _ = tiny_run
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["findings"] = {"compare_with": "config/reference/rtx5080"}
    try:
        proc = smk(wd, "all", configfile=write_config(tmp_path / "cmp.yaml", cfg))
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = tiny_run[2] / "figures" / "compare"
        for name in FD.COMPARE_FIGURES:
            assert (out / f"{name}.png").stat().st_size > 1000, name
        md = (tiny_run[2] / "findings.md").read_text()
        assert "## Comparison with rtx5080" in md
        for name in FD.COMPARE_FIGURES:
            assert f"(figures/compare/{name}.png)" in md
    finally:  # the shared run back to its own config (env.json records the digest)
        assert smk(wd, "all", configfile=original).returncode == 0
    # compare_with unset again: no comparison figure outlives the setting
    assert not out.exists()
    assert "## Comparison with" not in (tiny_run[2] / "findings.md").read_text()


# ---- the headline functions on synthetic data ------------------------------------------


def decode(util, tpot1=12.0, napkin1=1.79, batches=(1, 32, 64, 128), tpots=None, spread=0.0,
           util_spread=0.0, busy=None):  # fmt: skip
    """A decode table: ``spread`` is the relative p10/p90 half-width of every TPOT."""
    tpots = tpots or [tpot1, 13.0, 19.4, 40.0]
    p10 = [t * (1 - spread) for t in tpots]
    p90 = [t * (1 + spread) for t in tpots]
    tok = [b / t * 1e3 for b, t in zip(batches, tpots, strict=True)]
    eff = [tpots[0] / t for t in tpots]
    return pd.DataFrame({
        "batch": batches, "status": "ok", "dtype": "bf16", "tpot_ms_p50": tpots,
        "tpot_ms_p10": p10, "tpot_ms_p90": p90, "tokens_per_s": tok,
        "tokens_per_s_lo": [b / t * 1e3 for b, t in zip(batches, p90, strict=True)],
        "tokens_per_s_hi": [b / t * 1e3 for b, t in zip(batches, p10, strict=True)],
        "scaling_efficiency": eff,
        "scaling_efficiency_lo": [p10[0] / t for t in p90],
        "scaling_efficiency_hi": [p90[0] / t for t in p10],
        "napkin_ms": [napkin1] * len(batches),
        "overhead_ratio": [t / napkin1 for t in tpots], "bw_gbps": 3350,
        "bw_basis": "spec", "gpu_util_pct": [util] * len(batches),
        "gpu_util_p10_pct": [None if util is None else util * (1 - util_spread)] * len(batches),
        "gpu_util_p90_pct": [None if util is None else util * (1 + util_spread)] * len(batches),
        "gpu_util_reason": [None] * len(batches),
        "profiled_busy_ms": [busy] * len(batches),
        "profiled_step_ms": [None] * len(batches),
    })  # fmt: skip


def lab1b(sm, dram):
    return pd.DataFrame(
        {
            "metric": ["sm_throughput", "dram_throughput"],
            "label": ["a", "b"],
            "unit": ["%", "%"],
            "b1": [sm, dram],
            "b32": [30.0, 9.0],
        }
    )


def test_gpu_util_four_outcomes():
    assert H.gpu_util_finding(decode(89.0), lab1b(1.13, 1.75)).verdict == H.HOLDS
    assert H.gpu_util_finding(decode(20.0), lab1b(1.13, 1.75)).verdict == H.FAILS
    assert H.gpu_util_finding(decode(89.0), lab1b(40.0, 1.75)).verdict == H.FAILS
    # NVML samples 45-55%: straddles the 50% "busy" line
    f = H.gpu_util_finding(decode(50.0, util_spread=0.1), lab1b(1.13, 1.75))
    assert f.verdict == H.INCONCLUSIVE and "GPU-Util busy" in f.text
    # NCU's launches spread across the 10% "idle" line
    launches = pd.DataFrame({"batch": [1] * 5, "kernel": ["flash"] * 3 + ["other"] * 2,
                             "metric": ["dram_throughput"] * 5,
                             "value": [8.0, 9.5, 12.0, 40.0, 50.0]})  # fmt: skip
    f = H.gpu_util_finding(decode(89.0), lab1b(1.13, 9.5), ncu_launches=launches)
    assert f.verdict == H.INCONCLUSIVE and f.evidence["ncu_dram_range"] == [8.0, 12.0]
    f = H.gpu_util_finding(decode(None), None, ["batches 1, 32: skipped: no GPU"])
    assert f.verdict == H.NOT_EVALUABLE and "no GPU" in f.text and f.text.count("no GPU") == 1


def classes(gemv, tc, att, batches=(1, 16, 32, 64), spread=0.0, main="tc_gemm"):
    rows = []
    for b, g, t, a in zip(batches, gemv, tc, att, strict=True):
        for c, v in (("gemv", g), (main, t), ("attention", a), ("other", 1 - g - t - a)):
            rows.append({"batch": b, "phase": "decode", "class": c, "share": v, "time_us": v,
                         "share_lo": max(0.0, v - spread), "share_hi": v + spread})  # fmt: skip
    return pd.DataFrame(rows)


CUDA = {"kind": "cuda"}


def test_gemv_switch_four_outcomes():
    f = H.gemv_switch_finding(
        classes([0.66, 0.6, 0.0, 0.0], [0.14, 0.2, 0.81, 0.85], [0.02] * 4), CUDA
    )
    assert f.verdict == H.HOLDS and f.evidence["switch_batch"] == 32
    assert f.evidence["before_batch"] == 16
    f = H.gemv_switch_finding(classes([0.7, 0.5, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4], [0.02] * 4), CUDA)
    assert f.verdict == H.FAILS
    # batch 32: GEMV 8% and tensor cores 52%, each +/- 5% over the profiled steps
    f = H.gemv_switch_finding(
        classes([0.66, 0.6, 0.08, 0.3], [0.14, 0.2, 0.52, 0.45], [0.02] * 4, spread=0.05), CUDA
    )
    assert f.verdict == H.INCONCLUSIVE and "straddles the thresholds" in f.text
    f = H.gemv_switch_finding(None, CUDA)
    assert f.verdict == H.NOT_EVALUABLE


def test_gemv_switch_on_a_cpu_needs_a_matrix_engine():
    cls = classes([0.9, 0.0, 0.0, 0.0], [0.0, 0.8, 0.85, 0.85], [0.02] * 4, main="gemm")
    me = {"amx": False, "amx_flags": [], "bf16_dot_product": ["avx512_bf16", "avx512_vnni"]}
    epyc = {"kind": "cpu", "cpu_matrix_engine": me}
    f = H.gemv_switch_finding(cls, epyc, "bf16")
    assert f.verdict == H.NOT_EVALUABLE
    assert "not a matrix engine" in f.text and "avx512_bf16" in f.text
    me = {"amx": True, "amx_flags": ["amx_bf16", "amx_int8", "amx_tile"], "bf16_dot_product": []}
    sapphire = {"kind": "cpu", "cpu_matrix_engine": me}
    f = H.gemv_switch_finding(cls, sapphire, "fp32")
    assert f.verdict == H.NOT_EVALUABLE and "model.dtype: bf16" in f.text
    f = H.gemv_switch_finding(cls, sapphire, "bf16")  # AMX: bf16 GEMMs are the engine's path
    assert f.verdict == H.HOLDS and f.evidence["switch_batch"] == 16 and "AMX" in f.text


def test_attention_four_outcomes():
    f = H.attention_finding(classes([0.6] * 4, [0.1] * 4, [0.02, 0.01, 0.03, 0.02]))
    assert f.verdict == H.HOLDS
    f = H.attention_finding(classes([0.6] * 4, [0.1] * 4, [0.02, 0.01, 0.2, 0.02]))
    assert f.verdict == H.FAILS and "20%" in f.text
    f = H.attention_finding(classes([0.6] * 4, [0.1] * 4, [0.02, 0.01, 0.045, 0.02], spread=0.02))
    assert f.verdict == H.INCONCLUSIVE and "2.5–6.5% straddles 5%" in f.text
    assert H.attention_finding(None).verdict == H.NOT_EVALUABLE


def test_attention_text_names_the_largest_class_per_batch():
    """Not 'the largest class is gemm, gemv at every batch'."""
    cls = classes([0.9, 0.0, 0.0, 0.0], [0.0, 0.8, 0.85, 0.85], [0.02] * 4, main="gemm")
    f = H.attention_finding(cls)
    assert "gemv at batch 1 (90%) and gemm at batches 16, 32, 64 (80–85%)" in f.text


def test_decode_overhead_four_outcomes():
    f = H.decode_overhead_finding(decode(None))
    assert f.verdict == H.HOLDS and f.evidence["ratio"] == pytest.approx(12 / 1.79)
    assert H.decode_overhead_finding(decode(None, tpot1=2.0)).verdict == H.FAILS
    # 3.6 ms +/- 10%: 3.24-3.96 ms = 1.8-2.2x the bound, straddling 2x
    f = H.decode_overhead_finding(decode(None, tpot1=3.58, spread=0.1))
    assert f.verdict == H.INCONCLUSIVE and "within noise" in f.text
    assert H.decode_overhead_finding(None).verdict == H.NOT_EVALUABLE


def test_decode_overhead_says_where_the_gap_is():
    """The writeup's 'the gap is framework overhead' is measured: the profiled steps' time
    inside ops against the timed step."""
    f = H.decode_overhead_finding(decode(None, busy=2.0), device_kind="cuda")
    assert f.verdict == H.HOLDS and f.evidence["outside_ops_ms"] == pytest.approx(10.0)
    assert "framework overhead dominates" in f.text and "inside kernels" in f.text
    f = H.decode_overhead_finding(decode(None, busy=11.0))  # 92% of the step inside aten ops
    assert f.verdict == H.FAILS and "not framework overhead" in f.text
    # 12 ms +/- 20% with 6 ms inside ops: 38-58% outside, straddling 50%
    f = H.decode_overhead_finding(decode(None, busy=6.0, spread=0.2))
    assert f.verdict == H.INCONCLUSIVE and "within noise" in f.text
    # no profile: the ratio alone, and it says the attribution is not measured
    f = H.decode_overhead_finding(decode(None))
    assert f.verdict == H.HOLDS and "no profiled step time" in f.text


def test_decode_overhead_profile_longer_than_the_step_beyond_noise():
    """The profile exceeding the timed step is said only outside the step's p10-p90."""
    inside = H.decode_overhead_finding(decode(None, busy=13.0, spread=0.1))  # 10.8-13.2 ms
    assert not inside.evidence["profile_exceeds_step"] and "took longer" not in inside.text
    beyond = H.decode_overhead_finding(decode(None, busy=14.0, spread=0.1))
    assert beyond.evidence["profile_exceeds_step"] and "took longer" in beyond.text


def test_attention_second_order_is_one_rule():
    """Second-order: attention's largest share below SECOND_ORDER x the largest class's."""
    small = H.attention_finding(classes([0.6] * 4, [0.1] * 4, [0.02, 0.01, 0.2, 0.02]))
    assert small.evidence["second_order"] and "far below the largest class" in small.text
    big = H.attention_finding(classes([0.6] * 4, [0.1] * 4, [0.02, 0.01, 0.4, 0.02]))
    assert not big.evidence["second_order"] and "comparable to the largest" in big.text
    assert small.thresholds["second_order"] == H.SECOND_ORDER


def test_decode_regimes_and_operating_point():
    d = decode(None)
    regimes = H.decode_regimes(d)
    assert regimes[0]["regime"].startswith("flat")  # 1 -> 32: 12 -> 13 ms
    assert regimes[-1]["regime"].startswith("proportional")  # 64 -> 128: 19.4 -> 40 ms
    op = H.operating_point(d)
    # efficiency at 64: 12 / 19.4 = 62%; at 128: 30%
    assert op["batch"] == 64 and not op["noise_limited"] and not op["flagged"]


def test_operating_point_is_never_the_baseline_and_flags_superlinear_efficiency():
    # only batch 1 keeps >= 50%: no operating batch (not the tautology "batch 1 at 100%")
    op = H.operating_point(decode(None, tpots=[12.0, 30.0, 60.0, 120.0]))
    assert op["batch"] is None
    # a batch-1 baseline slowed by noise makes batch 32 read 6.4x efficient: flagged, not used
    op = H.operating_point(decode(None, tpots=[20.0, 3.0, 19.4, 40.0]))
    assert [x["batch"] for x in op["flagged"]] == [32] and op["flagged"][0]["efficiency"] > 6
    assert op["batch"] == 128
    # batch 128 at 45-55%: the choice is noise-limited
    op = H.operating_point(decode(None, tpots=[12.0, 13.0, 19.4, 24.0], spread=0.05))
    assert op["batch"] == 64 and op["noise_limited"] and op["uncertain_batches"] == [128]
