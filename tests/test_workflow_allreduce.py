"""Lab 3 end to end through Snakemake on the tiny config: a real 2-process gloo sweep
launched by torchrun, the nccl skip path on this CPU host, the fit, figure and TP napkin,
and what reruns when the allreduce config changes."""

import json

import pandas as pd
import pytest
import yaml
from helpers import TINY, planned_jobs, smk, write_config

SWEEP_SIZES = [8 * 2**i for i in range(18)]  # 8 B .. 1 MiB (TINY allreduce.max_bytes)


@pytest.fixture(scope="module")
def res(tiny_run):
    return tiny_run[2]


def test_outputs(res):
    for f in (
        "allreduce/auto-w2.json",
        "allreduce/auto-w2.csv",
        "allreduce/nccl-w2.json",
        "allreduce/nccl-w2.csv",
        "tables/allreduce.csv",
        "tables/allreduce.md",
        "tables/allreduce_fit.csv",
        "figures/allreduce.png",
        "figures/allreduce.svg",
        "tables/napkin_tp.csv",
        "tables/napkin_tp.md",
    ):
        assert (res / f).is_file(), f
    assert (res / "figures/allreduce.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gloo_sweep_rows(res):
    rec = json.loads((res / "allreduce/auto-w2.json").read_text())
    assert rec["status"] == "ok" and rec["reason"] is None
    assert (rec["backend"], rec["backend_requested"], rec["world_size"]) == ("gloo", "auto", 2)
    assert rec["method"]["timer"] == "perf_counter_ns"
    assert "torch.distributed.run" in rec["method"]["command"]
    assert "--standalone" in rec["method"]["command"]

    df = pd.read_csv(res / "tables/allreduce.csv")
    for col in ("backend", "world_size", "dtype", "size_bytes", "time_us", "algbw_gbps",
                "busbw_gbps", "correct"):  # fmt: skip
        assert col in df.columns, col
    gloo = df[df.backend == "gloo"].sort_values("size_bytes")
    assert gloo.size_bytes.tolist() == SWEEP_SIZES
    assert (gloo.status == "ok").all()
    assert gloo.correct.astype(bool).all() and (gloo.wrong_elements == 0).all()
    assert (gloo.time_us > 0).all() and (gloo.time_min_us <= gloo.time_us).all()
    assert (gloo.time_us <= gloo.time_max_us).all()
    assert (gloo.world_size == 2).all() and (gloo["dtype"] == "fp32").all()
    # nccl-tests' definitions: algbw = bytes / time; busbw = algbw for n = 2
    assert gloo.algbw_gbps.tolist() == pytest.approx(
        (gloo.size_bytes / (gloo.time_us * 1e-6) / 1e9).tolist(), rel=1e-9
    )
    assert gloo.busbw_gbps.tolist() == gloo.algbw_gbps.tolist()
    assert (gloo.iters == 3).all()  # TINY: iters 3, nothing capped below 1 MiB


def test_nccl_on_a_cpu_host_is_skipped_with_its_reason(res):
    rec = json.loads((res / "allreduce/nccl-w2.json").read_text())
    assert rec["status"] == "skipped"
    assert "needs 2 GPUs" in rec["reason"] and "torch sees 0" in rec["reason"]
    assert "Lab 3" in rec["reason"]
    assert rec["rows"] == [] and "window" not in rec  # nothing was measured

    df = pd.read_csv(res / "tables/allreduce.csv")
    nccl = df[df.backend == "nccl"]
    assert len(nccl) == 1 and nccl.status.iloc[0] == "skipped"
    assert "torch sees 0" in nccl.reason.iloc[0]
    fit = pd.read_csv(res / "tables/allreduce_fit.csv")
    assert fit[fit.backend == "nccl"].status.tolist() == ["skipped"]
    md = (res / "tables/allreduce.md").read_text()
    assert "**skipped**" in md and "torch sees 0" in md


def test_fit_and_markdown(res):
    fit = pd.read_csv(res / "tables/allreduce_fit.csv")
    g = fit[fit.backend == "gloo"].iloc[0]
    assert g.status == "ok" and g.n_points == len(SWEEP_SIZES)
    assert "Huber" in g.method
    assert g.busbw_at_max_gbps > 0 and g.max_size_bytes == SWEEP_SIZES[-1]
    if g.beta_algbw_gbps == g.beta_algbw_gbps:  # defined: the knee is alpha x beta
        assert g.knee_bytes == pytest.approx(g.alpha_us * 1e-6 * g.beta_algbw_gbps * 1e9)
        assert g.beta_busbw_gbps == pytest.approx(g.beta_algbw_gbps)  # n = 2
    md = (res / "tables/allreduce.md").read_text()
    assert "α-β fit" in md and "perf_counter_ns" in md and "knee" in md


def test_napkin_tp_table(res):
    df = pd.read_csv(res / "tables/napkin_tp.csv")
    ex = df[(df.d_model == 8192) & (df.bandwidth == "writeup")].iloc[0]
    assert ex.message_bytes == 1_073_741_824 and ex.allreduces_per_pass == 160
    assert ex.comm_ms == pytest.approx(400.9, abs=0.05)
    assert "does NOT follow" in ex.note
    nvlink = df[(df.d_model == 8192) & df.bandwidth.str.startswith("catalog")].iloc[0]
    assert nvlink.busbw_gbps == 450  # a CPU run prices at the writeup's H100 (per direction)
    measured = df[df.bandwidth.str.startswith("measured gloo")]
    assert len(measured) == 2 * 6 and measured.busbw_gbps.notna().all()
    skipped = df[df.bandwidth.str.startswith("measured nccl")]
    assert len(skipped) == 6 and skipped.comm_ms.isna().all()
    md = (res / "tables/napkin_tp.md").read_text()
    assert "**NO**" in md and "2.15 GB" in md and "300.6 GB" in md


def test_measuring_windows_never_overlap(res):
    """The sweep (two processes) ran in a --cores 2 run beside the GEMM points and peaks."""
    windows = [json.loads(p.read_text())["window"] for p in (res / "gemm").rglob("*.json")]
    windows.append(json.loads((res / "peaks.json").read_text())["window"])
    windows.append(json.loads((res / "allreduce/auto-w2.json").read_text())["window"])
    windows.sort(key=lambda w: w["start"])
    for a, b in zip(windows, windows[1:], strict=False):
        assert a["end"] <= b["start"], (a, b)


def _dry(wd, tmp_path, change):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    change(cfg)
    proc = smk(wd, "all", "-n", configfile=write_config(tmp_path / "c.yaml", cfg))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _jobs(proc):
    return {k: v for k, v in planned_jobs(proc).items() if k != "all"}


def test_changing_a_sweep_param_reruns_the_sweeps_and_aggregates(tiny_run, tmp_path):
    proc = _dry(tiny_run[0], tmp_path, lambda c: c["allreduce"].update(iters=4))
    jobs = _jobs(proc)
    assert jobs == {
        "allreduce": 2,
        "allreduce_table": 1,
        "napkin_tp": 1,
        "provenance": 1,
        "findings": 1,
    }


def test_adding_a_world_size_runs_only_its_sweeps(tiny_run, tmp_path):
    proc = _dry(tiny_run[0], tmp_path, lambda c: c["allreduce"].update(world_sizes=[2, 4]))
    outputs = {
        o.strip()
        for line in proc.stdout.splitlines()
        if line.strip().startswith("output:")
        for o in line.split("output:", 1)[1].split(",")
    }
    sweeps = {o for o in outputs if "/allreduce/" in o}
    assert sweeps == {
        f"results/tiny/allreduce/{b}-w4.{ext}" for b in ("auto", "nccl") for ext in ("json", "csv")
    }
    assert _jobs(proc) == {
        "allreduce": 2,
        "allreduce_table": 1,
        "napkin_tp": 1,
        "provenance": 1,
        "findings": 1,
    }


def test_changing_the_napkin_reruns_only_the_napkin(tiny_run, tmp_path):
    proc = _dry(tiny_run[0], tmp_path, lambda c: c["allreduce"].update(tp_napkin={"batch": 8}))
    assert _jobs(proc) == {"napkin_tp": 1, "provenance": 1, "findings": 1}


def _resources(proc, output):
    block = proc.stdout.split(output, 1)[1]
    return next(ln for ln in block.splitlines() if ln.strip().startswith("resources:"))


def test_resources_for_any_executor(tiny_run, tmp_path):
    """CPU: measure=1, no GPU; device cuda: one GPU per rank; several nodes: SLURM 'mpi'."""
    wd = tiny_run[0]
    cpu = smk(wd, "all", "-n", "-F", configfile=write_config(tmp_path / "a.yaml", TINY))
    line = _resources(cpu, "allreduce/auto-w2.json")
    assert "measure=1" in line and "gpu=0" in line and "nodes=1" in line
    assert "mpi" not in line
    assert "gpu=2" in _resources(cpu, "allreduce/nccl-w2.json")

    def gpu_cluster(c):
        c["device"] = "cuda"
        c["allreduce"].update(world_sizes=[16], nodes=2)

    proc = _dry(wd, tmp_path, gpu_cluster)
    line = _resources(proc, "allreduce/auto-w16.json")
    for s in ("measure=1", "gpu=16", "nodes=2", "tasks=2", "mpi=srun"):
        assert s in line, (s, line)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"world_sizes": [3], "nodes": 2}, "allreduce.world_sizes: [3] do not split evenly"),
        ({"min_bytes": 6}, "allreduce.min_bytes: 6 is not a multiple"),
        ({"world_sizes": [1]}, "allreduce.world_sizes[0]"),
        ({"tp_napkin": {"hardware": "h999"}}, "allreduce.tp_napkin.hardware: 'h999'"),
    ],
)
def test_bad_allreduce_config_fails_before_any_job(tmp_path, change, message):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["allreduce"].update(change)
    proc = smk(tmp_path, "all", "-n", configfile=write_config(tmp_path / "bad.yaml", cfg))
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
