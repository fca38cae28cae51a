"""findings.md: the writeup regenerated from data — reference run, a real CPU run, the
headline functions on synthetic data, and comparison figures."""

import json
import re

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
        "graph_gap",
        "decode_model",
    ]
    by = {f["key"]: f for f in data["findings"]}
    assert by["gpu_util"]["holds"] is None and "CPU" in by["gpu_util"]["text"]
    assert by["decode_overhead"]["evidence"]["napkin_ms"] > 0


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
    finally:  # the shared run back to its own config (env.json records the digest)
        assert smk(wd, "all", configfile=original).returncode == 0


# ---- the headline functions on synthetic data ------------------------------------------


def decode(util, tpot1=12.0, napkin1=1.79, batches=(1, 32, 64, 128), tpots=None):
    tpots = tpots or [tpot1, 13.0, 19.4, 40.0]
    tok = [b / t * 1e3 for b, t in zip(batches, tpots, strict=True)]
    return pd.DataFrame({
        "batch": batches, "status": "ok", "tpot_ms_p50": tpots, "tokens_per_s": tok,
        "scaling_efficiency": [t / (b * tok[0]) for b, t in zip(batches, tok, strict=True)],
        "napkin_ms": [napkin1] * len(batches),
        "overhead_ratio": [t / napkin1 for t in tpots], "bw_gbps": 3350,
        "bw_basis": "spec", "gpu_util_pct": [util] * len(batches),
        "gpu_util_reason": [None] * len(batches),
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


def test_gpu_util_holds_and_not():
    assert H.gpu_util_finding(decode(89.0), lab1b(1.13, 1.75)).holds is True
    assert H.gpu_util_finding(decode(20.0), lab1b(1.13, 1.75)).holds is False
    assert H.gpu_util_finding(decode(89.0), lab1b(40.0, 1.75)).holds is False
    f = H.gpu_util_finding(decode(None), None, ["batch 1: skipped: no GPU"])
    assert f.holds is None and "no GPU" in f.text


def classes(gemv, tc, att, batches=(1, 16, 32, 64)):
    rows = []
    for b, g, t, a in zip(batches, gemv, tc, att, strict=True):
        for c, v in (("gemv", g), ("tc_gemm", t), ("attention", a), ("other", 1 - g - t - a)):
            rows.append({"batch": b, "phase": "decode", "class": c, "share": v, "time_us": v})
    return pd.DataFrame(rows)


def test_gemv_switch():
    f = H.gemv_switch_finding(
        classes([0.66, 0.6, 0.0, 0.0], [0.14, 0.2, 0.81, 0.85], [0.02] * 4), "cuda"
    )
    assert f.holds and f.evidence["switch_batch"] == 32 and f.evidence["before_batch"] == 16
    f = H.gemv_switch_finding(
        classes([0.7, 0.5, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4], [0.02] * 4), "cuda"
    )
    assert f.holds is False
    f = H.gemv_switch_finding(classes([0.7, 0.0, 0.0, 0.0], [0, 0, 0, 0], [0.02] * 4), "cpu")
    assert f.holds is False and f.evidence["gemv_gone_batch"] == 16 and "CPU" in f.text


def test_attention():
    assert H.attention_finding(classes([0.6] * 4, [0.1] * 4, [0.02, 0.01, 0.03, 0.02])).holds
    f = H.attention_finding(classes([0.6] * 4, [0.1] * 4, [0.02, 0.01, 0.2, 0.02]))
    assert f.holds is False and "20.0%" in f.text


def test_decode_overhead():
    f = H.decode_overhead_finding(decode(None))
    assert f.holds and f.evidence["ratio"] == pytest.approx(12 / 1.79)
    assert H.decode_overhead_finding(decode(None, tpot1=2.0)).holds is False


def test_decode_regimes_and_operating_point():
    d = decode(None)
    regimes = H.decode_regimes(d)
    assert regimes[0]["regime"].startswith("flat")  # 1 -> 32: 12 -> 13 ms
    assert regimes[-1]["regime"].startswith("proportional")  # 64 -> 128: 19.4 -> 40 ms
    op = H.operating_point(d)
    # efficiency at 64: 64/19.4 / (64 x 1/12) = 62%; at 128: 30%
    assert op["batch"] == 64
