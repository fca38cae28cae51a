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

Detection reads only what the machine reports (torch, NVML, /proc, /sys); matching the
device to the hardware catalog is :mod:`hwlab.catalog`'s job.
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
    """One timed region: device-clock seconds and wall-clock seconds."""

    device_s: float
    wall_s: float


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

    def time_loop(self, fn: Callable[[], object], iters: int) -> Timing:
        """Time ``iters`` back-to-back calls of ``fn`` as one region; returns the total."""
        self.synchronize()
        if self.is_cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            w0 = time.perf_counter_ns()
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            self.synchronize()
            w1 = time.perf_counter_ns()
            return Timing(start.elapsed_time(end) / 1e3, (w1 - w0) / 1e9)
        w0 = time.perf_counter_ns()
        for _ in range(iters):
            fn()
        self.synchronize()
        w1 = time.perf_counter_ns()
        return Timing((w1 - w0) / 1e9, (w1 - w0) / 1e9)

    def time_each(
        self, fn: Callable[[], object], n: int, before: Callable[[], object] | None = None
    ) -> list[Timing]:
        """Time ``n`` calls of ``fn`` one by one; ``before`` runs untimed ahead of each."""
        out = []
        for _ in range(n):
            if before is not None:
                before()
            out.append(self.time_loop(fn, 1))
        return out

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
