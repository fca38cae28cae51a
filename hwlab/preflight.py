"""``hwlab preflight``: every CUDA path of the lab once, in one process, before the lab runs.

What it checks (each a row: pass / fail / skipped, the seconds it took, what it saw):
- versions: Python, torch and the CUDA it was built for, cuDNN, the driver (NVML), ncu,
  ncu_report (installed or Nsight Compute's extras/python), triton, transformers;
- CUDA events around ``torch.cuda._sleep`` (the device timer itself);
- the Lab 2 op through the pipeline's own code (:func:`hwlab.gemm.measure_point`) in bf16,
  fp8 and int8 at two M (int8 at M = 16 must be refused before launch), cold-L2 per-call
  timing (flush, start, call, end) and CUDA-graph timing;
- NVML GPU-Util sampled (:class:`hwlab.decode.UtilSampler`) while a GEMM loop runs;
- one prefill and decode step of the 3B architecture built on the GPU with seeded weights,
  under the decode stage's attention backend (flash) and under torch's own choice (auto):
  the SDPA op and attention kernels that ran (torch.profiler);
- ncu on one GEMM with each clock control (base, none), read back through ncu_report
  (:func:`hwlab.ncu_capture.capture_gemm`, the pipeline's capture);
- an NCCL all-reduce at world size 1 through the AllReduce stage's per-rank worker
  (:func:`hwlab.allreduce.worker`), so NCCL's code runs on a one-GPU host;
- memory statistics (mem_get_info, max_memory_allocated).
On a host without CUDA the CUDA rows are ``skipped`` with the reason, and a few CPU rows
run the same code paths (GEMM, decode step, the AllReduce worker over gloo) so CI checks
this command. The exit code is 1 if any row failed, else 0. ``--out DIR`` writes
``preflight.md`` and ``preflight.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARCH_3B = ROOT / "config" / "models" / "qwen2.5-3b.json"
ARCH_TINY = ROOT / "config" / "models" / "qwen2-tiny.json"
PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


@dataclass
class Row:
    check: str
    device: str
    status: str
    detail: str
    seconds: float | None = None


class Skip(Exception):
    """A check that cannot run here; the message says why."""


def lab_shape(arch: Path = ARCH_3B) -> dict[str, int]:
    """N and K of the Lab 2 GEMM: the FFN gate/up projection of ``arch`` (its
    ``intermediate_size`` outputs from ``hidden_size`` inputs)."""
    from hwlab.model import read_arch

    a = read_arch(arch)
    return {"N": int(a["intermediate_size"]), "K": int(a["hidden_size"])}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def check(rows: list[Row], name: str, device: str, fn: Callable[[], str | tuple[str, str]]):
    """Run one check: its detail on success, ``fail`` with the error (traceback to stderr),
    ``skipped`` on :class:`Skip`. ``fn`` may return (status, detail) to set the status."""
    t0 = time.perf_counter()
    try:
        out = fn()
        status, detail = out if isinstance(out, tuple) else (PASS, out)
    except Skip as e:
        status, detail = SKIPPED, str(e)
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        status, detail = FAIL, _first_line(e)
    row = Row(name, device, status, detail, round(time.perf_counter() - t0, 2))
    rows.append(row)
    print(f"preflight: {row.status:7} {name}: {detail}", file=sys.stderr, flush=True)
    return row


def exit_code(rows: list[Row]) -> int:
    return 1 if any(r.status == FAIL for r in rows) else 0


# ---- versions -----------------------------------------------------------------------------
def _dist_version(name: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def versions(ncu_path: str = "auto") -> dict[str, Any]:
    import platform

    import torch

    from hwlab.device import _nvml_driver
    from hwlab.ncu import NcuReportMissing, import_ncu_report
    from hwlab.ncu_capture import find_ncu, ncu_version

    ncu, _ = find_ncu(ncu_path)
    try:
        mod = import_ncu_report(ncu)
        report = getattr(mod, "__file__", None) or "imported"
    except NcuReportMissing as e:
        report = f"missing: {e}"
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "driver": _nvml_driver(),
        "ncu": ncu,
        "ncu_version": ncu_version(ncu) if ncu else None,
        "ncu_report": report,
        "triton": _dist_version("triton"),
        "transformers": _dist_version("transformers"),
        "nvidia_ml_py": _dist_version("nvidia-ml-py"),
        "host": socket.gethostname(),
    }


# ---- the checks ---------------------------------------------------------------------------
def _gemm(dev, dtype: str, M: int, l2: str = "warm", timing: str = "events", **kw):
    from hwlab.gemm import measure_point

    args = dict(warmup=5, repeats=3, iters=20, flush_mb=0, target_spread=0.0) | kw
    return measure_point(
        dev, shape="ffn_gate_up", M=M, dtype=dtype, l2=l2, timing=timing, **lab_shape(), **args
    )


def _gemm_detail(rec: dict[str, Any]) -> tuple[str, str]:
    if rec["status"] != "ok":
        return FAIL, f"{rec['status']}: {rec['reason']}"
    d = (
        f"{rec['gpu_time_us']:.4g} us/call ({rec['timing_mode']}), {rec['tflops']:.3g} TFLOP/s, "
        f"dispatch {rec['dispatch_us']:.3g} us/call, wall {rec['wall_time_us']:.4g} us, "
        f"spread {rec['rel_spread']:.2%} over {rec['n_repeats']}"
    )
    return PASS, d


def cuda_checks(
    rows: list[Row],
    dev,
    *,
    ncu_path: str,
    arch: Path,
    workdir: Path,
    run_check: Callable[..., object] = check,
) -> None:
    """The CUDA rows, in order, each through ``run_check`` (:func:`check`; another callable
    with its signature lists the rows without running them, see :func:`cuda_check_names`).
    Everything a check needs happens inside it, so listing the rows touches no GPU."""

    def events() -> str:
        import torch

        cycles = 2_000_000
        s = dev.bench(lambda: torch.cuda._sleep(cycles), iters=1, mode="loop", min_repeats=3)
        t = s.median_s
        if not 0 < t < 1:
            return FAIL, f"torch.cuda._sleep({cycles}) timed at {t * 1e3:.3g} ms"
        ghz = cycles / t / 1e9
        return f"_sleep({cycles:,} cycles) = {t * 1e3:.3g} ms by CUDA events (~{ghz:.2f} GHz)"

    run_check(rows, "CUDA events", "cuda", events)
    for dtype in ("bf16", "fp8", "int8"):
        for M in (16, 256):

            def gemm(dtype=dtype, M=M):
                rec = _gemm(dev, dtype, M)
                if dtype == "int8" and M <= 16:
                    ok = rec["status"] == "skipped" and "not launched" in (rec["reason"] or "")
                    return (PASS if ok else FAIL), f"{rec['status']}: {rec['reason']}"
                return _gemm_detail(rec)

            run_check(rows, f"GEMM {dtype} M={M} (warm, events)", "cuda", gemm)

    def cold() -> tuple[str, str]:
        rec = _gemm(dev, "bf16", 16, l2="cold")
        status, d = _gemm_detail(rec)
        return status, d + f", flush {rec['method'].get('flush_bytes', 0) / 2**20:.0f} MiB"

    run_check(rows, "GEMM bf16 M=16 cold L2 (flush, start, call, end)", "cuda", cold)

    def graph() -> tuple[str, str]:
        rec = _gemm(dev, "bf16", 1, timing="graph")
        ev = _gemm(dev, "bf16", 1)
        status, d = _gemm_detail(rec)
        if ev["status"] == "ok":
            d += (
                f"; events loop {ev['gpu_time_us']:.4g} us/call, dispatch ratio "
                f"{ev['dispatch_ratio']:.2f} (dispatch-bound: {ev['dispatch_bound']})"
            )
        return status, d

    run_check(rows, "GEMM bf16 M=1 warm, CUDA graph replay vs events", "cuda", graph)

    def nvml() -> tuple[str, str]:
        from hwlab.decode import UtilSampler
        from hwlab.gemm import make_op

        fn = make_op(dev, "bf16", 4096, 4096, 4096)
        sampler = UtilSampler(dev, 20)
        sampler.prepare()
        sampler.start()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            for _ in range(20):
                fn()
            dev.synchronize()
        out = sampler.stop()
        if not out["gpu_util_samples"]:
            return FAIL, f"no GPU-Util sample: {out['gpu_util_reason']}"
        d = (
            f"{out['gpu_util_samples']} samples, mean {out['gpu_util_mean_pct']:.0f}%, max "
            f"{out['gpu_util_max_pct']}% during a bf16 GEMM loop; NVML device by "
            f"{out['gpu_util_device']}"
        )
        return (PASS if out["gpu_util_max_pct"] else FAIL), d

    run_check(rows, "NVML GPU-Util during a kernel loop", "cuda", nvml)

    def decode3b() -> str:
        import torch

        try:
            return _decode_step(dev, arch, "bf16", ("flash", "auto"), workdir)
        finally:
            torch.cuda.empty_cache()

    run_check(rows, f"decode step of {arch.stem} (built on the GPU)", "cuda", decode3b)

    device_json = workdir / "device.json"

    def ncu(clock: str) -> tuple[str, str]:
        from hwlab.device import detect
        from hwlab.io import write_json

        write_json(device_json, detect("cuda"))  # what capture_gemm reads the device from
        return _ncu_gemm(device_json, clock, ncu_path, workdir)

    for clock in ("base", "none"):
        run_check(
            rows,
            f"ncu on GEMM bf16 M=64, --clock-control {clock}",
            "cuda",
            lambda clock=clock: ncu(clock),
        )
    run_check(rows, "NCCL all-reduce, world size 1", "cuda", lambda: _allreduce_w1("nccl", workdir))

    def memory() -> str:
        import torch

        free, total = torch.cuda.mem_get_info(dev.torch_device)
        st = torch.cuda.memory_stats(dev.torch_device)
        return (
            f"free {free / 2**30:.1f} / {total / 2**30:.1f} GiB; torch peak allocated "
            f"{torch.cuda.max_memory_allocated(dev.torch_device) / 2**30:.2f} GiB, reserved "
            f"{torch.cuda.memory_reserved(dev.torch_device) / 2**30:.2f} GiB, "
            f"{st.get('num_alloc_retries', 0)} alloc retries, {st.get('num_ooms', 0)} OOMs"
        )

    run_check(rows, "memory statistics", "cuda", memory)


def _decode_step(dev, arch: Path, dtype: str, backends, workdir: Path) -> str:
    """Build ``arch`` on the device, prefill 16 tokens and run a decode step under each
    backend inside torch.profiler; the SDPA ops and attention kernels that ran."""
    from torch.profiler import ProfilerActivity, profile

    from hwlab import decode as D
    from hwlab import model as M

    t0 = time.perf_counter()
    m = M.build_random(arch, dtype=dtype, device=str(dev.torch_device), seed=0)
    dev.synchronize()
    build_s = time.perf_counter() - t0
    ids = D.random_prompt(1, 16, int(m.config.vocab_size), 0, dev.torch_device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.is_cuda else [])
    parts = [f"built in {build_s:.1f} s ({M.param_count(m) / 1e9:.2f} B params, {dtype})"]
    for backend in backends:
        with D.sdpa_context(backend):
            cache, nxt = D.prefill(m, ids)  # warm: first-call costs out of the window
            D.decode_step(m, cache, nxt)
            dev.synchronize()
            with profile(activities=acts) as prof:
                cache, nxt = D.prefill(m, ids)
                nxt = D.decode_step(m, cache, nxt)
                dev.synchronize()
        trace = workdir / f"decode-{backend}.json"
        prof.export_chrome_trace(str(trace))
        used = D.attention_used(json.loads(trace.read_text()))
        if not used["attention_ops"]:
            raise RuntimeError(f"sdpa {backend}: no SDPA op in the profiled step")
        kernels = ", ".join(f"{k} x{n}" for k, n in used["attention_kernels_short"].items())
        parts.append(
            f"sdpa {backend}: {', '.join(used['attention_ops'])}"
            + (f" -> {kernels}" if kernels else "")
        )
    del m
    return "; ".join(parts)


def _ncu_gemm(device_json: Path, clock: str, ncu_path: str, workdir: Path) -> tuple[str, str]:
    from hwlab.ncu_capture import capture_gemm, find_ncu

    ncu, searched = find_ncu(ncu_path)
    if ncu is None:
        raise Skip(f"ncu not found (searched {', '.join(searched)})")
    out = workdir / f"ncu-gemm-{clock}.json"
    rec = capture_gemm(
        str(out),
        device_json=str(device_json),
        mapping_path=str(ROOT / "config" / "ncu_metrics.yaml"),
        shape="ffn_gate_up",
        M=64,
        dtype="bf16",
        seed=0,
        launch_count=1,
        clock_control=clock,
        cache_control="all",
        ncu_path=ncu,
        **lab_shape(),
    )
    ran = rec.get("clock_control")
    fb = rec.get("clock_control_fallback")
    note = f" (refused {clock}, retried with none: {fb['because']})" if fb else ""
    if rec["status"] != "ok":
        return FAIL, f"{rec['status']}: {rec['reason']}{note}"
    from hwlab.ncu import load_mapping, read_report

    launches = read_report(out.with_suffix(".ncu-rep"), load_mapping())
    dram = launches[0].values.get("dram_bytes_read")
    d = (
        f"{rec['launches']} launch(es) {', '.join(rec['kernels'])}, clock control {ran}{note}; "
        f"read back with ncu_report: dram_bytes_read = "
        f"{dram.value if dram and dram.value is not None else '—'} {dram.unit if dram else ''}"
    )
    if rec.get("clock_messages"):
        d += f"; ncu said: {' | '.join(rec['clock_messages'])}"
    return PASS, d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _allreduce_w1(backend: str, workdir: Path) -> str:
    """The AllReduce stage's rank worker at world size 1 in this process."""
    from dataclasses import asdict as dc_asdict

    from hwlab import allreduce as A
    from hwlab.io import read_json

    dtype = "bf16" if backend == "nccl" else "fp32"
    pattern = A.pattern_for(1, dtype)
    spec = {
        "backend": backend,
        "dtype": dtype,
        "points": A.plan_points(dtype, 1024, 1 << 20, 1, 3, 1, 0),
        "pattern": dc_asdict(pattern) if pattern else None,
        "threads_per_rank": 1,
        "timeout_s": 120,
        "raw": str(workdir / f"allreduce-{backend}-w1.json"),
    }
    env = {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        A.worker(spec)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    raw = read_json(spec["raw"])
    rows = A.combine_ranks(raw["ranks"])
    bad = [r["size_bytes"] for r in rows if r.get("correct") is False or r["status"] != "ok"]
    if bad:
        raise RuntimeError(f"all-reduce wrong or failed at sizes {bad}")
    last = rows[-1]
    return (
        f"{len(rows)} sizes {rows[0]['size_bytes']} B .. {last['size_bytes']} B, all exact; "
        f"{last['size_bytes']} B in {last['time_s'] * 1e6:.3g} us ({raw['timer']})"
    )


def cpu_checks(rows: list[Row], dev, workdir: Path) -> None:
    """The shared code paths on a CPU (what CI can run)."""

    def gemm() -> tuple[str, str]:
        from hwlab.gemm import measure_point

        parts = []
        for l2 in ("warm", "cold"):
            rec = measure_point(
                dev, shape="s", M=16, N=1024, K=512, dtype="fp32", l2=l2, warmup=1,
                repeats=3, iters=3, flush_mb=8,
            )  # fmt: skip
            status, d = _gemm_detail(rec)
            if status != PASS:
                return status, f"{l2}: {d}"
            parts.append(f"{l2}: {d}")
        return PASS, "; ".join(parts)

    check(rows, "GEMM fp32 M=16 warm + cold (the pipeline's measure_point)", "cpu", gemm)
    check(
        rows,
        f"decode step of {ARCH_TINY.stem}",
        "cpu",
        lambda: _decode_step(dev, ARCH_TINY, "fp32", ("flash",), workdir),
    )
    check(
        rows,
        "AllReduce rank worker, gloo, world size 1",
        "cpu",
        lambda: _allreduce_w1("gloo", workdir),
    )


def cuda_check_names(arch: Path = ARCH_3B) -> list[str]:
    """The names of the rows :func:`cuda_checks` makes, in order, without running any (a
    host without CUDA lists them as skipped)."""
    rows: list[Row] = []

    def name_only(rows: list[Row], name: str, device: str, fn) -> None:
        rows.append(Row(name, device, SKIPPED, "not run"))

    cuda_checks(rows, None, ncu_path="", arch=Path(arch), workdir=Path(), run_check=name_only)
    return [r.check for r in rows]


def run(*, ncu_path: str = "auto", arch: Path = ARCH_3B, workdir: Path | None = None):
    """All checks; returns (versions, rows)."""
    import torch

    from hwlab.device import Device

    with tempfile.TemporaryDirectory(prefix="hwlab-preflight-") as tmp:
        wd = Path(workdir or tmp)
        wd.mkdir(parents=True, exist_ok=True)
        ver = versions(ncu_path)
        rows: list[Row] = []
        if torch.cuda.is_available():
            cuda_checks(rows, Device("cuda", 0), ncu_path=ncu_path, arch=Path(arch), workdir=wd)
        else:
            why = (
                f"no CUDA device: torch {torch.__version__} (built for CUDA "
                f"{torch.version.cuda}) sees none (torch.cuda.is_available() is False)"
            )
            ver["cuda_rows_skipped"] = why
            rows += [
                Row(name, "cuda", SKIPPED, "no CUDA device (see above)")
                for name in cuda_check_names(Path(arch))
            ]
            cpu_checks(rows, Device("cpu"), wd)
    return ver, rows


def markdown(ver: dict[str, Any], rows: list[Row]) -> str:
    lines = ["### hwlab preflight", ""]
    lines += [f"- {k}: {v}" for k, v in ver.items()]
    lines += ["", "| check | device | status | seconds | detail |", "|---|---|---|---|---|"]
    for r in rows:
        detail = r.detail.replace("|", "\\|").replace("\n", " ")
        secs = "—" if r.seconds is None else f"{r.seconds:.2f}"
        lines.append(f"| {r.check} | {r.device} | {r.status} | {secs} | {detail} |")
    n = {s: sum(r.status == s for r in rows) for s in (PASS, FAIL, SKIPPED)}
    lines += ["", f"{n[PASS]} passed, {n[FAIL]} failed, {n[SKIPPED]} skipped"]
    return "\n".join(lines) + "\n"


def _preflight(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    ver, rows = run(ncu_path=args.ncu_path, arch=Path(args.arch))
    text = markdown(ver, rows) + f"\n(preflight took {time.perf_counter() - t0:.1f} s)\n"
    sys.stdout.write(text)
    if args.out:
        from hwlab.io import write_json, write_text

        out = Path(args.out)
        write_text(out / "preflight.md", text)
        write_json(
            out / "preflight.json",
            {"versions": ver, "rows": [asdict(r) for r in rows], "exit_code": exit_code(rows)},
        )
    return exit_code(rows)


def register_cli(sub) -> None:
    p = sub.add_parser(
        "preflight",
        help="every CUDA path of the lab once, in one process: a pass/fail table",
        description="Exercise every CUDA path of the lab once, in one process, and print a "
        "pass/fail table with versions (torch, CUDA, cuDNN, driver, ncu). On a host without "
        "CUDA the CUDA rows are skipped with the reason and CPU rows run the shared code. "
        "Exit code 1 if any row failed.",
    )
    p.add_argument("--out", help="folder for preflight.md and preflight.json")
    p.add_argument("--ncu-path", default="auto", help="ncu binary (default: auto, searched)")
    p.add_argument(
        "--arch",
        default=str(ARCH_3B),
        help="architecture of the decode step (default: config/models/qwen2.5-3b.json)",
    )
    p.set_defaults(func=_preflight)
