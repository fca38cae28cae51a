"""Lab 2: time the GEMM sweep the way the model computes it, one job per sweep.

Method (the writeup's, made explicit):
- The op is ``F.linear(x, w)``: activation x[M, K] times weight w[N, K]^T, as a transformer's
  projection computes it (fp8: ``torch._scaled_mm`` with unit scales, bf16 out; int8:
  ``torch._int_mm``, int32 out). Inputs are drawn from a seeded generator on the device
  itself (no host staging on a GPU); one sweep (shape x dtype x L2 mode) draws its weight
  once and one activation per M.
- Before anything is allocated, each point's memory is estimated (inputs, output, the cold
  flush buffer, the fp32 draw they are converted from, and on a GPU the context and cuBLAS
  workspace): a point that cannot fit the device (GPU: its total memory; CPU: the host
  memory available now plus what the sweep already holds) is an ``oom`` record saying so,
  never an allocation of terabytes. ``torch._int_mm`` on CUDA needs M > 16 (and K, N
  multiples of 8): such points are ``skipped`` before launch.
- ``warmup`` untimed calls, then repeats of ``iters`` calls each through
  :meth:`hwlab.device.Device.bench` (the one timer). L2 ``warm``: the ``iters`` calls back to
  back in one timed region (``gemm.timing: events``, the writeup's loop; the weight can stay
  in the last-level cache) or captured once in a CUDA graph and replayed (``graph``, as
  triton's ``do_bench_cudagraph``: no per-call launch cost). L2 ``cold``: before every call,
  untimed, a buffer larger than the last-level cache is rewritten and each call is timed
  alone in triton ``do_bench``'s order (flush, start marker, call, end marker; one sync per
  repeat), so the weight comes from DRAM. A graph cannot flush between its calls, so cold
  points are always timed with events; the record says so (``timing_note``).
- Repeats: at least ``repeats``; with ``target_spread`` more, until the median's relative
  95% CI width is at most the target, or ``budget_s`` seconds are spent on the point, or
  ``max_repeats``. Time per call = region time / iters per repeat; the reported time is
  the median over repeats, with min / max, the CI, the spreads, whether the target was
  reached and why the repeats stopped. Device time is CUDA events on a GPU and
  perf_counter_ns on a CPU; wall time and host dispatch time per call are recorded beside
  it. A warm events point whose host dispatch per call is at least
  :data:`DISPATCH_BOUND_RATIO` of its device time per call was fed by Python, not bound by
  the GPU (``dispatch_bound``; only on a GPU, where the two clocks differ).
- FLOPs = 2MNK; analytic bytes = A + B + C read/written once (see :mod:`hwlab.formulas`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hwlab import formulas as F
from hwlab.device import Device, Samples
from hwlab.dtypes import gemm_dtype
from hwlab.io import OK, OOM, SKIPPED, record, with_window

MIN_FLUSH_BYTES = 256 * 1024**2
TIMINGS = ("events", "graph")
# host dispatch per call / device time per call at or above which a warm events point is
# bound by Python dispatch (the GPU waited for the host between calls)
DISPATCH_BOUND_RATIO = 0.8
# CUDA context, cuBLAS(Lt) workspace and allocator slack beside a point's own tensors
CUDA_HEADROOM_BYTES = 1024**3
INT8_CUDA_MIN_M = 17
OPS = {"fp8": "torch._scaled_mm", "int8": "torch._int_mm"}


def op_name(dtype: str) -> str:
    return OPS.get(dtype, "torch.nn.functional.linear")


def flush_bytes(flush_mb: int, llc_bytes: int | None) -> int:
    """Cold-mode flush size: as configured, else 2x the last-level cache, >= 256 MiB."""
    if flush_mb:
        return flush_mb * 1024**2
    return max(MIN_FLUSH_BYTES, 2 * (llc_bytes or 0))


# ---- before allocating: memory and launch checks (pure) -----------------------------------
def point_memory(
    m: int, n: int, k: int, dtype: str, *, flush: int = 0, device_kind: str = "cpu"
) -> dict[str, int]:
    """Bytes one sweep point holds at its peak: activation, weight, output, flush buffer,
    the fp32 draw a converted input is made from (twice for int8: clamp), and on a GPU the
    context and workspace headroom. ``total`` is their sum."""
    dt = gemm_dtype(dtype)
    drafts = {"fp32": 0, "tf32": 0, "int8": 2}.get(dtype, 1)  # fp32 copies while converting
    parts = {
        "activation": m * k * dt.in_bytes,
        "weight": n * k * dt.in_bytes,
        "output": m * n * dt.out_bytes,
        "flush": int(flush),
        "staging": drafts * 4 * max(m, n) * k,
        "headroom": CUDA_HEADROOM_BYTES if device_kind == "cuda" else 0,
    }
    parts["total"] = sum(parts.values())
    return parts


def _gib(nbytes: float) -> str:
    v = nbytes / 1024**3
    return f"{v:,.0f} GiB" if v >= 100 else f"{v:.3g} GiB"


def memory_refusal(need: dict[str, int], limit: int | None, limit_what: str) -> str | None:
    """Why a point of estimated footprint ``need`` is not allocated, or None if it fits."""
    if limit is None or need["total"] <= limit:
        return None
    parts = ", ".join(f"{k} {_gib(v)}" for k, v in need.items() if k != "total" and v)
    return (
        f"not allocated: needs about {_gib(need['total'])} ({parts}), more than the "
        f"{_gib(limit)} {limit_what}"
    )


def launch_refusal(device_kind: str, dtype: str, m: int, n: int, k: int) -> str | None:
    """Shapes an op refuses on this device, known before launching it (or None).

    ``torch._int_mm`` on CUDA (cuBLASLt int8) checks ``self.size(0) > 16`` and that K and N
    are multiples of 8 (aten/src/ATen/native/cuda/Blas.cpp, ``_int_mm_out_cuda``)."""
    if device_kind == "cuda" and dtype == "int8":
        if m < INT8_CUDA_MIN_M:
            return f"torch._int_mm on CUDA needs M > 16 (got M={m}): not launched"
        if k % 8 or n % 8:
            return f"torch._int_mm on CUDA needs K and N multiples of 8 (K={k}, N={n})"
    return None


def timing_plan(timing: str, l2: str, device_kind: str) -> tuple[str | None, str | None]:
    """(Device.bench mode or None to skip, a note) for ``gemm.timing`` at this L2 mode."""
    if timing not in TIMINGS:
        raise ValueError(f"gemm.timing must be one of {TIMINGS}, got {timing!r}")
    if l2 == "cold":
        note = None
        if timing == "graph":
            note = (
                "gemm.timing graph applies to warm L2 points only (a graph replay cannot "
                "flush the cache between its calls): this cold point is timed per call with "
                "events, flush before each"
            )
        return "each", note
    if timing == "graph":
        if device_kind != "cuda":
            return None, (
                f"gemm.timing graph replays a CUDA graph; this run's device is {device_kind}"
            )
        return "graph", None
    return "loop", None


def dispatch_bound(device_kind: str, mode: str, time_us: float, dispatch_us: float):
    """(host dispatch / device time per call, dispatch-bound?) — None where not meaningful:
    on a CPU (one clock) and outside the warm events loop (graph: no per-call dispatch;
    cold: the flush gives the host its head start)."""
    if device_kind != "cuda" or not time_us:
        return None, None
    ratio = dispatch_us / time_us
    if mode != "loop":
        return ratio, None
    return ratio, ratio >= DISPATCH_BOUND_RATIO


# ---- tensors and the op --------------------------------------------------------------------
def _generator(dev: Device, seed: int):
    torch = dev.torch
    return torch.Generator(device=dev.torch_device).manual_seed(int(seed))


def _draw(dev: Device, rows: int, cols: int, seed: int):
    torch = dev.torch
    return torch.randn(
        rows, cols, generator=_generator(dev, seed), device=dev.torch_device, dtype=torch.float32
    )


def _convert(dev: Device, dtype: str, t):
    torch = dev.torch
    if dtype in ("fp32", "tf32"):
        return t
    if dtype == "fp16":
        return t.to(torch.float16)
    if dtype == "bf16":
        return t.to(torch.bfloat16)
    if dtype == "fp8":
        return t.to(torch.float8_e4m3fn)
    if dtype == "int8":
        return t.clamp(-127, 127).to(torch.int8)
    raise ValueError(f"unknown dtype {dtype!r}")


def make_weight(dev: Device, dtype: str, n: int, k: int, seed: int = 0):
    """The weight [N, K], seeded, on the device, in the layout the op takes (fp8 and int8:
    the column-major [K, N] view their matmuls want as second operand)."""
    gemm_dtype(dtype)
    w = _convert(dev, dtype, _draw(dev, n, k, 2 * seed))
    return w.t() if dtype in ("fp8", "int8") else w


def make_input(dev: Device, dtype: str, m: int, k: int, seed: int = 0):
    """The activation [M, K], seeded (per M), on the device."""
    return _convert(dev, dtype, _draw(dev, m, k, 2 * seed + 1 + 7919 * m))


def bind(dev: Device, dtype: str, x, w) -> Callable[[], Any]:
    """The zero-argument GEMM call on prepared tensors."""
    torch = dev.torch
    if dev.is_cuda:
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    if dtype in ("fp32", "tf32", "fp16", "bf16"):
        linear = torch.nn.functional.linear
        return lambda: linear(x, w)
    if dtype == "fp8":
        one = torch.ones((), device=dev.torch_device, dtype=torch.float32)
        return lambda: torch._scaled_mm(x, w, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    if dtype == "int8":
        return lambda: torch._int_mm(x, w)
    raise ValueError(f"unknown dtype {dtype!r}")


def make_op(dev: Device, dtype: str, m: int, n: int, k: int, seed: int = 0) -> Callable[[], Any]:
    """Allocate inputs on ``dev`` and return the zero-argument GEMM call."""
    return bind(dev, dtype, make_input(dev, dtype, m, k, seed), make_weight(dev, dtype, n, k, seed))


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
    mode: str | None = None,
    **adaptive: Any,
) -> Samples:
    """Per-call device and wall seconds of each repeat (see the module docstring): warm is
    :meth:`Device.bench`'s ``loop`` mode (or ``graph``), cold its ``each`` mode with
    ``flush`` before every call. ``adaptive`` passes target_spread / budget_s / max_repeats
    through."""
    if l2 not in ("warm", "cold"):
        raise ValueError(f"l2 must be warm or cold, got {l2!r}")
    if mode is None:
        mode = "loop" if l2 == "warm" else "each"
    return dev.bench(
        fn,
        iters=iters,
        mode=mode,
        flush=flush if l2 == "cold" else None,
        warmup=warmup,
        min_repeats=repeats,
        **adaptive,
    )


# ---- memory available to a point -----------------------------------------------------------
def host_available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (what can be allocated now without swapping)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _Sweep:
    """The tensors one sweep shares (weight, flush buffer) and the memory they hold."""

    def __init__(self, dev: Device, *, dtype: str, n: int, k: int, seed: int, total: int | None):
        self.dev, self.dtype, self.n, self.k, self.seed = dev, dtype, n, k, seed
        self.total = total  # GPU: total memory; None on a CPU (read per point)
        self.weight = None
        self.flush: Callable[[], Any] | None = None
        self.flush_nbytes = 0
        self.held = 0

    def limit(self) -> tuple[int | None, str]:
        if self.dev.is_cuda:
            return self.total, "of GPU memory in total"
        avail = host_available_bytes()
        return (None if avail is None else avail + self.held), "of host memory available"

    def get_weight(self):
        if self.weight is None:
            self.weight = make_weight(self.dev, self.dtype, self.n, self.k, self.seed)
            self.held += self.n * self.k * gemm_dtype(self.dtype).in_bytes
        return self.weight

    def get_flush(self, nbytes: int) -> Callable[[], Any]:
        if self.flush is None:
            self.flush = self.dev.flusher(nbytes)
            self.flush_nbytes = nbytes
            self.held += nbytes
        return self.flush


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
    timing: str = "events",
    target_spread: float = 0.0,
    budget_s: float = 0.0,
    max_repeats: int = 0,
    total_memory_bytes: int | None = None,
    _sweep: _Sweep | None = None,
) -> dict[str, Any]:
    """Measure one sweep point; returns its record (status ok, skipped or oom)."""
    mode, note = timing_plan(timing, l2, dev.kind)
    point: dict[str, Any] = {
        "shape": shape,
        "M": M,
        "N": N,
        "K": K,
        "dtype": dtype,
        "l2": l2,
        "device_kind": dev.kind,
        "threads": dev.threads if not dev.is_cuda else None,
        "timing": timing,
        "timing_note": note,
        "method": {
            "warmup": warmup,
            "repeats": repeats,
            "iters": iters,
            "timer": dev.timer_name,
            "op": op_name(dtype),
            "timing": timing,
            "bench_mode": mode,
            "target_spread": target_spread or None,
            "budget_s": budget_s or None,
            "max_repeats": max_repeats or None,
        },
    }
    reason = dev.dtype_skip_reason(dtype) or launch_refusal(dev.kind, dtype, M, N, K)
    if reason:
        return record(SKIPPED, reason, **point)
    if mode is None:
        return record(SKIPPED, note, **point)
    sweep = _sweep or _Sweep(dev, dtype=dtype, n=N, k=K, seed=seed, total=total_memory_bytes)
    nflush = flush_bytes(flush_mb, llc_bytes) if l2 == "cold" else 0
    if l2 == "cold":
        point["method"]["flush_bytes"] = nflush
    need = point_memory(M, N, K, dtype, flush=nflush, device_kind=dev.kind)
    limit, what = sweep.limit()
    point["memory_estimate_bytes"] = need["total"]
    point["memory_limit_bytes"] = limit
    too_big = memory_refusal(need, limit, what)
    if too_big:
        return record(OOM, too_big, **point)
    try:
        x = make_input(dev, dtype, M, K, seed)
        fn = bind(dev, dtype, x, sweep.get_weight())
        try:
            fn()
        except RuntimeError as e:  # the op itself refuses this dtype/shape on this device
            if isinstance(e, dev.oom_errors):
                raise
            return record(
                SKIPPED,
                f"{op_name(dtype)} refused {dtype} at M={M}: {str(e).splitlines()[0]}",
                **point,
            )
        flush = sweep.get_flush(nflush) if l2 == "cold" else None
        times = time_op(
            dev,
            fn,
            l2=l2,
            warmup=warmup,
            repeats=repeats,
            iters=iters,
            flush=flush,
            mode=mode,
            target_spread=target_spread,
            budget_s=budget_s,
            max_repeats=max_repeats,
        )
        del fn, x
    except dev.oom_errors as e:
        dev.empty_cache()
        return record(OOM, f"out of memory: {str(e).splitlines()[0]}", **point)
    stats = times.stats()
    ratio, bound = dispatch_bound(dev.kind, mode, stats["time_us"], stats["dispatch_us"])
    return record(
        OK,
        None,
        **point,
        gpu_time_us=stats.pop("time_us"),
        **stats,
        dispatch_ratio=ratio,
        dispatch_bound=bound,
        **derived(M, N, K, dtype, times.median_s),
    )


def iter_sweep(
    dev: Device,
    *,
    Ms: Sequence[int],
    N: int,
    K: int,
    dtype: str,
    seed: int = 0,
    total_memory_bytes: int | None = None,
    **point: Any,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every M of one sweep (shape x dtype x L2 mode) in order, sharing the weight and the
    flush buffer: yields (M, record), each record with the wall-clock window its point
    occupied. A point that fails to fit does not stop the others."""
    sweep = _Sweep(dev, dtype=dtype, n=N, k=K, seed=seed, total=total_memory_bytes)
    for m in Ms:
        start = time.time()
        rec = measure_point(dev, M=int(m), N=N, K=K, dtype=dtype, seed=seed, _sweep=sweep, **point)
        yield int(m), with_window(rec, start)


def measure_sweep(dev: Device, **sweep: Any) -> dict[int, dict[str, Any]]:
    """:func:`iter_sweep` as M -> record."""
    return dict(iter_sweep(dev, **sweep))


def write_sweep_json(
    outputs: Sequence[str], *, device_json: str, threads: int, M: Sequence[int], **sweep: Any
) -> dict[int, dict[str, Any]]:
    """The sweep job: measure every point on the run's device (:func:`iter_sweep`), write
    one record per point (``outputs`` in the order of ``M``) as soon as it is measured."""
    import logging

    from hwlab.io import read_json, write_json

    log = logging.getLogger("hwlab.gemm")
    if len(outputs) != len(M):
        raise ValueError(f"{len(outputs)} output files for {len(M)} values of M")
    info = read_json(device_json)
    dev = Device.from_info(info, threads)
    points = iter_sweep(
        dev,
        Ms=M,
        llc_bytes=info.get("llc_bytes"),
        total_memory_bytes=info.get("total_memory_bytes") if dev.is_cuda else None,
        **sweep,
    )
    results = {}
    for out, (m, rec) in zip(outputs, points, strict=True):
        write_json(out, rec)
        log.info(
            "M=%s: %s%s",
            m,
            rec["status"],
            f" {rec['gpu_time_us']:.4g} us" if rec["status"] == OK else f": {rec['reason']}",
        )
        results[m] = rec
    return results
