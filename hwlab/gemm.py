"""Lab 2: time one GEMM sweep point the way the model computes it.

Method (the writeup's, made explicit):
- The op is ``F.linear(x, w)``: activation x[M, K] times weight w[N, K]^T, as a transformer's
  projection computes it (fp8: ``torch._scaled_mm`` with unit scales, bf16 out; int8:
  ``torch._int_mm``, int32 out).
- ``warmup`` untimed calls, then ``repeats`` timed repeats of ``iters`` calls each.
  L2 ``warm``: the ``iters`` calls run back to back inside one timed region (the writeup's
  loop; the weight can stay in the last-level cache between calls). L2 ``cold``: before
  every call, untimed, a buffer larger than the last-level cache is rewritten and each call
  is timed alone (triton's do_bench flush), so the weight comes from DRAM.
- Time per call = region time / iters for each repeat; the reported time is the median over
  repeats, with min / max and the relative spread beside it. Device time is CUDA events on a
  GPU and perf_counter_ns on a CPU (see :mod:`hwlab.device`); wall time is recorded too.
- FLOPs = 2MNK; analytic bytes = A + B + C read/written once (see :mod:`hwlab.formulas`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hwlab import formulas as F
from hwlab.device import Device, Samples
from hwlab.dtypes import gemm_dtype
from hwlab.io import OK, OOM, SKIPPED, record

MIN_FLUSH_BYTES = 256 * 1024**2


def flush_bytes(flush_mb: int, llc_bytes: int | None) -> int:
    """Cold-mode flush size: as configured, else 2x the last-level cache, >= 256 MiB."""
    if flush_mb:
        return flush_mb * 1024**2
    return max(MIN_FLUSH_BYTES, 2 * (llc_bytes or 0))


def make_op(dev: Device, dtype: str, m: int, n: int, k: int, seed: int = 0) -> Callable[[], Any]:
    """Allocate inputs on ``dev`` and return the zero-argument GEMM call."""
    torch = dev.torch
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(m, k, generator=gen)
    w = torch.randn(n, k, generator=gen)
    if dtype in ("fp32", "tf32", "fp16", "bf16"):
        tdt = {
            "fp32": torch.float32,
            "tf32": torch.float32,
            "fp16": torch.float16,
            "bf16": torch.bfloat16,
        }[dtype]
        if dev.is_cuda:
            torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        x, w = x.to(dev.torch_device, tdt), w.to(dev.torch_device, tdt)
        linear = torch.nn.functional.linear
        return lambda: linear(x, w)
    if dtype == "fp8":
        f8 = torch.float8_e4m3fn
        x8, w8 = x.to(dev.torch_device, f8), w.to(dev.torch_device, f8)
        one = torch.ones((), device=dev.torch_device)
        wt = w8.t()  # column-major view, as _scaled_mm wants its second operand
        return lambda: torch._scaled_mm(x8, wt, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    if dtype == "int8":
        xi = x.clamp(-127, 127).to(dev.torch_device, torch.int8)
        wt = w.clamp(-127, 127).to(dev.torch_device, torch.int8).t()
        return lambda: torch._int_mm(xi, wt)
    raise ValueError(f"unknown dtype {dtype!r}")


def derived(m: int, n: int, k: int, dtype: str, seconds: float) -> dict[str, float]:
    """The Lab 2 columns that follow from the shape, the dtype and the time per call."""
    dt = gemm_dtype(dtype)
    flops = F.gemm_flops(m, n, k)
    nbytes = F.gemm_bytes(m, n, k, dt.in_bytes, dt.in_bytes, dt.out_bytes)
    return {
        "flops": flops,
        "bytes": nbytes,
        "ai": F.arithmetic_intensity(flops, nbytes),
        "tflops": F.tflops(flops, seconds),
        "eff_gbps": F.gbps(nbytes, seconds),
    }


def time_op(
    dev: Device,
    fn: Callable[[], Any],
    *,
    l2: str,
    warmup: int,
    repeats: int,
    iters: int,
    flush: Callable[[], Any] | None = None,
    **adaptive: Any,
) -> Samples:
    """Per-call device and wall seconds of each repeat (see the module docstring): warm is
    :meth:`Device.bench`'s ``loop`` mode, cold its ``each`` mode with ``flush`` before every
    call. ``adaptive`` passes target_spread / budget_s / max_repeats through."""
    if l2 not in ("warm", "cold"):
        raise ValueError(f"l2 must be warm or cold, got {l2!r}")
    return dev.bench(
        fn,
        iters=iters,
        mode="loop" if l2 == "warm" else "each",
        flush=flush if l2 == "cold" else None,
        warmup=warmup,
        min_repeats=repeats,
        **adaptive,
    )


def measure_point(
    dev: Device,
    *,
    shape: str,
    M: int,
    N: int,
    K: int,
    dtype: str,
    l2: str,
    warmup: int,
    repeats: int,
    iters: int,
    flush_mb: int = 0,
    llc_bytes: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure one sweep point; returns its record (status ok, skipped or oom)."""
    point = {
        "shape": shape,
        "M": M,
        "N": N,
        "K": K,
        "dtype": dtype,
        "l2": l2,
        "device_kind": dev.kind,
        "threads": dev.threads if not dev.is_cuda else None,
        "method": {
            "warmup": warmup,
            "repeats": repeats,
            "iters": iters,
            "timer": dev.timer_name,
            "op": {"fp8": "torch._scaled_mm", "int8": "torch._int_mm"}.get(
                dtype, "torch.nn.functional.linear"
            ),
        },
    }
    reason = dev.dtype_skip_reason(dtype)
    if reason:
        return record(SKIPPED, reason, **point)
    try:
        fn = make_op(dev, dtype, M, N, K, seed)
        try:
            fn()
        except RuntimeError as e:  # the op itself refuses this dtype/shape on this device
            if isinstance(e, dev.oom_errors):
                raise
            return record(
                SKIPPED,
                f"{point['method']['op']} refused {dtype} at M={M}: {str(e).splitlines()[0]}",
                **point,
            )
        flush = None
        if l2 == "cold":
            nflush = flush_bytes(flush_mb, llc_bytes)
            point["method"]["flush_bytes"] = nflush
            flush = dev.flusher(nflush)
        times = time_op(dev, fn, l2=l2, warmup=warmup, repeats=repeats, iters=iters, flush=flush)
    except dev.oom_errors as e:
        dev.empty_cache()
        return record(OOM, f"out of memory: {str(e).splitlines()[0]}", **point)
    stats = times.stats()
    return record(
        OK,
        None,
        **point,
        gpu_time_us=stats.pop("time_us"),
        **stats,
        **derived(M, N, K, dtype, times.median_s),
    )


def write_point_json(out: str, *, device_json: str, threads: int, **point: Any) -> None:
    """Measure one sweep point on the run's device and write its record."""
    import time

    from hwlab.io import read_json, with_window, write_json

    start = time.time()
    info = read_json(device_json)
    dev = Device.from_info(info, threads)
    rec = measure_point(dev, llc_bytes=info.get("llc_bytes"), **point)
    write_json(out, with_window(rec, start))
