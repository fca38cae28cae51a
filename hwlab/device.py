"""One device abstraction for every measuring stage (GEMM, peaks, decode, collectives).

What is timed and how:
- CUDA: ``torch.cuda.Event(enable_timing=True)`` recorded on the current stream around the
  timed region, read after a synchronize. This is the GPU's own clock between two points
  of its stream: host-side Python does not count unless it starves the GPU.
- CPU: ``time.perf_counter_ns`` around the region after a synchronize (a no-op on CPU).
  On a CPU the "device time" and the wall time are the same clock; tables say so.
Wall time (``perf_counter_ns`` around the region plus its synchronize) is recorded beside
the device time on both, as the writeup does.

Cache state: ``flusher(nbytes)`` returns a callable that rewrites a buffer larger than the
last-level cache (GPU: ``zero_`` like triton's do_bench; CPU: a read-modify-write, because
large memsets may use non-temporal stores that bypass the cache).

The benchmark core, :meth:`Device.bench`, is what every stage times with. One *repeat* is
``iters`` calls; its per-call time is one sample. Three modes:
- ``loop``: the calls back to back inside one timed region (start marker, calls, end marker);
- ``each``: every call timed alone in triton ``do_bench``'s order, with all markers made up
  front: ``flush(); start[i].record(); fn(); end[i].record()`` for each call, one
  synchronize after the repeat. The flush (untimed, between the markers of two calls) also
  gives the host its head start, so on a GPU the start marker is not recorded while the
  GPU idles waiting for Python to dispatch the call;
- ``graph`` (CUDA only): the ``iters`` calls captured once into a CUDA graph (outside any
  timed region), each repeat one replay between two markers (triton's
  ``do_bench_cudagraph``): no per-call launch cost.
Repeats continue until at least ``min_repeats`` are done and then stop as soon as the
median is known well enough — the relative width of its 95% confidence interval
(:func:`hwlab.formulas.rel_ci`) is at most ``target_spread`` — or ``budget_s`` seconds of
benchmarking are spent, or ``max_repeats`` is reached (NVBench's stop-on-noise, with
order statistics instead of a normal approximation). The result (:class:`Samples`) keeps
every sample, the host dispatch time per call (a point whose dispatch time is close to its
device time is bound by Python/launch, not by the device), whether the target was reached
and why it stopped.

Detection reads only what the machine reports (torch, NVML, /proc, /sys); matching the
device to the hardware catalog is :mod:`hwlab.catalog`'s job. A CPU's matrix engine is read
from its cpuinfo flags (:func:`cpu_matrix_engine`): Intel AMX (``amx_bf16``, ``amx_int8``,
``amx_fp16``, with ``amx_tile``) is a matrix engine, which oneDNN (and so torch) uses for
bf16 / int8 matmuls; ``avx512_bf16``, ``avx512_vnni``, ``avx_vnni`` are dot-product
instructions on the vector units, not a matrix engine.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CPU_FP8_REASON = (
    "no native fp8 matrix instructions on a CPU: torch's CPU _scaled_mm is a software "
    "fallback and would not measure the hardware (fp8 needs a CUDA GPU of compute "
    "capability 8.9 or newer)"
)


@dataclass(frozen=True)
class Timing:
    """One timed region: device-clock seconds and wall-clock seconds (and, where known,
    the host seconds spent issuing it, no synchronize)."""

    device_s: float
    wall_s: float
    dispatch_s: float | None = None


BENCH_MODES = ("loop", "each", "graph")


@dataclass
class Samples:
    """What :meth:`Device.bench` measured: one sample per repeat, each a per-call time."""

    device_s: list[float]  # per-call device-clock seconds, one per repeat
    wall_s: list[float]  # per-call host seconds: the repeat's wall time (final sync in) / iters
    dispatch_s: list[float]  # per-call host seconds spent issuing the calls (no sync)
    iters: int
    mode: str
    timer: str
    target_spread: float
    budget_s: float
    stopped: str  # "fixed", "target", "budget" or "max_repeats"

    @property
    def n(self) -> int:
        return len(self.device_s)

    @property
    def median_s(self) -> float:
        from hwlab.formulas import median

        return median(self.device_s)

    @property
    def rel_ci(self) -> float:
        from hwlab.formulas import rel_ci

        return rel_ci(self.device_s)

    @property
    def target_reached(self) -> bool | None:
        """None when no target was set (fixed repeat count)."""
        if not self.target_spread:
            return None
        return self.rel_ci <= self.target_spread

    def stats(self, prefix: str = "time") -> dict[str, Any]:
        """The fields a record keeps, in µs: the median ``{prefix}_us``, min, max and the
        median's 95% CI, the spreads (relative range, IQR and CI width), the counts, how
        the repeats stopped, wall and dispatch time per call, and every sample."""
        from hwlab import formulas as F

        d, us = self.device_s, 1e6
        lo, hi = F.median_ci(d)
        return {
            f"{prefix}_us": F.median(d) * us,
            f"{prefix}_min_us": min(d) * us,
            f"{prefix}_max_us": max(d) * us,
            f"{prefix}_ci_lo_us": lo * us,
            f"{prefix}_ci_hi_us": hi * us,
            "rel_spread": F.rel_spread(d),
            "rel_iqr": F.rel_iqr(d),
            "rel_ci": F.rel_ci(d),
            "n_repeats": len(d),
            "iters": self.iters,
            "target_spread": self.target_spread or None,
            "target_reached": self.target_reached,
            "stopped": self.stopped,
            "wall_time_us": F.median(self.wall_s) * us,
            "dispatch_us": F.median(self.dispatch_s) * us,
            "timing_mode": self.mode,
            "repeats_us": [x * us for x in d],
        }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_llc_bytes() -> int | None:
    """Size of the largest cache level of cpu0 from sysfs (the last-level cache)."""
    best: tuple[int, int] | None = None
    for idx in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((idx / "level").read_text())
            size = (idx / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(size[-1], 1)
        nbytes = int(size.rstrip("KMG")) * mult
        if best is None or level > best[0]:
            best = (level, nbytes)
    return best[1] if best else None


AMX_FLAGS = ("amx_bf16", "amx_int8", "amx_fp16", "amx_tile", "amx_complex")
DOT_PRODUCT_FLAGS = ("avx512_bf16", "avx512_vnni", "avx_vnni", "avx_vnni_int8", "avx512_fp16")


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (or of ``cpuinfo`` text)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):  # x86 / arm64
            return value.split()
    return []


def cpu_matrix_engine(flags: list[str]) -> dict[str, Any]:
    """Whether the CPU has a matrix engine, from its flags (pure).

    ``amx``: Intel AMX with bf16 or int8 tiles (the matrix-engine path for bf16 / int8
    matmuls); ``bf16_dot_product``: bf16 / int8 dot-product instructions present, which run
    on the vector units and are not a matrix engine."""
    have = set(flags)
    amx = [f for f in AMX_FLAGS if f in have]
    dot = [f for f in DOT_PRODUCT_FLAGS if f in have]
    engine = bool({"amx_bf16", "amx_int8"} & have)
    return {
        "amx": engine,
        "amx_flags": amx,
        "matrix_dtypes": [
            d
            for d, f in (("bf16", "amx_bf16"), ("int8", "amx_int8"), ("fp16", "amx_fp16"))
            if f in have
        ],  # fmt: skip
        "bf16_dot_product": dot,
        "note": (
            f"AMX matrix engine ({', '.join(amx)}): bf16 / int8 matmuls run on it (oneDNN)"
            if engine
            else (
                f"no matrix engine; {', '.join(dot)}: bf16 dot-product instructions on the "
                "vector units, not a matrix engine"
                if dot
                else "no matrix engine and no bf16 dot-product instructions"
            )
        ),
    }


def _nvml_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else v
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML library, no driver: not an error on a CPU host
        return None


def available_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def detect(requested: str = "auto", index: int = 0) -> dict[str, Any]:
    """Describe the device a run measures on, as a JSON-able dict (``device.json``).

    ``requested`` is ``auto`` (CUDA if torch sees one, else CPU), ``cpu`` or ``cuda``.
    Asking for ``cuda`` where torch sees none is an error naming why.
    """
    import torch

    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {requested!r}")
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise RuntimeError(
            "device cuda was asked for, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}): "
            "use device auto or cpu on this machine"
        )
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_threads": available_threads(),
        "cpu_llc_bytes": _cpu_llc_bytes(),
        "cpu_matrix_engine": cpu_matrix_engine(cpu_flags()),
        "host_memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "torch_cuda": torch.version.cuda,
        "gpu_count": torch.cuda.device_count() if has_cuda else 0,
        # what a scheduler gave this job (SLURM sets it for --gpus / --gres requests)
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if has_cuda and requested in ("auto", "cuda"):
        props = torch.cuda.get_device_properties(index)
        info.update(
            kind="cuda",
            torch_device=f"cuda:{index}",
            index=index,
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            sm_count=props.multi_processor_count,
            total_memory_bytes=props.total_memory,
            llc_bytes=getattr(props, "L2_cache_size", None),
            driver_version=_nvml_driver(),
            cudnn_version=torch.backends.cudnn.version(),
        )
    else:
        info.update(
            kind="cpu",
            torch_device="cpu",
            index=0,
            name=info["cpu_model"],
            capability=None,
            sm_count=None,
            total_memory_bytes=info["host_memory_bytes"],
            llc_bytes=info["cpu_llc_bytes"],
            driver_version=None,
            cudnn_version=None,
        )
    return info


class Device:
    """Timer, synchronize, memory statistics and cache flush for one CPU or CUDA device."""

    def __init__(self, kind: str = "cpu", index: int = 0, threads: int = 0):
        import torch

        self.torch = torch
        self.kind = kind
        if kind == "cuda":
            self.torch_device = torch.device("cuda", index)
            torch.cuda.set_device(self.torch_device)
        elif kind == "cpu":
            self.torch_device = torch.device("cpu")
        else:
            raise ValueError(f"unknown device kind {kind!r}")
        self.threads = threads or available_threads()
        if kind == "cpu":
            torch.set_num_threads(self.threads)

    @classmethod
    def from_info(cls, info: dict[str, Any], threads: int = 0) -> Device:
        return cls(info["kind"], info.get("index", 0), threads)

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def timer_name(self) -> str:
        """What the device timer is, as records and tables name it."""
        return "cuda_events" if self.is_cuda else "perf_counter_ns"

    # -- time ---------------------------------------------------------------------------
    def synchronize(self) -> None:
        if self.is_cuda:
            self.torch.cuda.synchronize(self.torch_device)

    def time_each(
        self, fn: Callable[[], object], n: int, before: Callable[[], object] | None = None
    ) -> list[Timing]:
        """Time ``n`` calls of ``fn`` one by one in triton do_bench's order: markers made up
        front, then per call ``before(); start.record(); fn(); end.record()`` (``before``
        untimed, e.g. a cache flush), one synchronize at the end. Wall time per call is the
        host time from its start marker to its end marker (the final synchronize shared
        out), device time the GPU's clock between the markers."""
        marks = [self.event_pair() for _ in range(n)]
        walls = []
        self.synchronize()
        for s, e in marks:
            if before is not None:
                before()
            w0 = time.perf_counter_ns()
            s.record()
            fn()
            e.record()
            walls.append(time.perf_counter_ns() - w0)
        w0 = time.perf_counter_ns()
        self.synchronize()
        sync = (time.perf_counter_ns() - w0) / n
        return [
            Timing(self.elapsed_s(s, e), (w + sync) / 1e9, w / 1e9)
            for (s, e), w in zip(marks, walls, strict=True)
        ]

    def _graph(self, fn: Callable[[], object], iters: int):
        """``iters`` calls of ``fn`` captured into one CUDA graph (warmed up on a side stream
        first, as capture requires)."""
        torch = self.torch
        side = torch.cuda.Stream(device=self.torch_device)
        side.wait_stream(torch.cuda.current_stream(self.torch_device))
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream(self.torch_device).wait_stream(side)
        self.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(iters):
                fn()
        self.synchronize()
        return graph

    def bench(
        self,
        fn: Callable[[], object],
        *,
        iters: int,
        mode: str = "loop",
        flush: Callable[[], object] | None = None,
        warmup: int = 0,
        min_repeats: int = 3,
        max_repeats: int = 0,
        target_spread: float = 0.0,
        budget_s: float = 0.0,
    ) -> Samples:
        """Benchmark ``fn`` (see the module docstring for the modes and the stopping rule).

        ``warmup`` untimed calls first. Without ``target_spread`` exactly ``min_repeats``
        repeats run; with it, repeats go on until the median's relative 95% CI width is at
        most ``target_spread``, or ``budget_s`` seconds (0: no limit) have been spent
        benchmarking, or ``max_repeats`` (0: no cap beyond the budget) are done.
        """
        if mode not in BENCH_MODES:
            raise ValueError(f"mode must be one of {BENCH_MODES}, got {mode!r}")
        if mode == "graph" and not self.is_cuda:
            raise ValueError("graph timing (CUDA graph replay) needs a CUDA device")
        if mode == "each" and flush is None:
            flush = _noop
        if target_spread and not (budget_s or max_repeats):
            raise ValueError("an adaptive benchmark needs budget_s or max_repeats")
        iters = max(1, int(iters))
        for _ in range(warmup):
            fn()
        self.synchronize()
        graph = self._graph(fn, iters) if mode == "graph" else None
        device_s: list[float] = []
        wall_s: list[float] = []
        dispatch_s: list[float] = []
        t0 = time.perf_counter()
        stopped = "fixed"
        while True:
            if mode == "each":
                ts = self.time_each(fn, iters, before=flush)
                device_s.append(sum(t.device_s for t in ts) / iters)
                wall_s.append(sum(t.wall_s for t in ts) / iters)
                dispatch_s.append(sum(t.dispatch_s or 0.0 for t in ts) / iters)
            else:
                call = graph.replay if graph is not None else fn
                reps = 1 if graph is not None else iters
                start, stop = self.event_pair()
                self.synchronize()
                w0 = time.perf_counter_ns()
                start.record()
                for _ in range(reps):
                    call()
                stop.record()
                w1 = time.perf_counter_ns()
                self.synchronize()
                w2 = time.perf_counter_ns()
                device_s.append(self.elapsed_s(start, stop) / iters)
                wall_s.append((w2 - w0) / 1e9 / iters)
                dispatch_s.append((w1 - w0) / 1e9 / iters)
            n = len(device_s)
            if n < min_repeats:
                continue
            if not target_spread:
                break
            from hwlab.formulas import rel_ci

            if rel_ci(device_s) <= target_spread:
                stopped = "target"
                break
            if budget_s and time.perf_counter() - t0 >= budget_s:
                stopped = "budget"
                break
            if max_repeats and n >= max_repeats:
                stopped = "max_repeats"
                break
        return Samples(
            device_s=device_s,
            wall_s=wall_s,
            dispatch_s=dispatch_s,
            iters=iters,
            mode=mode,
            timer=self.timer_name if graph is None else "cuda_events+graph",
            target_spread=target_spread,
            budget_s=budget_s,
            stopped=stopped,
        )

    def event_pair(self):
        """(start, stop) markers for timing a region inside a larger loop without a sync.

        CUDA: two timing events; CPU: callables reading perf_counter_ns. Read the elapsed
        seconds with :meth:`elapsed_s` after a synchronize.
        """
        if self.is_cuda:
            return (
                self.torch.cuda.Event(enable_timing=True),
                self.torch.cuda.Event(enable_timing=True),
            )
        return (_CpuMark(), _CpuMark())

    def elapsed_s(self, start, stop) -> float:
        if self.is_cuda:
            return start.elapsed_time(stop) / 1e3
        return (stop.ns - start.ns) / 1e9

    # -- memory -------------------------------------------------------------------------
    def reset_peak_memory(self) -> None:
        if self.is_cuda:
            self.torch.cuda.reset_peak_memory_stats(self.torch_device)

    def peak_memory_bytes(self) -> int:
        """CUDA: peak bytes allocated by torch since the last reset. CPU: peak RSS of the
        process (Linux ru_maxrss), which cannot be reset: one job per measurement."""
        if self.is_cuda:
            return int(self.torch.cuda.max_memory_allocated(self.torch_device))
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def empty_cache(self) -> None:
        if self.is_cuda:
            self.torch.cuda.empty_cache()

    @property
    def oom_errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions that mean 'out of memory' on this device."""
        errs: list[type[BaseException]] = [MemoryError]
        if hasattr(self.torch, "OutOfMemoryError"):
            errs.append(self.torch.OutOfMemoryError)
        return tuple(errs)

    # -- caches -------------------------------------------------------------------------
    def flusher(self, nbytes: int) -> Callable[[], None]:
        buf = self.torch.empty(int(nbytes), dtype=self.torch.uint8, device=self.torch_device)
        buf.zero_()
        if self.is_cuda:
            return buf.zero_
        return lambda: buf.add_(1)

    # -- capabilities -------------------------------------------------------------------
    def dtype_skip_reason(self, dtype: str) -> str | None:
        """Why this device cannot run a GEMM in ``dtype`` natively, or None if it can."""
        if self.is_cuda:
            major, minor = self.torch.cuda.get_device_capability(self.torch_device)
            need = {"bf16": (8, 0), "tf32": (8, 0), "fp8": (8, 9), "int8": (7, 5)}.get(dtype)
            if need and (major, minor) < need:
                return (
                    f"{dtype} GEMM needs compute capability {need[0]}.{need[1]}+, "
                    f"this GPU is {major}.{minor}"
                )
            return None
        if dtype == "fp8":
            return CPU_FP8_REASON
        if dtype == "tf32":
            return "tf32 is a GPU tensor-core mode; a CPU computes fp32 as fp32"
        return None


def _noop() -> None:
    return None


class _CpuMark:
    __slots__ = ("ns",)

    def __init__(self) -> None:
        self.ns = 0

    def record(self, *_: object) -> None:
        self.ns = time.perf_counter_ns()


def write_device_json(out: str, *, requested: str) -> None:
    """Detect the device and write ``device.json``: what measuring jobs depend on.

    The catalog match (which spec the run is compared with) is not part of it: it lives in
    ``hardware.json`` (:func:`hwlab.catalog.write_hardware_json`), so changing ``hardware:``
    or editing the catalog reruns tables and findings, never a measurement.
    """
    from hwlab.io import write_json

    write_json(out, detect(requested))
