"""The Nsight Compute stage through Snakemake on this machine (no GPU, no ncu): every
capture writes a skipped record saying why, the tables say so, and the run completes."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
from helpers import TINY, planned_jobs, smk, write_config

NCU = {"batches": [1, 32], "gemm_M": [16], "launch_count": 2}
TARGETS = ["results/tiny/tables/ncu_lab1b.md", "results/tiny/tables/ncu_gemm.csv"]


def _cfg(**ncu):
    cfg = copy.deepcopy(TINY)
    cfg["ncu"] = {**NCU, **ncu}
    return cfg


@pytest.fixture(scope="module")
def ncu_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("ncu")
    cfg = write_config(wd / "ncu.yaml", _cfg())
    proc = smk(wd, *TARGETS, configfile=cfg)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return wd, cfg, wd / "results" / "tiny"


def test_capture_records_say_why(ncu_run):
    res = ncu_run[2]
    for b in (1, 32):
        rec = json.loads((res / "ncu" / f"b{b}.json").read_text())
        assert rec["status"] == "skipped"
        assert rec["reason"].startswith("no GPU (device kind cpu); ncu not found (searched PATH")
        assert rec["batch"] == b and rec["launch_count"] == 2
        assert rec["clock_control"] == "base" and rec["report"] is None
    assert not list((res / "ncu").rglob("*.ncu-rep"))
    gemm = sorted(p.relative_to(res).as_posix() for p in (res / "ncu" / "gemm").rglob("*.json"))
    assert gemm == ["ncu/gemm/small/fp32/m16.json", "ncu/gemm/small/fp8/m16.json"]


def test_tables_say_why(ncu_run):
    res = ncu_run[2]
    md = (res / "tables" / "ncu_lab1b.md").read_text()
    assert "No batch was captured on this run" in md
    # one line per distinct reason, its batches together (not the same reason per batch)
    assert "- batches 1, 32: skipped: no GPU (device kind cpu); ncu not found (searched PATH" in md
    assert md.count("ncu not found") == 1
    tidy = pd.read_csv(res / "tables" / "ncu.csv")
    assert list(tidy.batch) == [1, 32] and (tidy.status == "skipped").all()
    assert tidy.note.str.contains("no GPU").all()
    lab = pd.read_csv(res / "tables" / "ncu_lab1b.csv")
    assert list(lab.columns) == ["metric", "label", "unit", "b1", "b32", "multiplier"]
    assert lab[["b1", "b32"]].isna().all().all()
    gemm = pd.read_csv(res / "tables" / "ncu_gemm.csv")
    assert list(gemm.M) == [16, 16] and (gemm.status == "skipped").all()
    assert gemm.dram_bytes_read.isna().all()
    assert gemm.analytic_read_bytes.tolist() == [(16 * 256 + 512 * 256) * b for b in (4, 1)]


def test_noop_rerun_and_what_a_change_reruns(ncu_run, tmp_path):
    wd, cfg, _ = ncu_run
    proc = smk(wd, *TARGETS, "-n", configfile=cfg)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr
    changed = write_config(tmp_path / "lc.yaml", _cfg(launch_count=3))
    jobs = planned_jobs(smk(wd, *TARGETS, "-n", configfile=changed))
    assert jobs == {"ncu_capture": 2, "ncu_gemm_capture": 2, "ncu_tables": 1, "ncu_gemm_table": 1}
    more = write_config(tmp_path / "b.yaml", _cfg(batches=[1, 32, 64]))
    jobs = planned_jobs(smk(wd, *TARGETS, "-n", configfile=more))
    assert jobs == {"ncu_capture": 1, "ncu_tables": 1}


def test_explicit_ncu_path_that_does_not_exist(ncu_run, tmp_path):
    wd = ncu_run[0]
    cfg = write_config(tmp_path / "p.yaml", _cfg(ncu_path="/nowhere/ncu", batches=[1]))
    proc = smk(wd, "results/tiny/tables/ncu_lab1b.md", configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads((wd / "results" / "tiny" / "ncu" / "b1.json").read_text())
    assert (
        rec["reason"]
        == "no GPU (device kind cpu); ncu not found at /nowhere/ncu (config ncu.ncu_path)"
    )


def test_all_includes_the_ncu_tables(tiny_run):
    res = tiny_run[2]
    md = (res / "tables" / "ncu_lab1b.md").read_text()
    assert "skipped: no GPU (device kind cpu)" in md
    assert not (res / "tables" / "ncu_gemm.csv").exists()  # ncu.gemm_M is empty by default
