"""The backbone end to end through Snakemake on a tiny config (real torch on the CPU)."""

import json
import shutil

import pandas as pd
import yaml
from helpers import REPO, TINY, planned_jobs, smk, write_config

ROOFLINE_COLUMNS = [
    "shape",
    "dtype",
    "l2",
    "M",
    "N",
    "K",
    "gpu_time_us",
    "wall_time_us",
    "tflops",
    "pct_dense_peak",
    "eff_gbps",
    "pct_mem_peak",
    "ai",
]


def test_outputs(tiny_run):
    wd, _, res = tiny_run
    for f in (
        "env.json",
        "device.json",
        "peaks.json",
        "tables/roofline.csv",
        "tables/roofline.md",
        "figures/roofline.png",
        "figures/roofline.svg",
    ):
        assert (res / f).is_file(), f
    points = sorted(p.relative_to(res).as_posix() for p in (res / "gemm").rglob("*.json"))
    assert len(points) == 2 * 2 * 2  # dtypes x l2 x M
    assert "gemm/small/fp32/cold/m16.json" in points


def test_env_json(tiny_run):
    env = json.loads((tiny_run[2] / "env.json").read_text())
    assert env["device"]["kind"] == "cpu"
    assert env["device"]["cpu_model"]
    for k in ("python", "torch", "transformers", "snakemake"):
        assert env["software"][k], k
    assert len(env["config_digest"]) == 64
    assert env["host"]["hostname"] and env["utc_time"].endswith("+00:00")
    assert "commit" in env["workflow"]


def test_roofline_table(tiny_run):
    df = pd.read_csv(tiny_run[2] / "tables" / "roofline.csv")
    assert set(ROOFLINE_COLUMNS) <= set(df.columns)
    ok = df[df.status == "ok"]
    assert len(ok) == 4 and (ok.dtype == "fp32").all()
    assert (ok.gpu_time_us > 0).all() and (ok.tflops > 0).all()
    assert ok.pct_dense_peak.notna().all() and ok.pct_mem_peak.notna().all()
    assert (ok.peak_basis == "measured").all()  # a CPU has no catalog entry
    fp8 = df[df.dtype == "fp8"]
    assert len(fp8) == 4 and (fp8.status == "skipped").all()
    assert fp8.reason.str.contains("fp8").all()
    md = (tiny_run[2] / "tables" / "roofline.md").read_text()
    assert "perf_counter_ns" in md  # the CPU timer is named honestly
    assert "fp8 skipped" in md


def test_measurements_never_overlap(tiny_run):
    """Run with --cores 2: the measuring jobs' windows must not intersect."""
    res = tiny_run[2]
    windows = [json.loads(p.read_text())["window"] for p in (res / "gemm").rglob("*.json")]
    windows.append(json.loads((res / "peaks.json").read_text())["window"])
    windows.sort(key=lambda w: w["start"])
    for a, b in zip(windows, windows[1:], strict=False):
        assert a["end"] <= b["start"], (a, b)


def test_noop_rerun(tiny_run):
    wd, cfg, _ = tiny_run
    proc = smk(wd, "all", "-n", configfile=cfg)
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _planned_outputs(proc):
    return {
        line.split("output:", 1)[1].strip()
        for line in proc.stdout.splitlines()
        if line.strip().startswith("output:")
    }


def test_adding_one_M_reruns_the_gemm_sweeps_only(tiny_run, tmp_path):
    """One job per sweep: a new M reruns each sweep (shape x dtype x L2), nothing else
    measured (no peaks, no decode), plus the aggregation written from them."""
    wd, _, res = tiny_run
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["gemm"]["M"] = [1, 16, 32]
    proc = smk(wd, "all", "-n", configfile=write_config(tmp_path / "more.yaml", cfg))
    assert proc.returncode == 0, proc.stderr
    jobs = planned_jobs(proc)
    assert jobs.pop("gemm_sweep") == 4  # fp32, fp8 x warm, cold
    # aggregation only, plus env.json (its config digest) and the findings written from both
    assert set(jobs) <= {"roofline", "provenance", "findings", "all"}, jobs
    outs = _planned_outputs(proc)
    assert any("results/tiny/gemm/small/fp32/cold/m32.json" in o for o in outs)


def test_a_deleted_point_reruns_its_sweep_only(tiny_run, tmp_path):
    wd, cfg, res = tiny_run
    point = res / "gemm" / "small" / "fp32" / "cold" / "m16.json"
    saved = point.read_bytes()
    point.unlink()
    try:
        proc = smk(wd, "all", "-n", configfile=cfg)
        assert proc.returncode == 0, proc.stderr
        jobs = planned_jobs(proc)
        assert jobs.get("gemm_sweep") == 1, jobs
        swept = [o for o in _planned_outputs(proc) if "/gemm/" in o]
        assert len(swept) == 1 and "gemm/small/fp32/cold/m1.json" in swept[0], swept
    finally:
        point.write_bytes(saved)


def test_sweep_records_carry_the_adaptive_and_timing_fields(tiny_run):
    res = tiny_run[2]
    rec = json.loads((res / "gemm" / "small" / "fp32" / "warm" / "m16.json").read_text())
    for k in ("rel_spread", "rel_ci", "n_repeats", "target_reached", "stopped", "wall_time_us",
              "dispatch_us", "timing_mode", "timing", "memory_estimate_bytes"):  # fmt: skip
        assert k in rec, k
    assert rec["timing_mode"] == "loop" and rec["dispatch_bound"] is None  # a CPU: n/a
    df = pd.read_csv(res / "tables" / "roofline.csv")
    assert {"dispatch_us", "dispatch_bound", "timing_mode", "n_repeats", "rel_ci"} <= set(
        df.columns
    )
    md = (res / "tables" / "roofline.md").read_text()
    assert "dispatch-bound is not applicable" in md and "| timing " in md


def test_changing_a_method_param_reruns_the_points(tiny_run, tmp_path):
    wd = tiny_run[0]
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["gemm"]["iters"] = 4
    proc = smk(wd, "all", "-n", configfile=write_config(tmp_path / "iters.yaml", cfg))
    jobs = planned_jobs(proc)
    assert jobs.get("gemm_sweep") == 4 and "peaks" not in jobs, jobs


def test_editing_package_code_reruns_dependent_jobs(tmp_path):
    """A content change in hwlab/gemm.py reruns the jobs that use it (a repo copy)."""
    repo = tmp_path / "repo"
    shutil.copytree(
        REPO,
        repo,
        ignore=shutil.ignore_patterns(
            "results", "resources", ".snakemake", ".git", "__pycache__", "*.egg-info"
        ),
    )
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["gemm"].update(dtypes=["fp32"], M=[4], l2=["warm"])
    cfgfile = write_config(tmp_path / "one.yaml", cfg)
    wd = tmp_path / "wd"
    wd.mkdir()
    assert smk(wd, "all", configfile=cfgfile, snakefile=repo / "Snakefile").returncode == 0
    mod = repo / "hwlab" / "gemm.py"
    mod.write_text(mod.read_text() + "\n# a change\n")
    proc = smk(wd, "all", "-n", configfile=cfgfile, snakefile=repo / "Snakefile")
    jobs = _planned_outputs(proc)
    assert any("results/tiny/gemm/small/fp32/warm/m4.json" in j for j in jobs)
    assert "results/tiny/peaks.json" in jobs  # peaks times GEMMs with gemm.py too
    assert "results/tiny/device.json" not in jobs
