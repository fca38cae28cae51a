"""Benchmark: per rule, the job wall time, the measured window and the fixed cost of a cold
run, and the total projected for config/h100.yaml from those figures.

    python benchmarks/bench_rules.py                       # run the CPU default cold, report
    python benchmarks/bench_rules.py --configfile X --keep DIR
    python benchmarks/bench_rules.py --from DIR            # report a run made with
                                                           # HWLAB_JOB_TIMES=DIR/.jobtimes

The run is `snakemake --cores 1 all` in a scratch folder with HWLAB_JOB_TIMES set, so every
script job records its interpreter's wall time (hwlab/jobtimes.py); a job's measured window
is what its records' `window`s add up to, the rest is its fixed cost (a new interpreter,
imports, a CUDA context, building a model). What is left of the run's wall time is
Snakemake's own cost between jobs.

The projection for config/h100.yaml counts that config's jobs per rule (a dry run) and
prices each as: Snakemake's cost per job + the fixed cost per job of the same rule here +,
for rules that start CUDA on a GPU host, --cuda-init-s + the measured window estimated for
an H200 from the config (GEMM and peaks: calls x roofline time at the spec's 4.8 TB/s and
990 TFLOP/s, with a launch floor; decode: the steps x --tpot-ms, plus the 3B model build
and the profiler; ncu captures: --ncu-decode-s / --ncu-gemm-s each). Every assumption is
printed; on a GPU host run it with --from on the lab's own run instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hwlab import jobtimes  # noqa: E402

# rules whose job starts CUDA (a context) on a GPU host
CUDA_RULES = {"device", "peaks", "gemm_sweep", "decode_batch", "allreduce"}
H200 = {"bw_gbps": 4800.0, "tflops": {"bf16": 990.0, "fp8": 1979.0, "fp32": 67.0}}


def smk(wd: Path, configfile: str | None, *args: str, env=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(wd)]
    cmd += ["--cores", "1", *args]
    if configfile:
        cmd += ["--configfile", configfile]
    return subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)


def planned(wd: Path, configfile: str) -> dict[str, int]:
    """Jobs per rule of a cold run of ``configfile`` (a dry run; device forced to auto so a
    CUDA config can be planned on a CPU host)."""
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import planned_jobs

    proc = smk(wd, configfile, "all", "-n", "--config", "device=auto")
    if proc.returncode:
        raise SystemExit(f"dry run of {configfile} failed:\n{proc.stderr[-2000:]}")
    return planned_jobs(proc)


def gpu_call_s(m: int, n: int, k: int, dtype: str, floor_s: float) -> float:
    from hwlab.gemm import derived

    d = derived(m, n, k, dtype, 1.0)
    t = max(d["bytes"] / (H200["bw_gbps"] * 1e9), d["flops"] / (H200["tflops"][dtype] * 1e12))
    return max(t, floor_s)


def h200_windows(cfg: dict, a: argparse.Namespace) -> dict[str, float]:
    """Estimated measured seconds per rule on an H200 for the resolved config ``cfg``."""
    from hwlab.gemm import flush_bytes

    g, p, d = cfg["gemm"], cfg["peaks"], cfg["decode"]
    floor = a.launch_floor_us * 1e-6
    sweep = 0.0
    flush_s = flush_bytes(g["flush_mb"], 60 * 2**20) / (H200["bw_gbps"] * 1e9)
    for sh in g["shapes"]:
        for dt in g["dtypes"]:
            for l2 in g["l2"]:
                for m in g["M"]:
                    t = gpu_call_s(m, sh["N"], sh["K"], dt, floor)
                    calls = g["warmup"] + g["repeats"] * g["iters"]
                    sweep += calls * (t + (flush_s + floor if l2 == "cold" else 0.0))
                    sweep += a.point_setup_s
    peaks = 0.0
    for dt in dict.fromkeys([*g["dtypes"], cfg["model"]["dtype"]]):
        for n in p["gemm_sizes"]:
            peaks += (p["warmup"] + p["repeats"] * p["iters"]) * gpu_call_s(n, n, n, dt, floor)
    stream = 2 * max(256 * 2**20, 2 * 60 * 2**20)
    peaks += 2 * (p["warmup"] + p["repeats"] * p["iters"]) * 3 * stream / (H200["bw_gbps"] * 1e9)
    steps = 2 + d["new_tokens"] + d["profile_steps"] + 2  # warm prefill+step, timed, profiled
    decode = a.model_build_s + steps * a.tpot_ms * 1e-3 + a.profiler_s
    return {
        "gemm_sweep": sweep,
        "peaks": peaks + a.point_setup_s,
        "decode_batch": decode,
        "ncu_capture": a.ncu_decode_s,
        "ncu_gemm_capture": a.ncu_gemm_s,
        "gemm_budget_s": len(g["shapes"])
        * len(g["dtypes"])
        * len(g["l2"])
        * len(g["M"])
        * (g["budget_s"] if g.get("target_spread") else 0.0),
    }


def resolved_config(configfile: str) -> dict:
    """The default config with ``configfile`` over it (one level deep, lists replaced), as
    Snakemake merges them."""
    import yaml

    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    over = yaml.safe_load(Path(configfile).read_text()) or {}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return base


def report(jobs: list[dict], total_wall: float | None) -> dict[str, dict[str, float]]:
    rules = jobtimes.per_rule(jobs)
    print(
        f"{'rule':22} {'jobs':>4} {'wall s':>8} {'measured s':>11} {'fixed s':>8} {'fixed/job':>9}"
    )
    for name, r in sorted(rules.items(), key=lambda kv: -kv[1]["wall_s"]):
        print(
            f"{name:22} {r['jobs']:4d} {r['wall_s']:8.1f} {r['measured_s']:11.1f} "
            f"{r['fixed_s']:8.1f} {r['fixed_per_job_s']:9.2f}"
        )
    walls = sum(r["wall_s"] for r in rules.values())
    n = sum(r["jobs"] for r in rules.values())
    print(f"{'all script jobs':22} {n:4d} {walls:8.1f}")
    if total_wall is not None:
        other = max(0.0, total_wall - walls)
        per = other / max(n, 1)
        print(
            f"run wall {total_wall:.1f} s; Snakemake between jobs {other:.1f} s ({per:.2f} s/job)"
        )
    return rules


def project(rules: dict, total_wall: float | None, a: argparse.Namespace) -> None:
    cfg = resolved_config(a.project)
    with tempfile.TemporaryDirectory() as tmp:
        plan = planned(Path(tmp), a.project)
    n_here = sum(r["jobs"] for r in rules.values())
    walls = sum(r["wall_s"] for r in rules.values())
    smk_per_job = max(0.0, (total_wall or walls) - walls) / max(n_here, 1)
    win = h200_windows(cfg, a)
    print(f"\nprojection for {a.project} on one H200 (assumptions below):")
    print(f"{'rule':22} {'jobs':>4} {'fixed s':>8} {'measured s':>11} {'total s':>8}")
    total = 0.0
    for name, n in sorted(plan.items()):
        if name == "all":
            continue
        here = rules.get(name)
        fixed = (here["fixed_per_job_s"] if here else a.default_fixed_s) + smk_per_job
        if name in CUDA_RULES:
            fixed += a.cuda_init_s
        if name in ("gemm_sweep", "peaks"):
            measured = win[name]  # the whole stage's calls
        elif name in win:
            measured = n * win[name]
        elif name == "allreduce":  # NCCL world sizes above the GPUs present are skipped
            ran = sum(w <= a.gpus for w in cfg["allreduce"]["world_sizes"])
            measured = (here["measured_s"] / here["jobs"] * ran) if here else 0.0
        else:
            measured = (here["measured_s"] / here["jobs"] * n) if here else 0.0
        t = n * fixed + measured
        total += t
        print(f"{name:22} {n:4d} {n * fixed:8.1f} {measured:11.1f} {t:8.1f}")
    n_jobs = sum(v for k, v in plan.items() if k != "all")
    print(f"{'total':22} {n_jobs:4d} {'':8} {'':11} {total:8.1f}")
    print(
        f"  = {total / 60:.1f} min; if no GEMM point reaches gemm.target_spread at its minimum "
        f"repeats, at most +{win['gemm_budget_s']:.0f} s (every point spends gemm.budget_s)"
    )
    rules_cuda = ", ".join(sorted(CUDA_RULES))
    bw, tf = H200["bw_gbps"], H200["tflops"]["bf16"]
    for line in (
        "assumptions:",
        f"  Snakemake between jobs {smk_per_job:.2f} s/job and each rule's fixed cost per job:",
        "    as measured here",
        f"  + {a.cuda_init_s} s per job that starts CUDA ({rules_cuda})",
        f"  GEMM/peaks calls at the H200 spec ({bw:.0f} GB/s, {tf:.0f} TFLOP/s bf16), launch",
        f"    floor {a.launch_floor_us} us, {a.point_setup_s} s setup per point",
        f"  decode: the 3B build on the GPU {a.model_build_s} s, TPOT {a.tpot_ms} ms (eager),",
        f"    profiler {a.profiler_s} s",
        f"  ncu: {a.ncu_decode_s} s per decode capture, {a.ncu_gemm_s} s per GEMM capture",
        f"  {a.gpus} GPU(s): AllReduce world sizes above that are skipped records",
        f"  rules with no job here: {a.default_fixed_s} s fixed per job",
    ):
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default=None, help="config to run (default: the embedded one)")
    ap.add_argument("--keep", help="run in this folder and keep it (default: a temp folder)")
    ap.add_argument("--from", dest="src", help="report an existing run folder instead")
    ap.add_argument("--jobtimes", help="job records folder (default: <folder>/.jobtimes)")
    ap.add_argument("--wall", type=float, help="with --from: the run's wall time in seconds")
    ap.add_argument("--project", default=str(REPO / "config" / "h100.yaml"))
    ap.add_argument("--no-project", action="store_true")
    ap.add_argument("--cuda-init-s", type=float, default=2.0)
    ap.add_argument("--launch-floor-us", type=float, default=5.0)
    ap.add_argument("--point-setup-s", type=float, default=0.05)
    ap.add_argument("--model-build-s", type=float, default=4.0)
    ap.add_argument("--tpot-ms", type=float, default=20.0)
    ap.add_argument("--profiler-s", type=float, default=3.0)
    ap.add_argument("--ncu-decode-s", type=float, default=25.0)
    ap.add_argument("--ncu-gemm-s", type=float, default=12.0)
    ap.add_argument("--default-fixed-s", type=float, default=2.0)
    ap.add_argument("--gpus", type=int, default=1)
    a = ap.parse_args()

    if a.src:
        wd = Path(a.src)
        jt = Path(a.jobtimes or wd / ".jobtimes")
        jobs = jobtimes.load(jt, wd)
        rules = report(jobs, a.wall)
        wall = a.wall
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wd = Path(a.keep or tmp)
            wd.mkdir(parents=True, exist_ok=True)
            jt = wd / ".jobtimes"
            env = {**os.environ, jobtimes.ENV: str(jt)}
            print(f"load average before: {os.getloadavg()}")
            t0 = time.perf_counter()
            proc = smk(wd, a.configfile, "all", env=env)
            wall = time.perf_counter() - t0
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            print(f"cold run: {wall:.1f} s wall ({a.configfile or 'config/config.yaml'})")
            print(f"load average after: {os.getloadavg()}\n")
            rules = report(jobtimes.load(jt, wd), wall)
    if not a.no_project:
        project(rules, wall, a)


if __name__ == "__main__":
    main()
