"""Issue 15 end to end, through real Snakemake, real torchrun and real signals: no orphaned
ranks or scratch folders after SIGTERM / SIGKILL, two runs never measure at once and no
light job runs beside a measurement, missing or invalid records are regenerated, a CUDA
request on a CPU host stops before any job, a failed job's reason is on the console, and
a repo and venv under a path with a space work."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, SNAKEMAKE, TINY, planned_jobs, smk, write_config

from hwlab import records

pytestmark = pytest.mark.slow

MEASURING = {
    "peaks",
    "gemm_sweep",
    "decode_batch",
    "allreduce",
    "ncu_capture",
    "ncu_gemm_capture",
    "hierarchy_memory",
    "hierarchy_link",
}


def _cfg(run: str, **sections) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg["run"] = run
    for k, v in sections.items():
        if isinstance(v, dict):
            cfg.setdefault(k, {}).update(v)
        else:
            cfg[k] = v
    return cfg


def _background(wd: Path, *args: str, log: Path, configfile: Path, cores: int = 2):
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(wd), "--cores", str(cores)]
    cmd += [*args, "--configfile", str(configfile)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=wd, env=env,
        start_new_session=True,  # its own process group, as a terminal gives it
    )  # fmt: skip


def _processes(wd: Path, *needles: str, without: str = "\0") -> list[int]:
    """Pids of processes working in ``wd`` whose command line contains a needle."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if cwd == str(wd.resolve()) and any(n in cmd for n in needles) and without not in cmd:
            out.append(int(d.name))
    return out


RANKS = ("-m hwlab.allreduce --spec", "torch.distributed.run")


def _ranks(wd: Path) -> list[int]:
    return _processes(wd, RANKS[0], without=RANKS[1])  # not torchrun, whose line names it


def _wait_for(cond, timeout: float, what: str):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---- fault 1: ranks die with the job, on every signal; the rerun completes -----------------


def test_allreduce_ranks_die_with_the_job_and_the_rerun_completes(tmp_path):
    wd = tmp_path
    cfg = write_config(
        tmp_path / "sig.yaml",
        # a sweep of a few seconds (8 B .. 16 MiB, 100 iterations each), killed inside it
        _cfg(
            "sig",
            allreduce={"backends": ["gloo"], "max_bytes": 1 << 24, "iters": 100, "budget_mb": 0},
        ),
    )
    sweep = "results/sig/allreduce/gloo-w2.json"
    scratch = wd / "results/sig/allreduce"
    for sig in (signal.SIGTERM, signal.SIGKILL):
        log = tmp_path / f"{sig.name}.log"
        p = _background(wd, sweep, log=log, configfile=cfg)
        _wait_for(lambda: len(_ranks(wd)) == 2, 120, "both torchrun ranks")
        time.sleep(2.0)
        assert not (wd / sweep).exists(), "the sweep ended before the signal"
        os.killpg(p.pid, sig)  # Ctrl-C in a terminal / kill -9 of the whole group
        p.wait(60)
        # no rank, no torchrun left: not reparented and still sweeping
        _wait_for(lambda: not _processes(wd, *RANKS), 10, f"the ranks to die after {sig.name}")
        left = list(scratch.glob(".allreduce-*"))
        if sig == signal.SIGTERM:  # cleaned up by the job itself
            assert left == [], left
            text = (wd / "results/sig/logs/allreduce/gloo-w2.log").read_text()
            assert "SIGTERM: stopping torchrun and its ranks" in text
        else:  # SIGKILL: nobody could clean up; the next start sweeps it
            assert len(left) == 1
    # the rerun Snakemake asks for
    unlock = smk(wd, "--unlock", configfile=cfg)
    assert unlock.returncode == 0
    proc = smk(wd, "results/sig/tables/allreduce.csv", "--rerun-incomplete", configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the next start (here the --unlock) swept the SIGKILLed job's scratch folder
    assert "scratch folder of a killed AllReduce job" in unlock.stderr + proc.stderr
    assert list(scratch.glob(".allreduce-*")) == []
    assert records.problem(wd / sweep) is None
    df = pd.read_csv(wd / "results/sig/tables/allreduce.csv")
    assert (df.status == "ok").all() and df.correct.all() and len(df) == 22  # 8 B .. 16 MiB
    assert not _processes(wd, *RANKS)


# ---- fault 2 and 10: two runs, one folder; measurements alone on the host -------------------


def _windows(res: Path) -> list[tuple[float, float, str]]:
    out = []
    for p in [*res.rglob("gemm/**/*.json"), res / "peaks.json"]:
        w = json.loads(p.read_text())["window"]
        out.append((w["start"], w["end"], str(p)))
    return out


def _snakemake_times(wd: Path) -> list[dict]:
    """Snakemake's own start/end time of every job (its metadata), with the job's log."""
    out = []
    for f in (wd / ".snakemake/metadata").iterdir():
        m = json.loads(f.read_text())
        path = base64.urlsafe_b64decode(f.name + "=" * (-len(f.name) % 4)).decode()
        out.append({**m, "path": path})
    return out


def test_two_runs_never_overlap_and_measurements_run_alone(tmp_path):
    wd = tmp_path
    locks = tmp_path / "locks"
    small = {"dtypes": ["fp32"], "M": [1, 16]}
    targets = ["tables/roofline.csv", "tables/napkin_decode.csv"]
    cores = (os.cpu_count() or 2) + 2  # above the CPU count: light jobs could fit beside
    procs, logs = [], []
    for run in ("ra", "rb"):
        cfg = write_config(tmp_path / f"{run}.yaml", _cfg(run, gemm=small, measure_lock=str(locks)))
        logs.append(tmp_path / f"{run}.log")
        procs.append(
            _background(
                wd, *[f"results/{run}/{t}" for t in targets], log=logs[-1], configfile=cfg,
                cores=cores,
            )
        )  # fmt: skip
    for p, log in zip(procs, logs, strict=True):
        assert p.wait(600) == 0, log.read_text()[-3000:]

    windows = sorted(_windows(wd / "results/ra") + _windows(wd / "results/rb"))
    assert len(windows) == 2 * (2 * 2 + 1)
    for a, b in zip(windows, windows[1:], strict=False):
        assert a[1] <= b[0], f"measurements overlap: {a} and {b}"

    consoles = "".join(log.read_text() for log in logs)
    waits = re.findall(
        r"hwlab: waiting for the measurement lock (\S+) \((\w+)\), held by (.+)", consoles
    )
    assert waits, "no job ever waited: the runs did not contend"
    path, _, holder = waits[0]
    assert Path(path).parent == locks
    assert re.match(r"pid \d+ on \S+ \(run r[ab], rule \w+", holder), holder

    # fault 10: no light job (aggregation, napkin, detection) ran beside a measurement;
    # from Snakemake's own job times, and for the time a light job held the host (its
    # log says since when: it may have waited for the other run's measurement)
    jobs = [j for j in _snakemake_times(wd) if j["rule"] not in MEASURING]
    assert {"roofline", "napkin_decode", "hardware", "device"} <= {j["rule"] for j in jobs}
    for j in jobs:
        held = re.search(
            r"measurement lock \(cpu shared\) held since ([\d.]+)", (wd / j["log"][0]).read_text()
        )
        assert held, j["log"]
        run = j["path"].split("/")[1]
        for start, end, rec in windows:
            assert not (float(held[1]) < end and start < j["endtime"]), (j["rule"], rec)
            if f"/{run}/" in rec:  # its own Snakemake never scheduled it beside one
                assert not (j["starttime"] < end and start < j["endtime"]), (j["rule"], rec)


# ---- faults 3 and 4 on a copy of the tiny run ------------------------------------------------


@pytest.fixture
def tiny_copy(tiny_run, tmp_path):
    """The session's tiny run copied with its metadata and mtimes: up to date, own folder."""
    wd = tmp_path / "wd"
    shutil.copytree(tiny_run[0], wd, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    cfg = write_config(tmp_path / "tiny.yaml", TINY)
    proc = smk(wd, "all", "-n", configfile=cfg)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]
    return wd, cfg, wd / "results" / "tiny"


def _planned(proc):
    return {k: v for k, v in planned_jobs(proc).items() if k != "all"}


def test_missing_and_invalid_records_are_regenerated(tiny_copy):
    wd, cfg, res = tiny_copy
    gemm = res / "gemm/small"
    (gemm / "fp32/warm/m16.json").unlink()  # missing
    (res / "decode/b2.kernels.csv").unlink()  # missing
    text = (gemm / "fp32/cold/m1.json").read_text()
    (gemm / "fp32/cold/m1.json").write_text(text[: len(text) // 2])  # truncated
    shutil.copy(gemm / "fp32/warm/m1.json", gemm / "fp32/cold/m16.json")  # a copy of another
    before = (res / "tables/roofline.csv").read_text()

    proc = smk(wd, "all", configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    assert "fp32/cold/m1.json is not valid JSON" in err and "moved aside" in err
    assert "fp32/cold/m16.json is invalid: its l2 is 'warm' but its path says 'cold'" in err
    assert (gemm / "fp32/cold/.m1.json.invalid").is_file()  # kept, not deleted
    jobs = planned_jobs(proc)
    assert jobs["gemm_sweep"] == 2 and jobs["decode_batch"] == 1  # fp32 warm and cold
    assert jobs["roofline"] == 1 and jobs["decode_tables"] == 1
    assert "peaks" not in jobs and "allreduce" not in jobs  # nothing else re-measured

    for p in [*gemm.rglob("m*.json"), *res.glob("decode/b*")]:
        if p.suffix in (".json", ".csv"):
            assert records.problem(p) is None, p
    df = pd.read_csv(res / "tables/roofline.csv")
    assert len(df) == 8 and not df.duplicated(["dtype", "l2", "M"]).any()
    assert df[df.dtype == "fp32"].status.eq("ok").all()
    assert (res / "tables/roofline.csv").read_text() != before
    assert "Nothing to be done" in smk(wd, "all", "-n", configfile=cfg).stdout


def test_cuda_request_on_a_cpu_host_stops_before_any_job(tiny_copy):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    wd, cfg, res = tiny_copy
    device = res / "device.json"
    mtime = device.stat().st_mtime_ns
    proc = smk(wd, "all", "--config", "device=cuda", configfile=cfg)
    assert proc.returncode != 0
    assert "hwlab: device: cuda, but this host cannot run CUDA" in proc.stderr
    assert "nothing was run" in proc.stderr and "Traceback" not in proc.stderr
    assert "Finished job" not in proc.stdout + proc.stderr
    assert device.stat().st_mtime_ns == mtime  # not removed, not rewritten
    assert "Nothing to be done" in smk(wd, "all", "-n", configfile=cfg).stdout


def test_changing_hardware_re_measures_nothing(tiny_copy):
    wd, cfg, _ = tiny_copy
    proc = smk(wd, "all", "-n", "--config", "hardware=h100_sxm", configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = _planned(proc)
    assert not set(jobs) & (MEASURING | {"device", "model"}), jobs
    assert {"hardware", "roofline", "decode_tables", "napkin_tp", "findings"} <= set(jobs)


# ---- fault 5: a failed job's reason on the console ------------------------------------------


def test_a_failed_jobs_reason_is_on_the_console(tmp_path):
    arch = json.loads((REPO / "config/models/qwen2-tiny.json").read_text())
    (tmp_path / "arch.json").write_text(json.dumps({**arch, "model_type": "nosuchmodel"}))
    cfg = {"run": "fail", "model": {"name": "broken", "arch": str(tmp_path / "arch.json")}}
    proc = smk(
        tmp_path,
        "resources/models/broken/manifest.json",
        configfile=write_config(tmp_path / "fail.yaml", cfg),
    )
    assert proc.returncode != 0
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("hwlab: model failed: "))
    assert "cannot build model_type 'nosuchmodel'" in line
    assert line.endswith("[log: resources/logs/model-broken.log]")


# ---- fault 7 and 9: a repo and venv under a path with a space; invalid YAML named ---------


def test_repo_and_venv_under_a_path_with_a_space(tmp_path):
    base = tmp_path / "a b"
    repo = base / "repo"
    shutil.copytree(
        REPO,
        repo,
        ignore=shutil.ignore_patterns(
            "results", "resources", ".snakemake", ".git", "__pycache__", "*.egg-info", ".venv"
        ),
    )
    # a real venv at the spaced path, sharing this environment's packages
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(base / ".venv")], check=True)
    site = next((base / ".venv/lib").glob("python*/site-packages"))
    here = [p for p in sys.path if p.endswith("site-packages")]
    (site / "shared.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in here)
    )
    python = base / ".venv/bin/python"
    wd = base / "wd"
    wd.mkdir()
    cfg = write_config(base / "sp.yaml", _cfg("sp", gemm={"dtypes": ["fp32"], "M": [1]}))
    cmd = [str(python), "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(wd)]
    cmd += ["--cores", "2", "results/sp/gemm/small/fp32/warm/m1.json"]
    cmd += ["results/sp/hardware.json", "--configfile", str(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=base, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert records.problem(wd / "results/sp/gemm/small/fp32/warm/m1.json") is None

    # an invalid embedded config names its file and line, before any job
    conf = repo / "config/config.yaml"
    conf.write_text(conf.read_text() + "gemm:\n  M: [1, 4\n")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=base, timeout=600)
    assert proc.returncode != 0
    assert re.search(r"config/config\.yaml: invalid YAML at line \d+, column \d+", proc.stderr)
    assert "Traceback" not in proc.stderr
