"""Measured ceilings of this machine: the roofline's second pair of lines.

- Compute: square GEMMs (M = N = K from config) per dtype, timed like the warm Lab 2 loop
  (:func:`hwlab.gemm.time_op`); the best median over sizes is the measured peak, in the
  spirit of mamf-finder's "maximum achievable matmul FLOPS".
- Memory: STREAM-like kernels over fp32 arrays, each 2x the last-level cache (>= 256 MiB):
  copy (c = a; 2 x size bytes) and triad (a = b + s*c; 3 x size bytes), counting bytes the
  way STREAM does (write-allocate traffic is not counted). The measured bandwidth is the
  better of the two.
A CPU's only ceilings are these; on a GPU they sit beside the catalog's spec values.
"""

from __future__ import annotations

from typing import Any

from hwlab import formulas as F
from hwlab.device import Device
from hwlab.gemm import make_op, time_op

MIN_STREAM_BYTES = 256 * 1024**2


def stream_bytes(stream_mb: int, llc_bytes: int | None) -> int:
    if stream_mb:
        return stream_mb * 1024**2
    return max(MIN_STREAM_BYTES, 2 * (llc_bytes or 0))


def measure_compute(
    dev: Device,
    dtype: str,
    sizes: list[int],
    *,
    warmup: int,
    repeats: int,
    iters: int,
    seed: int = 0,
) -> dict[str, Any]:
    reason = dev.dtype_skip_reason(dtype)
    if reason:
        return {"status": "skipped", "reason": reason}
    by_size = {}
    for n in sizes:
        try:
            fn = make_op(dev, dtype, n, n, n, seed)
            t = time_op(dev, fn, l2="warm", warmup=warmup, repeats=repeats, iters=iters)
        except dev.oom_errors as e:
            dev.empty_cache()
            by_size[n] = {"status": "oom", "reason": str(e).splitlines()[0]}
            continue
        except RuntimeError as e:
            by_size[n] = {"status": "skipped", "reason": str(e).splitlines()[0]}
            continue
        s = F.median(t["device_s"])
        by_size[n] = {
            "status": "ok",
            "time_us": s * 1e6,
            "tflops": F.tflops(F.gemm_flops(n, n, n), s),
            "rel_spread": F.rel_spread(t["device_s"]),
        }
        del fn
    ok = {n: r for n, r in by_size.items() if r["status"] == "ok"}
    if not ok:
        return {"status": "skipped", "reason": "no size ran", "sizes": by_size}
    best = max(ok, key=lambda n: ok[n]["tflops"])
    return {
        "status": "ok",
        "reason": None,
        "tflops": ok[best]["tflops"],
        "best_size": best,
        "sizes": by_size,
    }


def measure_memory(
    dev: Device, nbytes: int, *, warmup: int, repeats: int, iters: int
) -> dict[str, Any]:
    torch = dev.torch
    n = nbytes // 4
    a = torch.ones(n, dtype=torch.float32, device=dev.torch_device)
    b = torch.full((n,), 2.0, dtype=torch.float32, device=dev.torch_device)
    c = torch.zeros(n, dtype=torch.float32, device=dev.torch_device)
    kernels = {
        "copy": (lambda: c.copy_(a), 2 * n * 4),
        "triad": (lambda: torch.add(b, c, alpha=3.0, out=a), 3 * n * 4),
    }
    out: dict[str, Any] = {"array_bytes": n * 4}
    for name, (fn, moved) in kernels.items():
        t = time_op(dev, fn, l2="warm", warmup=warmup, repeats=repeats, iters=iters)
        s = F.median(t["device_s"])
        out[f"{name}_gbps"] = F.gbps(moved, s)
        out[f"{name}_rel_spread"] = F.rel_spread(t["device_s"])
    out["mem_bw_gbps"] = max(out["copy_gbps"], out["triad_gbps"])
    return out


def measure(
    dev: Device,
    *,
    dtypes: list[str],
    gemm_sizes: list[int],
    stream_mb: int,
    llc_bytes: int | None,
    warmup: int,
    repeats: int,
    iters: int,
    seed: int = 0,
) -> dict[str, Any]:
    """All measured ceilings of ``dev`` as one JSON-able dict."""
    compute = {
        dt: measure_compute(
            dev, dt, gemm_sizes, warmup=warmup, repeats=repeats, iters=iters, seed=seed
        )
        for dt in dtypes
    }
    memory = measure_memory(
        dev, stream_bytes(stream_mb, llc_bytes), warmup=warmup, repeats=repeats, iters=iters
    )
    return {
        "threads": dev.threads if not dev.is_cuda else None,
        "method": {
            "gemm_sizes": gemm_sizes,
            "warmup": warmup,
            "repeats": repeats,
            "iters": iters,
            "timer": dev.timer_name,
        },
        "tflops": {dt: r.get("tflops") for dt, r in compute.items()},
        "mem_bw_gbps": memory["mem_bw_gbps"],
        "compute": compute,
        "memory": memory,
    }


def ceilings(
    peaks: dict[str, Any],
    spec: dict[str, Any] | None,
    dtype: str,
    sweep_best_tflops: float | None = None,
) -> dict[str, Any]:
    """Spec and measured ceilings for ``dtype``: what the % columns and the figure use.

    The measured compute ceiling is the best TFLOP/s this run achieved in ``dtype``: the
    peaks stage's square GEMMs or, if one did better, a sweep point (``sweep_best_tflops``).
    The % of peak columns use the spec when the catalog knows the device (as the writeup
    does) and the measured value otherwise; ``basis`` says which.
    """
    from hwlab.catalog import peak_tflops

    spec_dense = peak_tflops(spec, dtype)
    spec_sparse = peak_tflops(spec, dtype, sparse=True)
    spec_bw = spec.get("mem_bw_gbps") if spec else None
    meas_tf = (peaks.get("measured") or {}).get("tflops", {}).get(dtype)
    meas_src = "peaks stage (square GEMM)"
    if sweep_best_tflops is not None and (meas_tf is None or sweep_best_tflops > meas_tf):
        meas_tf, meas_src = sweep_best_tflops, "best sweep point"
    meas_bw = (peaks.get("measured") or {}).get("mem_bw_gbps")
    use_spec = spec_dense is not None and spec_bw is not None
    return {
        "spec_tflops": spec_dense,
        "spec_sparse_tflops": spec_sparse,
        "spec_bw_gbps": spec_bw,
        "measured_tflops": meas_tf,
        "measured_tflops_source": meas_src if meas_tf is not None else None,
        "measured_bw_gbps": meas_bw,
        "peak_tflops": spec_dense if use_spec else meas_tf,
        "bw_gbps": spec_bw if use_spec else meas_bw,
        "basis": "spec" if use_spec else "measured",
    }


def write_peaks_json(
    out: str,
    *,
    device_json: str,
    dtypes: list[str],
    gemm_sizes: list[int],
    stream_mb: int,
    warmup: int,
    repeats: int,
    iters: int,
    threads: int,
    seed: int,
) -> None:
    import time

    from hwlab.io import read_json, with_window, write_json

    start = time.time()
    info = read_json(device_json)
    dev = Device.from_info(info, threads)
    measured = measure(
        dev,
        dtypes=dtypes,
        gemm_sizes=gemm_sizes,
        stream_mb=stream_mb,
        llc_bytes=info.get("llc_bytes"),
        warmup=warmup,
        repeats=repeats,
        iters=iters,
        seed=seed,
    )
    rec = {
        "device": {"kind": info["kind"], "name": info["name"]},
        "measured": measured,
    }
    write_json(out, with_window(rec, start))
