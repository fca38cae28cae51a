"""The GPU side of the hierarchy stage: Triton kernels by working set, and the host link.

Imported only on a CUDA host (:mod:`hwlab.hierarchy.measure` checks ``device.json``);
Triton ships with CUDA builds of torch, and where it is missing the record is ``skipped``
with the reason. No nvcc is needed. Every launch is timed with
:meth:`hwlab.device.Device.bench` (CUDA events around a loop of launches; warmup
launches first, which also compile the kernels).

Kernels (fp32, ``BLOCK`` elements per program per step, a fixed amount of work per launch
whatever the working set, so small working sets are re-read rather than under-filled):

- **L1 / shared region** (``read_private``): program ``p`` reads only its own region of
  ``region`` bytes, over and over (default caching: L1 hits once warm); the grid is
  ``programs_per_sm x SMs``, so one SM's footprint — the x axis, *per SM* — is
  ``programs_per_sm x region``, swept up to ``l1_max_bytes`` (<= 256 KB of reuse per SM).
  This assumes the block scheduler spreads the programs evenly, which it does breadth
  first when every program fits.
- **L2 / HBM** (``read_shared``, ``copy_shared``): every program walks the whole working
  set grid-stride (block ``(p + k x programs) mod blocks``), loads marked ``.cg`` (cached
  in L2, not L1) so the L1 cannot serve re-reads; bytes = blocks read x BLOCK x 4 (copy:
  read + write). The working set runs from ``min_bytes`` to max(4 x L2, 1 GiB).
- **Latency** (``chase``): one program of one warp follows ``i = next[i]`` over a random
  cyclic permutation of the working set's 128-byte lines (default caching). Cycles per
  hop from the SM's ``%clock64`` read in the kernel before and after the loop, ns per
  hop from the events; the SM clock NVML reports around each point is recorded too, and
  converts ns to cycles where ``%clock64`` is unavailable. Each launch continues from
  where the last one stopped, so a working set larger than one launch is never re-walked;
  a repeat is launches back to back, so the gap before the first launch of a repeat (the
  GPU idle while Python launches, 5-20 us) is shared out over them instead of added to
  every launch's ns. As many launches as make the timed region at least CHASE_REGION_S
  (from the previous, smaller working set's time per launch; at most ``gpu_launches``):
  ten at L1, where one launch lasts a few hundred us, one from HBM, where it lasts ~10 ms
  and the gap is already under 0.2%.
- **Host link** (torch copies, nvbandwidth's cases): host→device and device→host, pinned
  and pageable host memory, 4 B (latency) and 4 KiB .. ``link_max_bytes``; peer-to-peer
  ``cuda:0 → cuda:1`` and back where two GPUs are visible (torch performs a cross-device
  copy on the source device's current stream, which the events bracket).
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

from hwlab.hierarchy.cpu import latency_fields, rate_fields, size_grid
from hwlab.io import FAILED, OK, SKIPPED, record

log = logging.getLogger("hwlab.hierarchy.gpu")

TRITON_MISSING = (
    "triton is not importable (it ships with CUDA builds of torch: pip install triton "
    "matching torch); the GPU bandwidth and latency kernels are Triton kernels"
)
LINE = 128  # bytes per pointer-chase hop on a GPU (an L1 line)
BLOCK = 2048  # fp32 elements per program step in the L2 / HBM kernels (8 KiB)
PBLOCK = 256  # fp32 elements per program step in the L1 kernel (1 KiB)

try:  # never needed on a CPU host: measure.py imports this module only for CUDA
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None
    tl = None

if triton is not None:  # pragma: no cover - needs a CUDA GPU

    @triton.jit
    def read_private(x_ptr, out_ptr, region_blocks, iters, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        base = pid.to(tl.int64) * region_blocks
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for k in range(iters):
            b = base + k % region_blocks
            acc += tl.load(x_ptr + b * BLOCK + offs)
        tl.store(out_ptr + pid, tl.sum(acc, axis=0))

    @triton.jit
    def read_shared(x_ptr, out_ptr, n_blocks, iters, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        nprog = tl.num_programs(0)
        offs = tl.arange(0, BLOCK)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for k in range(iters):
            b = ((pid + k * nprog) % n_blocks).to(tl.int64)
            acc += tl.load(x_ptr + b * BLOCK + offs, cache_modifier=".cg")
        tl.store(out_ptr + pid, tl.sum(acc, axis=0))

    @triton.jit
    def copy_shared(x_ptr, y_ptr, n_blocks, iters, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        nprog = tl.num_programs(0)
        offs = tl.arange(0, BLOCK)
        for k in range(iters):
            b = ((pid + k * nprog) % n_blocks).to(tl.int64)
            v = tl.load(x_ptr + b * BLOCK + offs, cache_modifier=".cg")
            tl.store(y_ptr + b * BLOCK + offs, v)

    @triton.jit
    def _clock64():
        return tl.inline_asm_elementwise(
            "mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64, is_pure=False, pack=1
        )

    @triton.jit
    def chase_clock(nxt_ptr, state_ptr, hops):
        # state[0]: where the previous launch stopped (so launches continue the ring);
        # state[1]: %clock64 cycles this launch spent in the loop
        i = tl.load(state_ptr).to(tl.int32)
        t0 = _clock64()
        for _ in range(hops):
            i = tl.load(nxt_ptr + i)
        t1 = _clock64()
        tl.store(state_ptr, i.to(tl.int64))
        tl.store(state_ptr + 1, t1 - t0)

    @triton.jit
    def chase_plain(nxt_ptr, state_ptr, hops):
        i = tl.load(state_ptr).to(tl.int32)
        for _ in range(hops):
            i = tl.load(nxt_ptr + i)
        tl.store(state_ptr, i.to(tl.int64))


# ---- NVML: the SM clock during the run -------------------------------------------------


class SmClock:
    """Reads the SM clock (MHz) NVML reports for the run's GPU; ``reason`` says why not."""

    def __init__(self, torch, device):
        self.reason: str | None = None
        self.nvml = None
        self.handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            props = torch.cuda.get_device_properties(device)
            bus = getattr(props, "pci_bus_id", None)
            if bus is not None:  # NVML and CUDA may number devices differently
                busid = f"{props.pci_domain_id:08x}:{bus:02x}:{props.pci_device_id:02x}.0"
                with contextlib.suppress(pynvml.NVMLError):
                    self.handle = pynvml.nvmlDeviceGetHandleByPciBusId_v2(busid)
            if self.handle is None:
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        except Exception as e:  # no driver library, no permission: say why, go on
            self.reason = f"NVML unavailable: {type(e).__name__}: {e}"

    def mhz(self) -> float | None:
        if self.handle is None:
            return None
        try:
            return float(self.nvml.nvmlDeviceGetClockInfo(self.handle, self.nvml.NVML_CLOCK_SM))
        except Exception as e:
            self.reason = f"NVML clock read failed: {e}"
            return None

    def close(self) -> None:
        if self.nvml is not None:
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()


# ---- sweeps -----------------------------------------------------------------------------


# the pointer chase's shortest timed region: one launch gap (<= 20 us) stays under 0.4%
CHASE_REGION_S = 5e-3


def _bench(dev, fn, p: dict[str, Any], launches: int | None = None):
    """``launches`` (default ``p["gpu_launches"]``) back-to-back launches per repeat (one
    timed region: only the first launch of a repeat can find the GPU idle, so the launch
    gap is shared out over them), 3 warmup launches, ``repeats`` repeats or, with
    ``target_spread``, up to twice that until the median's CI is that narrow."""
    return dev.bench(
        fn,
        iters=p["gpu_launches"] if launches is None else launches,
        mode="loop",
        warmup=3,
        min_repeats=p["repeats"],
        target_spread=p["target_spread"],
        max_repeats=2 * p["repeats"] if p["target_spread"] else 0,
    )


def l1_sweep(dev, sm_count: int, sizes: list[int], p: dict[str, Any]) -> list[dict[str, Any]]:
    """GB/s of the whole GPU re-reading per-SM regions; ``sizes`` are bytes per SM."""
    torch = dev.torch
    pps = p["gpu_programs_per_sm"]
    nprog = pps * sm_count
    blk_bytes = PBLOCK * 4
    out = []
    big = max(sizes) // pps // blk_bytes * blk_bytes * nprog
    x = torch.ones(big // 4 + PBLOCK, dtype=torch.float32, device=dev.torch_device)
    res = torch.empty(nprog, dtype=torch.float32, device=dev.torch_device)
    for size in sizes:
        region_blocks = max(1, size // pps // blk_bytes)
        iters = max(region_blocks, p["gpu_l1_iters"])

        def launch(region_blocks=region_blocks, iters=iters):
            read_private[(nprog,)](x, res, region_blocks, iters, BLOCK=PBLOCK, num_warps=2)

        s = _bench(dev, launch, p)
        moved = nprog * iters * blk_bytes
        point = {
            "kernel": "l1_read",
            "size_bytes": region_blocks * blk_bytes * pps,
            "programs": nprog,
            "iters": iters,
            "bytes_per_call": moved,
            **rate_fields(s, moved),
        }
        log.info("l1 %s B per SM: %.4g GB/s", point["size_bytes"], point["gbps"])
        out.append(point)
    return out


def shared_sweep(
    dev, sm_count: int, sizes: list[int], kernel: str, p: dict[str, Any]
) -> list[dict[str, Any]]:
    """GB/s of the grid-stride read or copy over the whole working set (L2 / HBM)."""
    torch = dev.torch
    nprog = p["gpu_programs_per_sm"] * sm_count
    blk_bytes = BLOCK * 4
    top = max(sizes)
    x = torch.ones(top // 4 + BLOCK, dtype=torch.float32, device=dev.torch_device)
    y = torch.empty_like(x) if kernel == "copy" else None
    res = torch.empty(nprog, dtype=torch.float32, device=dev.torch_device)
    out = []
    for size in sizes:
        footprint = size // 2 if kernel == "copy" else size
        n_blocks = max(1, footprint // blk_bytes)
        per_launch = max(p["gpu_bytes_per_launch"], footprint)
        iters = max(1, -(-per_launch // (nprog * blk_bytes)))
        if kernel == "read":

            def launch(n_blocks=n_blocks, iters=iters, x=x):
                read_shared[(nprog,)](x, res, n_blocks, iters, BLOCK=BLOCK, num_warps=8)

            moved = nprog * iters * blk_bytes
        else:

            def launch(n_blocks=n_blocks, iters=iters, x=x, y=y):
                copy_shared[(nprog,)](x, y, n_blocks, iters, BLOCK=BLOCK, num_warps=8)

            moved = 2 * nprog * iters * blk_bytes
        s = _bench(dev, launch, p)
        point = {
            "kernel": kernel,
            "size_bytes": n_blocks * blk_bytes * (2 if kernel == "copy" else 1),
            "programs": nprog,
            "iters": iters,
            "bytes_per_call": moved,
            **rate_fields(s, moved),
        }
        log.info("%s %s B: %.4g GB/s", kernel, point["size_bytes"], point["gbps"])
        out.append(point)
    x = y = None
    dev.empty_cache()
    return out


def chase_sweep(dev, sizes: list[int], p: dict[str, Any], clock: SmClock) -> dict[str, Any]:
    """ns (and cycles) per dependent load of one warp, by working set."""
    torch = dev.torch
    le = LINE // 4
    top = max(sizes)
    nxt = torch.zeros(top // 4 + BLOCK, dtype=torch.int32, device=dev.torch_device)
    res = torch.zeros(2, dtype=torch.int64, device=dev.torch_device)
    scratch = torch.empty(
        max(1, -(-top // (BLOCK * 4))), dtype=torch.float32, device=dev.torch_device
    )
    gen = torch.Generator(device=dev.torch_device).manual_seed(p["seed"])
    kern, with_clock = chase_clock, True
    try:
        kern[(1,)](nxt, res, 2, num_warps=1)
        torch.cuda.synchronize(dev.torch_device)
    except Exception as e:  # %clock64 through inline asm not accepted: events + NVML only
        log.warning("chase with %%clock64 failed (%s); timing by events only", e)
        kern, with_clock = chase_plain, False
    hops = p["gpu_chase_hops"]
    nblk = BLOCK * 4
    out = []
    launch_s = None  # the previous working set's time per launch
    for size in sizes:
        n = max(2, size // LINE)
        order = torch.randperm(n, generator=gen, device=dev.torch_device)
        nxt[order * le] = (torch.roll(order, -1) * le).to(torch.int32)
        res[0] = int(order[0]) * le
        # warm: one grid-stride read puts the ring in L2; a first walk puts its start in
        # the chasing SM's L1 (the launches then continue from where the last one stopped)
        warm_blocks = max(1, -(-n * LINE // nblk))
        read_shared[(warm_blocks,)](
            nxt.view(torch.float32), scratch, warm_blocks, 1, BLOCK=BLOCK, num_warps=8
        )
        kern[(1,)](nxt, res, min(n, p["gpu_chase_warm_lines"]), num_warps=1)
        torch.cuda.synchronize(dev.torch_device)
        mhz0 = clock.mhz()

        def call(hops=hops) -> None:
            kern[(1,)](nxt, res, hops, num_warps=1)

        launches = p["gpu_launches"]
        if launch_s:
            launches = max(1, min(launches, math.ceil(CHASE_REGION_S / launch_s)))
        s = _bench(dev, call, p, launches)
        launch_s = s.median_s
        # %clock64 cycles of the last launch (every launch walks the same number of hops)
        cycles = int(res[1]) if with_clock else None
        mhz1 = clock.mhz()
        mhz = [m for m in (mhz0, mhz1) if m]
        point = {
            "kernel": "chase",
            "size_bytes": n * LINE,
            "threads": 1,
            "hops": hops,
            "launches": launches,
            "line_bytes": LINE,
            **latency_fields(s, hops),
            "sm_clock_mhz": sum(mhz) / len(mhz) if mhz else None,
            "cycles_clock64": cycles / hops if cycles else None,
        }
        point["cycles_at_nvml_clock"] = (
            point["ns"] * point["sm_clock_mhz"] / 1e3 if point["sm_clock_mhz"] else None
        )
        point["cycles"] = point["cycles_clock64"] or point["cycles_at_nvml_clock"]
        log.info("chase %s B: %.4g ns, %s cycles", n * LINE, point["ns"], point["cycles"])
        out.append(point)
    return {"points": out, "clock64": with_clock, "nvml_reason": clock.reason}


def torch_reference(dev, nbytes: int, p: dict[str, Any]) -> dict[str, Any]:
    """HBM bandwidth of plain torch ops over ``nbytes`` (the sweep's largest working set):
    ``x.sum()`` (read) and ``y.copy_(x)`` (copy, bytes = read + write), for the goal "the
    Triton read within 5% of the best torch kernel"."""
    torch = dev.torch
    n = nbytes // 4
    x = torch.ones(n, dtype=torch.float32, device=dev.torch_device)
    y = torch.empty_like(x)
    out = {}
    for name, fn, moved in (
        ("sum", lambda: x.sum(), 4 * n),
        ("copy", lambda: y.copy_(x), 8 * n),
    ):
        s = _bench(dev, fn, p)
        out[f"{name}_gbps"] = rate_fields(s, moved)["gbps"]
    out["bytes"] = 4 * n
    return out


def gpu_memory(info: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    """The memory record of a CUDA device (see the module docstring)."""
    if triton is None:
        return record(SKIPPED, TRITON_MISSING, device_kind="cuda", device_name=info.get("name"))
    from hwlab.device import Device
    from hwlab.hierarchy.measure import auto_max_bytes

    dev = Device.from_info(info)
    torch = dev.torch
    props = torch.cuda.get_device_properties(dev.torch_device)
    sm = int(props.multi_processor_count)
    l2 = int(getattr(props, "L2_cache_size", 0) or 0) or None
    smem = int(getattr(props, "shared_memory_per_multiprocessor", 0) or 0) or None
    top = auto_max_bytes(p["max_bytes"], l2)
    ppo, sparse = p["points_per_octave"], p["sparse_points_per_octave"]
    grid = dict(dense_until=4 * l2 if l2 else None, sparse_points_per_octave=sparse)
    pblk = PBLOCK * 4 * p["gpu_programs_per_sm"]
    l1_sizes = size_grid(max(pblk, p["min_bytes"]), p["gpu_l1_max_bytes"], ppo, align=pblk)
    sizes = size_grid(p["min_bytes"], top, ppo, align=BLOCK * 4 * 2, **grid)
    lat_top = int(p["latency_max_bytes"] or max(8 * (l2 or 0), 64 * 1024**2))
    lat_sizes = size_grid(p["min_bytes"], lat_top, ppo, align=LINE, **grid)
    clock = SmClock(torch, dev.torch_device)
    sweeps: dict[str, dict[str, Any]] = {}
    failed: list[str] = []

    def guarded(name: str, meta: dict[str, Any], run) -> None:
        """One sweep; a failure (a kernel that does not compile on this Triton, out of
        memory) is recorded with its reason and the other sweeps go on."""
        try:
            got = run()
        except Exception as e:  # noqa: BLE001 - recorded, never swallowed silently
            log.exception("%s sweep failed", name)
            dev.empty_cache()
            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            failed.append(f"{name}: {why}")
            sweeps[name] = {**meta, "status": "failed", "reason": why, "points": []}
            return
        sweeps[name] = {**meta, "status": OK, **(got if isinstance(got, dict) else {"points": got})}

    try:
        guarded(
            "l1_read",
            {
                "metric": "gbps",
                "kind": "bandwidth",
                "scope": f"per SM ({p['gpu_programs_per_sm']} programs per SM, {sm} SMs)",
            },
            lambda: l1_sweep(dev, sm, l1_sizes, p),
        )
        for kernel in p["kernels"]:
            guarded(
                kernel,
                {
                    "metric": "gbps",
                    "kind": "bandwidth",
                    "scope": "whole GPU, grid-stride over the working set (.cg loads)",
                },
                lambda kernel=kernel: shared_sweep(dev, sm, sizes, kernel, p),
            )
        guarded(
            "chase",
            {"metric": "ns", "kind": "latency", "scope": "1 warp on 1 SM"},
            lambda: chase_sweep(dev, lat_sizes, p, clock),
        )
        guarded(
            "torch_reference",
            {"metric": "gbps", "kind": "reference", "scope": "torch x.sum() / y.copy_(x)"},
            lambda: {"points": [], "reference": torch_reference(dev, sizes[-1], p)},
        )
    finally:
        clock.close()
    if len(failed) == len(sweeps):
        return record(
            FAILED,
            "; ".join(failed),
            device_kind="cuda",
            device_name=info.get("name"),
            sweeps=sweeps,
        )
    levels = [
        {
            "level": 1,
            "name": "L1/shared",
            "size_bytes": smem,
            "aggregate_bytes": None,
            "source": f"torch get_device_properties().shared_memory_per_multiprocessor = {smem}",
            "scope": "per SM",
        },
        {
            "level": 2,
            "name": "L2",
            "size_bytes": l2,
            "aggregate_bytes": l2,
            "source": "torch get_device_properties().L2_cache_size",
            "scope": "whole GPU",
        },
    ]
    return record(
        OK,
        "; ".join(failed) or None,
        device_kind="cuda",
        device_name=info.get("name"),
        sm_count=sm,
        reported={"source": "torch.cuda.get_device_properties", "levels": levels},
        memory={"name": "HBM", "bytes": int(props.total_memory)},
        method={
            "timer": dev.timer_name,
            "bench": f"Device.bench loop mode, {p['gpu_launches']} launches per repeat",
            "compiler": f"triton {triton.__version__}",
            "l1_sizes": [l1_sizes[0], l1_sizes[-1], len(l1_sizes)],
            "sizes": [sizes[0], sizes[-1], len(sizes)],
            "latency_sizes": [lat_sizes[0], lat_sizes[-1], len(lat_sizes)],
            "line_bytes": LINE,
            "points_per_octave": ppo,
        },
        sweeps=sweeps,
    )


# ---- host link and peer-to-peer ---------------------------------------------------------


def _copy_points(dev, make, sizes: list[int], p: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for size in sizes:
        try:
            fn = make(size)
        except (RuntimeError, MemoryError) as e:  # pinned memory refused, out of memory
            log.warning("copy of %s B not measured: %s", size, e)
            break
        iters = max(1, min(50, p["gpu_link_bytes"] // max(size, 1)))
        s = dev.bench(fn, iters=iters, mode="loop", warmup=2, min_repeats=p["repeats"])
        st = rate_fields(s, size)
        out.append({"size_bytes": size, "iters": iters, **st})
        log.info("copy %s B: %.4g GB/s", size, st["gbps"])
        del fn
    return out


def link(info: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    """Host↔device (pinned, pageable) and, with two GPUs, peer-to-peer copy bandwidth."""
    from hwlab.device import Device

    dev = Device.from_info(info)
    torch = dev.torch
    sizes = [4] + size_grid(4096, p["link_max_bytes"], 1, align=4096)[::2]
    cases = {}
    for pinned in (True, False):
        label = "pinned" if pinned else "pageable"

        def h2d(size, pinned=pinned):
            h = torch.ones(size, dtype=torch.uint8, pin_memory=pinned)
            d = torch.empty(size, dtype=torch.uint8, device=dev.torch_device)
            return lambda: d.copy_(h, non_blocking=pinned)

        def d2h(size, pinned=pinned):
            h = torch.empty(size, dtype=torch.uint8, pin_memory=pinned)
            d = torch.ones(size, dtype=torch.uint8, device=dev.torch_device)
            return lambda: h.copy_(d, non_blocking=pinned)

        cases[f"h2d_{label}"] = _copy_points(dev, h2d, sizes, p)
        cases[f"d2h_{label}"] = _copy_points(dev, d2h, sizes, p)
    p2p: dict[str, Any]
    n = torch.cuda.device_count()
    if n < 2:
        p2p = {"status": SKIPPED, "reason": f"{n} GPU visible: peer-to-peer needs two"}
    else:
        peer = torch.cuda.can_device_access_peer(0, 1)
        p2p = {"status": OK, "reason": None, "peer_access": peer, "cases": {}}
        for a, b in ((0, 1), (1, 0)):
            src_dev = Device("cuda", a)

            def make(size, a=a, b=b):
                s = torch.ones(size, dtype=torch.uint8, device=f"cuda:{a}")
                d = torch.empty(size, dtype=torch.uint8, device=f"cuda:{b}")
                return lambda: d.copy_(s)

            p2p["cases"][f"cuda{a}_to_cuda{b}"] = _copy_points(src_dev, make, sizes, p)
        torch.cuda.set_device(dev.torch_device)
    return record(
        OK,
        None,
        device_kind="cuda",
        device_name=info.get("name"),
        method={
            "timer": dev.timer_name,
            "op": "torch Tensor.copy_ (non_blocking from/to pinned memory)",
            "latency": "time of one 4-byte copy",
        },
        cases=cases,
        p2p=p2p,
    )
