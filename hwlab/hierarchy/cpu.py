"""The CPU side of the hierarchy stage: bandwidth and latency by working set.

Method (STREAM's kernels and lmbench's ``lat_mem_rd``, compiled with numba so the loop is
machine code, not the interpreter):

- **Buffer**: one anonymous mapping of the largest working set, 2 MiB-aligned and advised
  ``MADV_HUGEPAGE`` (transparent huge pages, where the kernel allows them) so that TLB
  misses do not blur the cache steps; every point uses a prefix of it, touched once
  before any timing. The record says how much of it the kernel backed with huge pages.
- **Read**: ``s += a[i]`` over the working set (float64, vectorised: fastmath lets LLVM
  reorder the sum), ``passes`` times per call; bytes = passes x working set.
- **Copy**: ``dst[i] = src[i]`` with src and dst each half of the working set, adjacent;
  bytes = 2 x passes x half (STREAM's count: read + write, no write-allocate traffic).
- **Threads**: the run's measuring threads each take one contiguous, 64-byte aligned part
  of the working set (a persistent thread pool calling a ``nogil`` compiled function), so
  a private cache level's step appears at threads x its size (the reported aggregate).
- **Latency**: a dependent pointer chase ``i = next[i]`` over a random cyclic permutation
  of the working set's cache lines (one line per hop, every line once per cycle, so
  neither stride prefetchers nor reuse within a line help); single thread; ns per hop.
- **Timing**: :meth:`hwlab.device.Device.bench` in loop mode, one call per repeat. Each
  point's call is calibrated first (passes / hops grown until one call lasts
  ``target_ms``), warmed up once (for the chase: one full cycle through the permutation,
  up to twice the last-level cache, so the measured steady state is the cache's, not its
  cold fill), then repeated; bandwidth and latency are the medians with the median's 95%
  confidence interval (order statistics) as the error bar.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HUGE_PAGE = 2 * 1024**2
NUMBA_MISSING = (
    "numba is not installed: the CPU bandwidth and latency kernels need a compiled loop "
    "(pip install 'numba>=0.60'); a pure Python loop would measure the interpreter"
)

# ---- what the machine reports (sysfs) ------------------------------------------------


def parse_size(text: str) -> int:
    """sysfs cache size ("32K", "1024K", "32M") in bytes."""
    t = text.strip().upper()
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(t[-1:], 1)
    digits = t.rstrip("KMGB")
    if not digits.isdigit():
        raise ValueError(f"not a sysfs cache size: {text!r}")
    return int(digits) * mult


def parse_cpu_list(text: str) -> frozenset[int]:
    """sysfs CPU list ("0-3,8,10-11") as a set."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        else:
            out.add(int(part))
    return frozenset(out)


def read_caches(cpu: int = 0, root: str | Path = "/sys/devices/system/cpu") -> list[dict]:
    """The data and unified caches of one CPU as sysfs describes them, smallest level first.

    Each: level, type, size_bytes, line_bytes, shared_cpus (sorted list). Missing or
    unreadable entries are skipped (a container may hide sysfs: then the list is empty).
    """
    out = []
    for idx in sorted(Path(root, f"cpu{cpu}", "cache").glob("index*")):
        try:
            ctype = (idx / "type").read_text().strip()
            if ctype not in ("Data", "Unified"):
                continue
            level = int((idx / "level").read_text())
            size = parse_size((idx / "size").read_text())
            line = idx / "coherency_line_size"
            shared = idx / "shared_cpu_list"
            out.append(
                {
                    "level": level,
                    "type": ctype,
                    "size_bytes": size,
                    "line_bytes": int(line.read_text()) if line.is_file() else None,
                    "shared_cpus": sorted(parse_cpu_list(shared.read_text()))
                    if shared.is_file()
                    else [cpu],
                }
            )
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda c: c["level"])


def reported_levels(
    cpus: list[int], threads: int, root: str | Path = "/sys/devices/system/cpu"
) -> list[dict]:
    """What sysfs reports per cache level, for one thread and for ``threads`` threads.

    ``size_bytes`` is one instance (what a single-thread pointer chase can fill);
    ``aggregate_bytes`` is the sum over the distinct instances that ``threads`` threads
    on distinct CPUs of ``cpus`` reach (what the multi-threaded bandwidth sweep fills):
    a private L1/L2 counts once per thread, a shared L3 once per group sharing it.
    """
    used = sorted(cpus)[: max(1, threads)]
    by_level: dict[int, dict] = {}
    for cpu in used:
        for c in read_caches(cpu, root):
            lv = by_level.setdefault(
                c["level"],
                {
                    "level": c["level"],
                    "name": f"L{c['level']}" + ("d" if c["type"] == "Data" else ""),
                    "size_bytes": c["size_bytes"],
                    "line_bytes": c["line_bytes"],
                    "instances": set(),
                },
            )
            lv["instances"].add(tuple(c["shared_cpus"]))
    out = []
    for lv in sorted(by_level.values(), key=lambda d: d["level"]):
        n = len(lv.pop("instances"))
        out.append({**lv, "instances": n, "aggregate_bytes": lv["size_bytes"] * n})
    return out


# ---- sizes ---------------------------------------------------------------------------


def size_grid(
    min_bytes: int,
    max_bytes: int,
    points_per_octave: int,
    *,
    dense_until: int | None = None,
    sparse_points_per_octave: int = 2,
    align: int = 64,
) -> list[int]:
    """Working sets from ``min_bytes`` to ``max_bytes``, geometric: ``points_per_octave``
    per doubling up to ``dense_until`` (where the knees are), ``sparse_points_per_octave``
    beyond it; powers of two from ``min_bytes`` are on the grid; each size a multiple of
    ``align`` bytes, no duplicates, ``max_bytes`` included."""
    if min_bytes <= 0 or max_bytes < min_bytes:
        raise ValueError(f"need 0 < min_bytes <= max_bytes, got {min_bytes}, {max_bytes}")
    if points_per_octave < 1 or sparse_points_per_octave < 1:
        raise ValueError("points per octave must be >= 1")
    dense_until = max_bytes if dense_until is None else dense_until
    out: list[int] = []
    x = 0.0
    while True:
        size = min_bytes * 2.0**x
        if size > max_bytes * (1 + 1e-9):
            break
        s = max(align, int(round(size / align)) * align)
        if not out or s > out[-1]:
            out.append(s)
        x += 1.0 / (points_per_octave if size < dense_until else sparse_points_per_octave)
        # land exactly on every octave of min_bytes when switching densities
        if abs(x - round(x)) < 1e-9:
            x = float(round(x))
    top = max(align, max_bytes // align * align)
    if out[-1] != top:
        out.append(top)
    return out


# ---- buffer --------------------------------------------------------------------------


def anon_huge_bytes() -> int | None:
    """AnonHugePages of this process (bytes), or None where /proc does not say."""
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class Buffer:
    """One anonymous, 2 MiB-aligned mapping of ``nbytes`` advised MADV_HUGEPAGE, touched.

    ``f64`` is the float64 view of the whole buffer; ``huge_fraction`` how much of it the
    kernel backed with transparent huge pages (None if unknown)."""

    def __init__(self, nbytes: int, huge: bool = True):
        import numpy as np

        self.nbytes = int(nbytes) // 64 * 64
        before = anon_huge_bytes()
        self._map = mmap.mmap(
            -1, self.nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        )
        self.huge_advised = False
        if huge and hasattr(mmap, "MADV_HUGEPAGE"):
            try:
                self._map.madvise(mmap.MADV_HUGEPAGE)
                self.huge_advised = True
            except OSError:
                pass
        raw = np.frombuffer(self._map, dtype=np.uint8)
        off = (-raw.ctypes.data) % HUGE_PAGE
        self.f64 = raw[off : off + self.nbytes].view(np.float64)
        self.f64[:] = 1.0  # fault every page in before anything is timed
        after = anon_huge_bytes()
        self.huge_fraction = (
            min(1.0, (after - before) / self.nbytes)
            if before is not None and after is not None
            else None
        )

    def close(self) -> None:
        self.f64 = None
        with contextlib.suppress(BufferError):  # a view still alive: it goes with the map
            self._map.close()


# ---- kernels -------------------------------------------------------------------------

_KERNELS: dict[str, Callable] | None = None


def kernels() -> dict[str, Callable]:
    """The compiled loops (numba, cached on disk beside this module). ImportError with
    :data:`NUMBA_MISSING` where numba is absent."""
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS
    try:
        import numba
    except ImportError as e:
        raise ImportError(NUMBA_MISSING) from e

    @numba.njit(fastmath=True, nogil=True, cache=True)
    def read(a, passes):  # pragma: no cover - compiled
        s = 0.0
        for _ in range(passes):
            for i in range(a.size):
                s += a[i]
        return s

    @numba.njit(nogil=True, cache=True)
    def copy(src, dst, passes):  # pragma: no cover - compiled
        for _ in range(passes):
            for i in range(src.size):
                dst[i] = src[i]
        return dst[0]

    @numba.njit(nogil=True, cache=True)
    def chase(nxt, start, hops):  # pragma: no cover - compiled
        i = start
        for _ in range(hops):
            i = nxt[i]
        return i

    import numpy as np

    # compile (or load from the cache) for the argument types the sweeps use, before
    # anything is timed: a first call that compiles would poison the calibration
    a = np.ones(64)
    read(a, 1)
    copy(a[:32], a[32:], 1)
    chase(a.view(np.int64) * 0, 0, 1)
    _KERNELS = {"read": read, "copy": copy, "chase": chase, "numba": numba.__version__}
    return _KERNELS


def split(n: int, parts: int, align: int = 8) -> list[tuple[int, int]]:
    """[lo, hi) element ranges of ``n`` in ``parts`` contiguous pieces, each boundary a
    multiple of ``align`` elements (64 bytes of float64), the last piece taking the rest."""
    parts = max(1, min(parts, max(1, n // align)))
    step = n // parts // align * align
    bounds = [i * step for i in range(parts)] + [n]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


class Parallel:
    """Calls a ``nogil`` compiled kernel on every part at once from a persistent pool."""

    def __init__(self, threads: int):
        self.threads = max(1, threads)
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def __call__(self, fn: Callable, parts: list[tuple], passes: int) -> float:
        if self.pool is None or len(parts) == 1:
            return sum(float(fn(*p, passes)) for p in parts)
        futs = [self.pool.submit(fn, *p, passes) for p in parts]
        return sum(float(f.result()) for f in futs)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def calibrate(call: Callable[[int], object], target_s: float, start: int = 1) -> int:
    """The count (passes or hops) at which one ``call(count)`` lasts at least 80% of
    ``target_s``: grown geometrically from ``start`` by target / last duration (2x to 16x),
    so a call's fixed cost (thread dispatch, ~0.1 ms) cannot pass for work, and the last
    step overshoots the target by at most that fixed cost."""
    import time

    n = max(1, int(start))
    call(n)  # untimed: first-call costs (thread start-up, page-table walks)
    while True:
        t0 = time.perf_counter()
        call(n)
        dt = time.perf_counter() - t0
        if dt >= 0.8 * target_s or n >= 1 << 40:
            return n
        n = int(math.ceil(n * min(16.0, max(2.0, target_s / max(dt, 1e-9)))))


def _bench(dev, fn, *, repeats: int, target_spread: float):
    return dev.bench(
        fn,
        iters=1,
        mode="loop",
        warmup=1,
        min_repeats=repeats,
        target_spread=target_spread,
        max_repeats=2 * repeats if target_spread else 0,
    )


def rate_fields(samples, nbytes: float) -> dict[str, Any]:
    """A bandwidth point's fields from :meth:`Device.bench`'s samples (per-call times) and
    the bytes one call moves: GB/s at the median time, its 95% CI as GB/s (the CI's slow
    end is the low rate), the spreads, the repeat count and why the repeats stopped. The
    CPU and the GPU sweeps both use it."""
    st = samples.stats("time")
    us = 1e-6
    return {
        "gbps": nbytes / (st["time_us"] * us) / 1e9,
        "gbps_lo": nbytes / (st["time_ci_hi_us"] * us) / 1e9,
        "gbps_hi": nbytes / (st["time_ci_lo_us"] * us) / 1e9,
        "rel_spread": st["rel_spread"],
        "rel_ci": st["rel_ci"],
        "n_repeats": st["n_repeats"],
        "stopped": st["stopped"],
        "time_us": st["time_us"],
    }


def latency_fields(samples, hops: int) -> dict[str, Any]:
    """A pointer-chase point's fields from the samples (per-call times) and the dependent
    loads one call makes: ns per hop at the median time and at its 95% CI's ends, the
    spreads, the repeat count and why the repeats stopped (CPU and GPU alike)."""
    st = samples.stats("time")
    ns = 1e3 / hops
    return {
        "ns": st["time_us"] * ns,
        "ns_lo": st["time_ci_lo_us"] * ns,
        "ns_hi": st["time_ci_hi_us"] * ns,
        "rel_spread": st["rel_spread"],
        "rel_ci": st["rel_ci"],
        "n_repeats": st["n_repeats"],
        "stopped": st["stopped"],
    }


def bandwidth_sweep(
    dev,
    buf: Buffer,
    sizes: list[int],
    *,
    kernel: str,
    threads: int,
    target_ms: float,
    repeats: int,
    target_spread: float,
    log: Callable[[str], None] = lambda s: None,
) -> list[dict[str, Any]]:
    """One point per working set: GB/s of the read or copy kernel on ``threads`` threads."""
    k = kernels()
    par = Parallel(threads)
    a = buf.f64
    out = []
    try:
        for size in sizes:
            n = size // 8
            if kernel == "read":
                parts = [(a[lo:hi],) for lo, hi in split(n, threads)]
                moved_per_pass = n * 8
                fn = k["read"]
            elif kernel == "copy":
                half = n // 2 // 8 * 8
                parts = [(a[lo:hi], a[half + lo : half + hi]) for lo, hi in split(half, threads)]
                moved_per_pass = 2 * half * 8
                fn = k["copy"]
            else:
                raise ValueError(f"unknown kernel {kernel!r}")
            passes = calibrate(lambda p, fn=fn, parts=parts: par(fn, parts, p), target_ms / 1e3)
            s = _bench(
                dev,
                lambda fn=fn, parts=parts, passes=passes: par(fn, parts, passes),
                repeats=repeats,
                target_spread=target_spread,
            )
            point = {
                "kernel": kernel,
                "size_bytes": size,
                "threads": len(parts),
                "passes": passes,
                "bytes_per_call": moved_per_pass * passes,
                **rate_fields(s, moved_per_pass * passes),
            }
            log(f"{kernel} {size} B: {point['gbps']:.4g} GB/s ({passes} passes)")
            out.append(point)
    finally:
        par.close()
    return out


def permutation_ring(nxt, n_lines: int, line_elems: int, rng) -> int:
    """Write a random cyclic permutation of ``n_lines`` lines into ``nxt`` (an int64 view):
    the first element of each line holds the index of the next line's first element. One
    cycle through all lines (every line visited once per cycle). Returns the start index."""
    order = rng.permutation(n_lines)
    import numpy as np

    nxt[order * line_elems] = np.roll(order, -1) * line_elems
    return int(order[0] * line_elems)


def latency_sweep(
    dev,
    buf: Buffer,
    sizes: list[int],
    *,
    line_bytes: int,
    llc_bytes: int | None,
    target_ms: float,
    repeats: int,
    target_spread: float,
    seed: int,
    log: Callable[[str], None] = lambda s: None,
) -> list[dict[str, Any]]:
    """One point per working set: ns per dependent load (single thread)."""
    import numpy as np

    chase = kernels()["chase"]
    nxt = buf.f64.view(np.int64)
    rng = np.random.default_rng(seed)
    line_elems = max(1, line_bytes // 8)
    warm_cap = 2 * (llc_bytes or 32 * 1024**2) // line_bytes
    out = []
    for size in sizes:
        n_lines = max(2, size // line_bytes)
        start = permutation_ring(nxt, n_lines, line_elems, rng)
        # every call goes on from where the last one stopped: a working set larger than
        # the hops of one call is never re-walked (that would measure the cache, not it)
        # fill the caches with the ring; a ring past twice the last-level cache cannot be
        # cached (every hop misses whatever came before), so it gets only a short walk
        warm = n_lines if n_lines <= warm_cap else 16384
        at = [int(chase(nxt, start, warm))]

        def walk(h: int, at: list[int] = at) -> None:
            at[0] = int(chase(nxt, at[0], h))

        hops = calibrate(walk, target_ms / 1e3, 1024)
        s = _bench(
            dev,
            lambda hops=hops, walk=walk: walk(hops),
            repeats=repeats,
            target_spread=target_spread,
        )
        point = {
            "kernel": "chase",
            "size_bytes": n_lines * line_bytes,
            "threads": 1,
            "hops": hops,
            "line_bytes": line_bytes,
            **latency_fields(s, hops),
        }
        log(f"chase {size} B: {point['ns']:.4g} ns per hop ({hops} hops)")
        out.append(point)
    # leave the buffer as float data again for anyone after us
    buf.f64[:] = 1.0
    return out


def cpu_affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))
