"""Nsight Compute stage: the parser on a real report, the metric mapping, the derived Lab 1b
numbers against the writeup, the ncu command line, finding ncu, reading its verdict."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO

from hwlab import ncu
from hwlab.ncu_capture import find_ncu, metric_rejected, ncu_command, outcome, skip_reason

# ---- the real reports (see tests/fixtures/ncu/README.md) --------------------------------
FIXTURES = {
    "addConstDouble.ncu-rep": "c2769ee6a2639602cddb4f8be81c91d3e0d2c27a395bc399ada8fecaa1e8c85e",
    "addConstDouble3.ncu-rep": "45129758c2680fa786fc50c0574e2a8c30d1b51dd342d25fdb270634526c54b3",
}
FIXTURE_DIR = REPO / "tests" / "fixtures" / "ncu"


def _fixture(name: str) -> Path:
    path = FIXTURE_DIR / name
    if not path.is_file():
        msg = f"{path} is missing: run tests/fixtures/ncu/fetch-samples.sh"
        if os.environ.get("HWLAB_REQUIRE_FIXTURES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == FIXTURES[name], path
    return path


@pytest.fixture(scope="module")
def report() -> Path:
    return _fixture("addConstDouble.ncu-rep")


@pytest.fixture(scope="module")
def report3() -> Path:
    return _fixture("addConstDouble3.ncu-rep")


@pytest.fixture(scope="module")
def mapping() -> ncu.Mapping:
    return ncu.load_mapping()


def test_reads_every_launch_with_names_device_values_units(report, report3, mapping):
    (la,) = ncu.read_report(report, mapping)
    assert la.kernel == "addConstDouble"
    assert la.device == "NVIDIA RTX A2000"
    v = la.values
    assert v["sm_busy"].value == pytest.approx(47.398, abs=1e-3)
    assert v["sm_throughput"].value == pytest.approx(46.544, abs=1e-3)
    assert v["sm_throughput"].unit == "%"
    assert v["dram_throughput"].value == pytest.approx(91.749, abs=1e-3)
    assert v["dram_throughput"].ncu_metric == (
        "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed"
    )
    assert v["dram_throughput"].note is None  # the first name was there
    assert v["memory_throughput"].value == pytest.approx(204.358e9, rel=1e-4)
    assert v["memory_throughput"].unit == "byte/s"  # ncu 2022.3 writes byte/s
    assert v["elapsed_cycles"].value == 129977 and v["elapsed_cycles"].unit == "cycle"
    assert v["sm_active_cycles"].value == pytest.approx(127630.4, abs=0.1)
    assert v["duration"].value == 239008 and v["duration"].unit == "ns"
    assert v["l2_hit_rate"].value == pytest.approx(50.165, abs=1e-3)
    assert v["dram_bytes_read"].value == 25170048 and v["dram_bytes_read"].unit == "byte"
    assert ncu.read_report(report3, mapping)[0].values["duration"].value == 294336


def test_absent_metric_is_an_empty_cell_with_a_note(report):
    """A metric this report lacks under every name: an empty cell with a note."""
    data = {
        "metrics": {
            "legacy_dram": {
                "label": "DRAM Throughput (legacy name)",
                "names": ["dram__throughput.avg.pct_of_peak_sustained_elapsed"],
                "unit": "%",
            },
            "duration": {"label": "Duration", "names": ["gpu__time_duration.sum"], "unit": "ns"},
        }
    }
    m = ncu.parse_mapping(data)
    (la,) = ncu.read_report(report, m)
    v = la.values["legacy_dram"]
    assert v.value is None and v.ncu_metric is None
    assert v.note.startswith("absent from this report (tried ")
    assert "dram__throughput.avg.pct_of_peak_sustained_elapsed" in v.note
    df = ncu.tidy([la], batch=1)
    assert len(df) == 2
    legacy = df[df.metric == "legacy_dram"]
    assert legacy.value.isna().all() and legacy.note.str.contains("absent").all()
    assert df[df.metric == "duration"].value.iloc[0] == 239008


def test_fallback_name_is_used_and_recorded(report):
    """Candidates in order: the first the report lacks, the second it has."""
    data = {
        "metrics": {
            "dram_throughput": {
                "label": "DRAM Throughput",
                "names": [
                    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
                    "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed",
                ],
                "unit": "%",
            }
        }
    }
    m = ncu.parse_mapping(data)
    v = ncu.read_report(report, m)[0].values["dram_throughput"]
    assert v.value == pytest.approx(91.749, abs=1e-3)
    assert v.ncu_metric == "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed"
    assert "fallback name gpu__dram_throughput" in v.note
    assert "lacks dram__throughput" in v.note


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "hwlab.cli", "ncu-summary", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_cli_table(report):
    proc = _cli(report)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    header = [c.strip() for c in out.splitlines()[0].strip("|").split("|")]
    assert header[:4] == ["launch", "kernel", "SM Busy", "Compute (SM) Throughput"]
    rows = [ln for ln in out.splitlines() if "addConstDouble" in ln]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:5] == ["addConstDouble", "47.4%", "46.5%", "91.7%"]
    assert "129,977" in cells and "239" in cells  # cycles; ns -> µs
    assert "- device: NVIDIA RTX A2000" in out


def test_cli_csv(report, mapping):
    proc = _cli(report, "--csv")
    assert proc.returncode == 0, proc.stderr
    from io import StringIO

    df = pd.read_csv(StringIO(proc.stdout))
    assert list(df.columns[:6]) == ["kernel", "launch", "metric", "value", "unit", "label"]
    assert len(df) == len(mapping.metrics)
    row = df[(df.kernel == "addConstDouble") & (df.metric == "duration")].iloc[0]
    assert row.value == 239008 and row.unit == "ns"


def test_cli_bad_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.ncu-rep"
    bad.write_text("not a report")
    for path, text in ((bad, "no profiled kernel launch"), (tmp_path / "no.ncu-rep", "no such")):
        proc = _cli(path)
        assert proc.returncode == 2
        assert text in proc.stderr and "Traceback" not in proc.stderr


def test_decode_tables_from_a_captured_report(report, report3, tmp_path):
    """The table path for captured batches on two real reports (standing in for batch 1
    and batch 32), beside a skipped batch."""
    ncu_dir = tmp_path / "ncu"
    ncu_dir.mkdir()
    (ncu_dir / "b1.ncu-rep").write_bytes(report.read_bytes())
    (ncu_dir / "b32.ncu-rep").write_bytes(report3.read_bytes())
    common = {"kind": "decode", "clock_control": "base", "cache_control": "all"}
    records = []
    for b, status, reason, rep in (
        (1, "ok", None, "b1.ncu-rep"),
        (32, "ok", None, "b32.ncu-rep"),
        (64, "skipped", "no GPU (device kind cpu)", None),
    ):
        p = ncu_dir / f"b{b}.json"
        p.write_text(
            json.dumps({"status": status, "reason": reason, "batch": b, "report": rep} | common)
        )
        records.append(str(p))
    out = tmp_path / "tables"
    ncu.write_decode_tables(
        records,
        mapping_path=ncu.DEFAULT_METRICS,
        csv=out / "ncu.csv",
        md=out / "ncu_lab1b.md",
        lab1b_csv=out / "ncu_lab1b.csv",
    )
    tidy = pd.read_csv(out / "ncu.csv")
    assert list(tidy.columns[:6]) == ["batch", "kernel", "launch", "metric", "value", "unit"]
    assert set(tidy.batch) == {1, 32, 64}
    skipped = tidy[tidy.batch == 64]
    assert len(skipped) == 1 and skipped.status.iloc[0] == "skipped"
    lab = pd.read_csv(out / "ncu_lab1b.csv").set_index("metric")
    assert lab.loc["duration", "b1"] == pytest.approx(239.008)  # µs
    assert lab.loc["duration", "b32"] == pytest.approx(294.336)
    assert lab.loc["duration", "multiplier"] == pytest.approx(294336 / 239008)
    frac = lab.loc["sm_active_fraction"]
    assert frac.b1 == pytest.approx(100 * 127630.38 / 129977, abs=0.01)
    assert lab.loc["sm_busy", "multiplier"] == pytest.approx(37.300 / 47.398, abs=1e-3)
    md = (out / "ncu_lab1b.md").read_text()
    assert "| Metric | Batch=1 | Batch=32 | Batch=64 | Multiplier (batch 32 / 1) |" in md
    assert "| Kernel | addConstDouble | addConstDouble3 | skipped |" in md
    assert "| Duration (µs) | 239 | 294 | — | 1.23× |" in md
    assert "- batch 64: skipped: no GPU (device kind cpu)" in md
    assert "--clock-control base" in md


# ---- pure parts: no report needed --------------------------------------------------------
def test_shipped_mapping_has_the_lab_metrics(mapping):
    assert mapping.keys()[:8] == [
        "sm_busy",
        "sm_throughput",
        "dram_throughput",
        "memory_throughput",
        "sm_active_cycles",
        "elapsed_cycles",
        "duration",
        "l2_hit_rate",
    ]
    assert mapping.spec("dram_throughput").names == (
        "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed",
        "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    )
    assert {"dram__bytes_read.sum", "dram__bytes_read.sum.per_second"} <= set(mapping.requested())
    assert mapping.sections == (
        "SpeedOfLight",
        "ComputeWorkloadAnalysis",
        "MemoryWorkloadAnalysis",
        "LaunchStats",
        "Occupancy",
    )
    assert mapping.device_names == ("device__attribute_display_name",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "needs a 'metrics' mapping"),
        ({"metrics": {"x": {"label": "X", "unit": "%"}}}, "metrics.x: lacks 'names'"),
        ({"metrics": {"x": {"label": "X", "unit": "%", "names": []}}}, "metrics.x.names"),
        ({"metrics": {}}, "'metrics' is empty"),
    ],
)
def test_bad_mapping_names_the_entry(data, message):
    with pytest.raises(ValueError, match=message):
        ncu.parse_mapping(data, "m.yaml")


def test_lab1b_derived_numbers_match_the_writeup():
    """Writeup Lab 1b: flash_fwd_kernel at batch 1 and 32 on the RTX 5080."""
    f1 = ncu.sm_active_fraction(340, 17_643)
    assert round(100 * f1, 1) == 1.9  # "98% idle at batch 1"
    assert round(100 * (1 - f1)) == 98
    f32 = ncu.sm_active_fraction(10_961, 20_389)
    assert round(100 * f32) == 54  # "real work for ~54% of its wall-clock duration"
    assert round(ncu.multiplier(1.13, 31.5)) == 28  # SM Busy
    assert round(ncu.multiplier(340, 10_961)) == 32  # SM Active Cycles
    assert round(ncu.multiplier(17_643, 20_389), 2) == 1.16  # Elapsed Cycles
    assert ncu.multiplier(6.78, 7.90) == pytest.approx(1.16, abs=0.01)  # Duration
    assert round(ncu.multiplier(1.75, 8.5), 1) == 4.9  # DRAM Throughput %
    assert round(ncu.multiplier(16.5, 80.2), 1) == 4.9  # Memory Throughput GB/s
    assert round(ncu.multiplier(77.6, 36.9), 1) == 0.5  # L2 Hit Rate
    assert ncu.multiplier(None, 1.0) is None and ncu.multiplier(0.0, 1.0) is None
    assert ncu.sm_active_fraction(None, 10) is None and ncu.sm_active_fraction(5, 0) is None


def test_lab1b_table_from_summaries_shows_the_writeup_row():
    m = ncu.load_mapping()
    s1 = ncu.BatchSummary(1, "ok", kernel="flash_fwd_kernel", launches=4)
    s32 = ncu.BatchSummary(32, "ok", kernel="flash_fwd_kernel", launches=4)
    s1.values = {"sm_busy": 1.13, "sm_active_cycles": 340, "elapsed_cycles": 17_643}
    s32.values = {"sm_busy": 31.5, "sm_active_cycles": 10_961, "elapsed_cycles": 20_389}
    rows = ncu.lab1b_rows([s1, s32], m)
    md = ncu.lab1b_markdown([s1, s32], m, rows)
    assert "| SM Busy | 1.13% | 31.5% | 27.9× |" in md
    assert "| SM Active Cycles | 340 | 10,961 | 32.2× |" in md
    assert "| Elapsed Cycles | 17,643 | 20,389 | 1.16× |" in md
    assert "| SM-active fraction (SM active / elapsed cycles) | 1.93% | 53.8% | 27.9× |" in md
    assert "| L2 Hit Rate | — | — | — |" in md


def test_hbm_rates_print_without_exponents():
    """A GPU's DRAM rate in the mapping's .3g spec: 3,350 GB/s, never 3.35e+03."""
    m = ncu.load_mapping()
    spec = next(x for x in m.metrics if x.display_unit == "GB/s")
    assert ncu.display(3350.4, spec) == "3,350"
    assert ncu.display(812.34, spec) == "812"
    assert ncu.format_value(17_643.2, ",.0f") == "17,643"


def test_unit_conversion():
    assert ncu.convert(6780.0, "ns", "us") == pytest.approx(6.78)
    assert ncu.convert(16.5e9, "byte/second", "GB/s") == pytest.approx(16.5)
    assert ncu.convert(2.0, "msecond", "us") == pytest.approx(2000)
    assert ncu.convert(24e6, "byte", "MB") == pytest.approx(24)
    assert ncu.convert(1.0, "%", "GB/s") is None  # other dimension
    assert ncu.convert(1.0, "furlong", "us") is None
    assert ncu.convert(None, "ns", "us") is None


@pytest.mark.parametrize(
    ("name", "short"),
    [
        (
            "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 64, 64, 4, "
            "false, false, cutlass::bfloat16_t, Flash_kernel_traits<128, 64, 64, 4, "
            "cutlass::bfloat16_t> >, false, true, false, false, false, false, false>"
            "(pytorch_flash::Flash_fwd_params)",
            "flash_fwd_kernel",
        ),
        (
            "fmha_cutlassF_bf16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel"
            "<cutlass::bfloat16_t, cutlass::arch::Sm80, true, 64, 64, 64, true, true>::Params)",
            "fmha_cutlassF_bf16_aligned_64x64_rf_sm80",
        ),
        (
            "void cutlass::Kernel2<cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64_32x6_tn_"
            "align8>(cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64_32x6_tn_align8::Params)",
            "Kernel2<cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64_32x6_tn_align8>",
        ),
        (
            "void (anonymous namespace)::softmax_warp_forward<float, float, float, 8, false, "
            "false>(float*, float const*, int, int, int, bool const*, int, bool)",
            "softmax_warp_forward",
        ),
        ("init_data_kernel(int, double *)", "init_data_kernel"),
        ("nvjet_tst_128x64_64x8_1x2_h_bz_TNT", "nvjet_tst_128x64_64x8_1x2_h_bz_TNT"),
    ],
)
def test_short_kernel_name(name, short):
    assert ncu.short_kernel_name(name) == short


# ---- capture: the command, finding ncu, ncu's verdict -----------------------------------
def test_ncu_command_from_the_default_config(mapping):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["ncu"]
    target = [sys.executable, "-m", "hwlab.ncu_target", "decode", "--batch", "1"]
    cmd = ncu_command(
        "/opt/ncu",
        report="results/x/ncu/.b1.partial.ncu-rep",
        target=target,
        kernel_regex=cfg["kernel_regex"],
        launch_count=cfg["launch_count"],
        clock_control=cfg["clock_control"],
        cache_control=cfg["cache_control"],
        sections=mapping.sections,
        metrics=mapping.requested(),
    )
    assert cmd[:3] == ["/opt/ncu", "--profile-from-start", "off"]
    pairs = dict(zip(cmd[1 : -len(target)], cmd[2 : -len(target)], strict=False))
    assert pairs["--kernel-name"] == f"regex:{cfg['kernel_regex']}"
    assert pairs["--launch-count"] == "4"
    assert pairs["--clock-control"] == "base" and pairs["--cache-control"] == "all"
    sections = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--section"]
    assert sections == list(mapping.sections)
    metrics = cmd[cmd.index("--metrics") + 1].split(",")
    assert metrics == mapping.requested() and "dram__bytes_read.sum" in metrics
    assert cmd[-len(target) - 3 : -len(target)] == ["-o", "results/x/ncu/.b1.partial.ncu-rep", "-f"]
    assert cmd[-len(target) :] == target
    # GEMM captures: no kernel filter, no explicit metrics after a rejection
    bare = ncu_command(
        "ncu",
        report="r.ncu-rep",
        target=["t"],
        kernel_regex=None,
        launch_count=2,
        clock_control="none",
        cache_control="none",
        sections=[],
        metrics=[],
    )
    assert bare == [
        "ncu", "--profile-from-start", "off", "--launch-count", "2",
        "--clock-control", "none", "--cache-control", "none", "-o", "r.ncu-rep", "-f", "t",
    ]  # fmt: skip


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")  # only found, never run
    path.chmod(0o755)
    return path


def test_find_ncu(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    root = tmp_path / "opt" / "nvidia" / "nsight-compute"
    pattern = str(root / "*")
    assert find_ncu(path=str(empty), dirs=[pattern]) == (None, ["PATH", pattern + "/"])
    _exe(root / "2023.3.1" / "ncu")
    newest = _exe(root / "2024.10.2" / "ncu")
    assert find_ncu(path=str(empty), dirs=[pattern])[0] == str(newest)  # newest version
    on_path = _exe(tmp_path / "bin" / "ncu")
    assert find_ncu(path=str(on_path.parent), dirs=[pattern]) == (str(on_path), ["PATH"])
    assert find_ncu(str(tmp_path / "nowhere" / "ncu")) == (None, [str(tmp_path / "nowhere/ncu")])
    assert find_ncu(str(root / "2023.3.1"))[0] == str(root / "2023.3.1" / "ncu")


def test_skip_reason():
    cpu, gpu = {"kind": "cpu"}, {"kind": "cuda"}
    searched = ["PATH", "/usr/local/cuda/bin/"]
    assert skip_reason(gpu, "/usr/bin/ncu", searched, "auto") is None
    assert skip_reason(cpu, "/usr/bin/ncu", searched, "auto") == "no GPU (device kind cpu)"
    assert skip_reason(gpu, None, searched, "auto") == (
        "ncu not found (searched PATH, /usr/local/cuda/bin/)"
    )
    assert skip_reason(gpu, None, ["/x/ncu"], "/x/ncu") == (
        "ncu not found at /x/ncu (config ncu.ncu_path)"
    )


PERM = (
    "==PROF== Connected to process 35989 (/usr/bin/python3.10)\n"
    "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU "
    "Performance Counters on the target device 0. For instructions on enabling permissions "
    "and to get more information see https://developer.nvidia.com/ERR_NVGPUCTRPERM\n"
    "==PROF== Disconnected from process 35989\n"
)


def test_outcome_of_an_ncu_run():
    assert outcome(0, "", 3) == ("ok", None)
    status, reason = outcome(0, PERM, 0)
    assert status == "skipped"
    assert reason.startswith("ncu refused to profile: ERR_NVGPUCTRPERM - The user does not")
    status, reason = outcome(
        0,
        "==PROF== Connected\nhwlab.ncu_target: fp8 GEMM needs compute capability 8.9+\n"
        "==WARNING== No kernels were profiled.\n",
        0,
    )
    assert status == "failed" and "No kernels were profiled" in reason
    assert "fp8 GEMM needs compute capability 8.9+" in reason
    status, reason = outcome(1, "Traceback ...\nRuntimeError: boom\n", 0)
    assert status == "failed" and "status 1" in reason and "RuntimeError: boom" in reason
    assert metric_rejected("==ERROR== Failed to find metric foo__bar.sum\n")
    assert not metric_rejected(PERM)


def test_skip_is_decided_without_importing_torch(tmp_path):
    """On a machine without GPU and ncu the capture job writes its record and never loads
    torch (the target process is never started)."""
    dev = tmp_path / "device.json"
    dev.write_text(json.dumps({"kind": "cpu", "name": "some cpu"}))
    out = tmp_path / "ncu" / "b1.json"
    code = f"""
import sys
from hwlab.ncu_capture import capture_decode
rec = capture_decode({str(out)!r}, device_json={str(dev)!r},
    mapping_path={str(ncu.DEFAULT_METRICS)!r}, manifest=None, batch=1, prompt_len=8,
    warmup_steps=1, decode_steps=1, model="m", dtype="fp32", seed=0,
    kernel_regex="flash_fwd", launch_count=1, clock_control="base", cache_control="all",
    ncu_path={str(tmp_path / "no-ncu")!r})
assert "torch" not in sys.modules, "torch was imported"
print(rec["status"])
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(out.read_text())
    assert rec["status"] == "skipped" and rec["report"] is None
    assert rec["reason"] == (
        f"no GPU (device kind cpu); ncu not found at {tmp_path / 'no-ncu'} (config ncu.ncu_path)"
    )
    assert not list(out.parent.glob("*.ncu-rep"))


def test_gemm_table_from_a_captured_report(report, tmp_path):
    """The GEMM DRAM table from a real report: true DRAM bytes beside the analytic ones."""
    (tmp_path / "m16.ncu-rep").write_bytes(report.read_bytes())
    point = {"kind": "gemm", "shape": "ffn", "N": 11008, "K": 2048, "dtype": "bf16"}
    ok = tmp_path / "m16.json"
    ok.write_text(
        json.dumps({"status": "ok", "reason": None, "M": 16, "report": "m16.ncu-rep"} | point)
    )
    skipped = tmp_path / "m1.json"
    skipped.write_text(json.dumps({"status": "skipped", "reason": "no GPU", "M": 1} | point))
    ncu.write_gemm_table(
        [str(ok), str(skipped)],
        mapping_path=ncu.DEFAULT_METRICS,
        csv=tmp_path / "g.csv",
        md=tmp_path / "g.md",
    )
    df = pd.read_csv(tmp_path / "g.csv").set_index("M")
    assert list(df.index) == [1, 16]
    row = df.loc[16]
    assert row.status == "ok" and row.launches == 1
    assert row.kernels == "addConstDouble"
    assert row.duration_us == pytest.approx(239.008)
    assert row.dram_bytes_read == 25170048
    assert row.dram_read_gbps == pytest.approx(25170048 / 239008e-9 / 1e9)
    assert row.analytic_read_bytes == (16 * 2048 + 11008 * 2048) * 2
    assert df.loc[1].status == "skipped" and df.loc[1].reason == "no GPU"
    assert "bf16 skipped: no GPU" in (tmp_path / "g.md").read_text()


def test_gemm_dram_numbers():
    """DRAM read GB/s = bytes / seconds over the kernels of one call."""
    spec = ncu.load_mapping()

    def launch(nbytes, ns):
        la = ncu.Launch(0, 0, "k", "k", None)
        la.values = {
            "dram_bytes_read": ncu.Value("dram_bytes_read", "", nbytes, "byte", "x"),
            "duration": ncu.Value("duration", "", ns, "ns", "y"),
        }
        return la

    assert spec.spec("dram_bytes_read").names == ("dram__bytes_read.sum",)
    row = ncu.gemm_dram_row([launch(45e6, 30_000), launch(1e6, 2_000)])
    assert row["dram_bytes_read"] == 46e6 and row["duration_us"] == pytest.approx(32.0)
    assert row["dram_read_gbps"] == pytest.approx(46e6 / 32e-6 / 1e9)
    assert ncu.analytic_read_bytes(1, 11008, 2048, "bf16") == (2048 + 11008 * 2048) * 2


# ---- the Lab 1b filter, the ncu_report fallback, the clock-control retry -----------------
@pytest.mark.parametrize(
    ("name", "captured"),
    [
        ("flash_fwd_kernel", True),
        ("pytorch_flash::flash_fwd_splitkv_kernel", True),
        ("flash_fwd_splitkv_combine_kernel", False),  # the combine step, not attention
        ("fmha_cutlassF_bf16_aligned_64x128_rf_sm80", True),
        ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x128", True),
        ("flash::FlashAttnFwdSm90", True),
        ("nvjet_tst_64x8_64x16_4x1_v_bz_TNT", False),
    ],
)
def test_default_kernel_regex_takes_the_attention_kernel_itself(name, captured):
    import re

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["ncu"]
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    assert (
        schema["properties"]["ncu"]["properties"]["kernel_regex"]["default"] == cfg["kernel_regex"]
    )
    assert bool(re.search(cfg["kernel_regex"], name)) is captured


def test_lab1b_table_names_every_kernel_captured():
    m = ncu.load_mapping()
    s1 = ncu.BatchSummary(batch=1, status="ok", kernel="flash_fwd_splitkv_kernel", launches=3)
    s1.other_kernels = {"flash_fwd_splitkv_combine_kernel": 1}
    s32 = ncu.BatchSummary(batch=32, status="skipped", reason="no GPU")
    md = ncu.lab1b_markdown([s1, s32], m, ncu.lab1b_rows([s1, s32], m))
    assert (
        "| Kernels captured | flash_fwd_splitkv_kernel ×3, flash_fwd_splitkv_combine_kernel ×1"
        " | — |  |" in md
    )


def test_ncu_report_falls_back_to_nsight_computes_extras_python(tmp_path):
    """No installed ncu_report: the module Nsight Compute ships in extras/python beside the
    ncu binary is used (here the installed package, linked into a fake install tree)."""
    real = pytest.importorskip("ncu_report")
    install = tmp_path / "opt" / "nvidia" / "nsight-compute" / "2025.3.1"
    (install / "extras" / "python").mkdir(parents=True)
    _exe(install / "ncu")
    (install / "extras" / "python" / "ncu_report").symlink_to(Path(real.__file__).parent)
    code = f"""
import sys
sys.modules["ncu_report"] = None          # as if pip's ncu-report were not installed
from hwlab.ncu import import_ncu_report, NcuReportMissing
try:
    import ncu_report
    raise SystemExit("the plain import should fail here")
except ImportError:
    pass
mod = import_ncu_report({str(install / "ncu")!r}, dirs=())
print(mod.__file__)
assert hasattr(mod, "load_report")
sys.modules["ncu_report"] = None
try:
    import_ncu_report({str(tmp_path / "nowhere" / "ncu")!r}, dirs=())
except NcuReportMissing as e:
    print("MISSING", e)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    first, missing = proc.stdout.strip().splitlines()
    assert first.startswith(str(install / "extras" / "python" / "ncu_report"))
    assert (
        missing.startswith("MISSING cannot import ncu_report")
        and "pip install ncu-report" in missing
    )


FAKE_NCU = """#!/bin/sh
# Stand-in for ncu (no GPU here): refuses --clock-control base like a host that cannot lock
# clocks, and with none writes the real example report to its -o path.
out=""; clock=""
while [ $# -gt 0 ]; do
  case "$1" in
    --version) echo "NVIDIA (R) Nsight Compute Command Line Profiler (stand-in)"; exit 0;;
    -o) out="$2"; shift;;
    --clock-control) clock="$2"; shift;;
  esac
  shift
done
if [ "$clock" = "base" ]; then
  echo "==ERROR== Failed to lock GPU clocks to base (stand-in)"; exit 1
fi
cp "{report}" "$out"
echo "==PROF== Report: $out"
"""


def _capture(tmp_path, ncu_bin):
    from hwlab.ncu_capture import capture_gemm

    dev = tmp_path / "device.json"
    dev.write_text(json.dumps({"kind": "cuda", "name": "stand-in", "index": 0}))
    out = tmp_path / "ncu" / "m16.json"
    return out, capture_gemm(
        str(out), device_json=str(dev), mapping_path=str(ncu.DEFAULT_METRICS), shape="s",
        M=16, N=64, K=64, dtype="bf16", seed=0, launch_count=1, clock_control="base",
        cache_control="all", ncu_path=str(ncu_bin),
    )  # fmt: skip


def test_clock_control_refused_is_retried_with_none(report, tmp_path):
    fake = tmp_path / "bin" / "ncu"
    fake.parent.mkdir()
    fake.write_text(FAKE_NCU.format(report=report))
    fake.chmod(0o755)
    out, rec = _capture(tmp_path, fake)
    assert rec["status"] == "ok", rec["reason"]
    assert rec["clock_control_requested"] == "base" and rec["clock_control"] == "none"
    assert "Failed to lock GPU clocks" in rec["clock_control_fallback"]["because"]
    assert [a["command"][a["command"].index("--clock-control") + 1] for a in rec["attempts"]] == [
        "base",
        "none",
    ]
    assert rec["kernels"] == {"addConstDouble": 1}
    assert out.with_suffix(".ncu-rep").is_file()


def test_capture_without_ncu_report_is_failed_and_keeps_the_report(report, tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "ncu"
    fake.parent.mkdir()
    fake.write_text(FAKE_NCU.format(report=report).replace('"base"', '"never"'))
    fake.chmod(0o755)
    monkeypatch.setitem(sys.modules, "ncu_report", None)
    monkeypatch.setattr(ncu, "NCU_REPORT_DIRS", ())
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    out, rec = _capture(tmp_path, fake)
    assert rec["status"] == "failed"
    assert rec["reason"].startswith("ncu wrote a report but it cannot be read here: cannot import")
    assert rec["report_unread"] == "m16.ncu-rep" and out.with_suffix(".ncu-rep").is_file()
    assert json.loads(out.read_text())["status"] == "failed"
