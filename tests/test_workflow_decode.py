"""Model and decode stages end to end through Snakemake on the tiny config (real torch, CPU)."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from helpers import REPO, TINY, planned_jobs, smk, write_config

DECODE_COLUMNS = [
    "batch",
    "status",
    "prefill_ms",
    "tpot_ms_p50",
    "tpot_ms_p10",
    "tpot_ms_p90",
    "tokens_per_s",
    "scaling_efficiency",
    "peak_mem_mb",
    "napkin_ms",
    "overhead_ratio",
    "gpu_util_pct",
]


def test_decode_outputs(tiny_run):
    _, _, res = tiny_run
    for b in (1, 2):
        for suffix in ("json", "kernels.csv", "trace.json.gz"):
            assert (res / "decode" / f"b{b}.{suffix}").is_file(), (b, suffix)
    for f in (
        "tables/decode.csv",
        "tables/decode.md",
        "tables/kernel_inventory.csv",
        "tables/kernel_classes.csv",
        "tables/lab1a.md",
        "figures/decode_sweep.png",
        "figures/decode_sweep.svg",
        "figures/kernel_classes.png",
        "figures/kernel_classes.svg",
    ):
        assert (res / f).stat().st_size > 0, f
    manifest = json.loads(
        (res.parent.parent / "resources/models/qwen2-tiny/manifest.json").read_text()
    )
    assert manifest["source"] == "random" and manifest["param_count"] == 21_239_680
    assert len(manifest["arch_sha256"]) == 64


def test_decode_table(tiny_run):
    df = pd.read_csv(tiny_run[2] / "tables" / "decode.csv")
    assert set(DECODE_COLUMNS) <= set(df.columns)
    assert list(df.batch) == [1, 2] and (df.status == "ok").all()
    assert (df.tpot_ms_p10 <= df.tpot_ms_p50).all() and (df.tpot_ms_p50 <= df.tpot_ms_p90).all()
    assert (df.prefill_ms > 0).all() and (df.peak_mem_mb > 0).all()
    assert df.scaling_efficiency.iloc[0] == pytest.approx(1.0)
    assert df.tokens_per_s.iloc[1] == pytest.approx(2 / (df.tpot_ms_p50.iloc[1] / 1e3))
    assert (df.napkin_ms > 0).all() and (df.overhead_ratio > 0).all()
    assert (df.bw_basis == "measured (peaks.json, STREAM-like)").all()
    assert df.gpu_util_pct.isna().all() and df.gpu_util_reason.str.contains("CPU").all()
    rec = json.loads((tiny_run[2] / "decode" / "b2.json").read_text())
    assert rec["timed_steps"] == 6 - 2 and len(rec["tpot_ms_steps"]) == 6
    assert rec["timer"] == "perf_counter_ns"


def test_inventory_tables(tiny_run):
    res = tiny_run[2]
    inv = pd.read_csv(res / "tables" / "kernel_inventory.csv")
    assert {"batch", "kernel", "class", "calls", "time_us", "share"} <= set(inv.columns)
    assert set(inv.phase) == {"decode", "prefill"}
    cls = pd.read_csv(res / "tables" / "kernel_classes.csv")
    assert list(cls.columns) == [
        "batch", "phase", "class", "time_us", "share", "share_lo", "share_hi", "n_steps",
        "itemised",
    ]  # fmt: skip
    # each decode share carries its min-max over the profiled steps (2 in the tiny config)
    d = cls[cls.phase == "decode"]
    assert (d.n_steps == 2).all()
    assert (d.share_lo <= d.share + 1e-12).all() and (d.share <= d.share_hi + 1e-12).all()
    assert (d.share_hi > d.share_lo).any()
    for (batch, phase), g in cls.groupby(["batch", "phase"]):
        assert g.share.sum() == pytest.approx(1.0), (batch, phase)
    for (batch, phase), g in inv.groupby(["batch", "phase"]):
        assert g.share.sum() == pytest.approx(1.0), (batch, phase)
    dec = cls[cls.phase == "decode"].set_index(["batch", "class"]).share
    # batch 1: the projections are GEMVs (M = 1); batch 2: GEMMs, no GEMV left
    assert dec[(1, "gemv")] > 0.3 and dec[(1, "gemm")] == 0
    assert dec[(2, "gemv")] == 0 and dec[(2, "gemm")] > 0.3
    assert dec[(1, "attention")] > 0 and dec[(1, "tc_gemm")] == 0
    # 2 decode steps x 4 layers x 7 projections, plus the lm_head, per step
    mm = inv[
        (inv.batch == 1) & (inv.phase == "decode") & inv.kernel.isin(["aten::mm", "aten::addmm"])
    ]
    assert mm.calls.sum() == 2 * (4 * 7 + 1)
    lab = (res / "tables" / "lab1a.md").read_text()
    assert "Batch=1 | Batch=2" in lab
    assert "GEMV share" in lab and "of prefill" in lab and "CPU: no tensor cores" in lab


def test_cli_inventory_reads_the_pipeline_trace(tiny_run):
    trace = tiny_run[2] / "decode" / "b1.trace.json.gz"
    proc = subprocess.run(
        [sys.executable, "-m", "hwlab.cli", "inventory", str(trace), "--top", "3"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cpu trace" in proc.stdout
    assert "## phase decode" in proc.stdout and "## phase prefill" in proc.stdout
    assert "gemv" in proc.stdout and "aten::mm" in proc.stdout


def test_measurements_never_overlap_with_decode(tiny_run):
    """--cores 2: decode jobs, GEMM points and peaks must never measure at the same time."""
    res = tiny_run[2]
    files = [*(res / "gemm").rglob("*.json"), *(res / "decode").glob("b*.json"), res / "peaks.json"]
    windows = sorted((json.loads(p.read_text())["window"] for p in files), key=lambda w: w["start"])
    assert len(windows) >= 2 + 1
    for a, b in zip(windows, windows[1:], strict=False):
        assert a["end"] <= b["start"], (a, b)


def test_noop_rerun_of_the_decode_stage(tiny_run):
    wd, cfg, _ = tiny_run
    proc = smk(
        wd, "results/tiny/tables/decode.csv", "results/tiny/tables/lab1a.md", "-n", configfile=cfg
    )
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_adding_a_batch_reruns_one_decode_job(tiny_run, tmp_path):
    wd, _, _ = tiny_run
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["decode"]["batches"] = [1, 2, 3]
    proc = smk(wd, "all", "-n", configfile=write_config(tmp_path / "b3.yaml", cfg))
    assert proc.returncode == 0, proc.stderr
    jobs = planned_jobs(proc)
    assert jobs.get("decode_batch") == 1 and jobs.get("decode_tables") == 1
    assert "results/tiny/decode/b3.json" in proc.stdout
    assert "model" not in jobs and "peaks" not in jobs and "gemm_sweep" not in jobs
    # only the aggregation, env.json (its config digest) and the findings besides the new
    # job; the decode model measures the new batch's linears (one job for all batches)
    allowed = {"decode_batch", "decode_tables", "provenance", "findings", "all"}
    assert set(jobs) <= allowed | {"decode_ops", "decode_model"}, jobs


def test_classes_file_edit_reruns_only_the_aggregation(tiny_run, tmp_path):
    wd, _, _ = tiny_run
    rules = tmp_path / "classes.yaml"
    rules.write_text((REPO / "config" / "kernel_classes.yaml").read_text())
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["decode"]["kernel_classes"] = str(rules)
    proc = smk(wd, "all", "-n", configfile=write_config(tmp_path / "c.yaml", cfg))
    jobs = planned_jobs(proc)
    assert jobs.get("decode_tables") == 1 and "decode_batch" not in jobs, jobs


def test_oom_batch_is_recorded_and_the_run_completes(tiny_run, tmp_path):
    """A real allocation failure: decode jobs may add 512 MiB of address space; batch 8192
    (a 800 MB MLP activation in prefill) exceeds it, batch 1 does not.

    A second run (``oom``) in the tiny run's folder: the model manifest is shared, and the
    tiny run's device.json, hardware.json and peaks.json are copied (this machine's,
    measured minutes ago) so that only the decode jobs and the aggregation run."""
    wd, _, tiny_res = tiny_run
    res = wd / "results" / "oom"
    res.mkdir(parents=True, exist_ok=True)
    for f in ("device.json", "hardware.json", "peaks.json"):  # copy2 keeps mtimes: not rerun
        shutil.copy2(tiny_res / f, res / f)
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["run"] = "oom"
    cfg["decode"].update(batches=[1, 8192], lab1a_batches=[1, 8192], memory_cap_mb=512)
    cfgfile = write_config(tmp_path / "oom.yaml", cfg)
    proc = smk(wd, "results/oom/tables/decode.csv", configfile=cfgfile)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert planned_jobs(proc) == {"decode_batch": 2, "decode_tables": 1}
    big = json.loads((res / "decode" / "b8192.json").read_text())
    assert big["status"] == "oom"
    assert "can't allocate memory" in big["reason"] and "memory_cap_mb = 512" in big["reason"]
    assert big["memory_cap"]["cap_mb"] == 512
    small = json.loads((res / "decode" / "b1.json").read_text())
    assert small["status"] == "ok", small["reason"]
    df = pd.read_csv(res / "tables" / "decode.csv")
    assert list(df.status) == ["ok", "oom"]
    assert pd.isna(df.tokens_per_s.iloc[1]) and df.napkin_ms.iloc[1] > 0
    assert "oom: out of memory at batch 8192" in (res / "tables" / "lab1a.md").read_text()
    assert pd.read_csv(res / "decode" / "b8192.kernels.csv").empty
