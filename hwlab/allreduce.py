"""Lab 3: AllReduce bandwidth sweep, launched through torchrun (gloo on CPU, NCCL on GPUs).

What is timed and how (nccl-tests' blocking mode, as ml-engineering's all_reduce_bench):
- One process per rank, started by ``torchrun`` (``python -m torch.distributed.run``):
  ``--standalone`` (rendezvous on a free localhost port) on one node; on several nodes one
  torchrun per node through ``srun``, rendezvous ``c10d`` at ``allreduce.rdzv_endpoint``
  (default: this host, a free port). NCCL: one rank per GPU, tensors on the GPU; gloo: CPU
  tensors, each rank with ``threads / ranks`` CPU threads.
- Per message size (``min_bytes`` doubling to ``max_bytes``): ``warmup`` untimed, then
  ``iters`` timed AllReduces (SUM, in place). Before each: the rank's input is rewritten
  (untimed), the device synchronized, then a barrier so all ranks start together. Each
  AllReduce is timed alone with the device timer (:class:`hwlab.device.Device`: CUDA events
  around the call on the GPU, ``perf_counter_ns`` around the blocking call on the CPU).
- The time of a size is the median over its iterations on each rank, then the max over
  ranks (the collective is as slow as its slowest rank); min / max over iterations of that
  rank and their spread are kept. algbw = bytes / time, busbw = algbw x 2(n-1)/n
  (nccl-tests' definitions, :mod:`hwlab.formulas`, GB = 1e9 bytes).
- Large sizes may get fewer iterations: ``budget_mb`` caps the timed traffic per size,
  iters(size) = clamp(budget / size, min_iters, iters), warmup(size) = min(warmup,
  max(1, iters(size) // 3)). Every row carries the counts it used.
- Correctness on every size (as nccl-tests ``-c``): rank r contributes the element pattern
  (r + 1) + (i mod 7); every rank checks the reduced tensor exactly against
  n(n+1)/2 + n (i mod 7). The values are integers small enough to be exact in the dtype, so
  any summation order gives the same bits; a single wrong element marks the row
  ``correct: false``. The rank weights catch a missing or doubled rank, the period-7
  pattern a misplaced chunk. Where n is too large for that pattern to stay exact (bf16,
  n > 17), simpler exact patterns are used (see :func:`pattern_for`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hwlab import formulas as F
from hwlab.io import OK, OOM, SKIPPED, read_json, record, with_window, write_json
from hwlab.lock import owned_tempdir

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("gloo", "nccl")
# bytes per element, and the significand bits (with the implicit one): every integer up
# to 2**bits is exact in the dtype
DTYPES = {"fp32": (4, 24), "fp16": (2, 11), "bf16": (2, 8)}
PERIOD = 7
VERIFY_CHUNK = 1 << 20  # periods compared per step

# --------------------------------------------------------------------------------------
# Plan: sizes, iterations, backend, what to skip (pure)
# --------------------------------------------------------------------------------------


def element_bytes(dtype: str) -> int:
    if dtype not in DTYPES:
        raise ValueError(f"allreduce dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype][0]


def message_sizes(min_bytes: int, max_bytes: int) -> list[int]:
    """min_bytes, 2 min_bytes, 4 min_bytes ... up to max_bytes (nccl-tests ``-f 2``)."""
    if min_bytes < 1 or max_bytes < min_bytes:
        raise ValueError(f"need 1 <= min_bytes <= max_bytes, got {min_bytes}, {max_bytes}")
    sizes, s = [], min_bytes
    while s <= max_bytes:
        sizes.append(s)
        s *= 2
    return sizes


def iterations(size: int, warmup: int, iters: int, min_iters: int, budget_mb: int):
    """(warmup, iters) for one size: the timed traffic capped at ``budget_mb`` MiB.

    budget_mb = 0 means no cap. The cap never goes below ``min_iters`` timed calls (nor
    above ``iters``); warmup shrinks with it but keeps one call (the first AllReduce of a
    size pays buffer registration and protocol set-up).
    """
    if not budget_mb:
        return warmup, iters
    n = max(min(min_iters, iters), min(iters, (budget_mb * 1024**2) // size))
    if n == iters:
        return warmup, iters
    return (min(warmup, max(1, n // 3)) if warmup else 0), n


def resolve_backend(requested: str, device_kind: str) -> str:
    """auto = nccl when the run's device is a CUDA GPU, gloo otherwise."""
    if requested == "auto":
        return "nccl" if device_kind == "cuda" else "gloo"
    if requested not in BACKENDS:
        raise ValueError(f"allreduce backend must be auto, gloo or nccl, got {requested!r}")
    return requested


def skip_reason(
    backend: str,
    world_size: int,
    nodes: int,
    *,
    gpus_visible: int,
    nccl_available: bool,
    gloo_available: bool = True,
    in_slurm: bool = False,
) -> str | None:
    """Why this sweep cannot run here, or None. Pure: the caller says what it sees."""
    per_node = world_size // nodes
    if nodes > 1 and not in_slurm:
        return (
            f"nodes: {nodes} needs {nodes} machines: run this stage inside a SLURM allocation "
            "(snakemake --profile profiles/slurm, see README 'AllReduce across nodes'); this "
            "job is not in one (no SLURM_JOB_ID), so torchrun has no nodes to start on"
        )
    if backend == "nccl":
        if gpus_visible < per_node:
            where = "this node" if nodes == 1 else "each node"
            return (
                f"backend nccl puts one rank on each GPU: world size {world_size} needs "
                f"{per_node} GPUs on {where}, torch sees {gpus_visible}. As in the "
                "writeup's Lab 3 (single-GPU homelab), the NVLink sweep is skipped; the §6 "
                "traffic math (tables/napkin_tp.md) does not need the hardware"
            )
        if not nccl_available:
            return "this torch build has no NCCL (torch.distributed.is_nccl_available() is False)"
    elif backend == "gloo" and not gloo_available:
        return "this torch build has no gloo (torch.distributed.is_gloo_available() is False)"
    return None


# --------------------------------------------------------------------------------------
# Correctness pattern (exact in the dtype)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """Rank r's element i is ``(r + 1 if rank_weighted else 1) + (i mod period)``."""

    rank_weighted: bool
    period: int

    def rank_row(self, rank: int) -> list[int]:
        base = rank + 1 if self.rank_weighted else 1
        return [base + j for j in range(self.period)]

    def expected_row(self, world_size: int) -> list[int]:
        base = world_size * (world_size + 1) // 2 if self.rank_weighted else world_size
        return [base + world_size * j for j in range(self.period)]

    def max_sum(self, world_size: int) -> int:
        return max(self.expected_row(world_size))


def pattern_for(world_size: int, dtype: str) -> Pattern | None:
    """The most telling pattern whose sums (and partial sums) are exact in ``dtype``.

    All values are positive integers, so every partial sum is at most the final sum; if
    that is <= 2**significand_bits, any reduction order is exact. None: no exact pattern.
    """
    bits = DTYPES[dtype][1]
    for p in (Pattern(True, PERIOD), Pattern(False, PERIOD), Pattern(False, 1)):
        if p.max_sum(world_size) <= 2**bits:
            return p
    return None


def _tiled(torch, row: list[int], numel: int, dtype, device):
    reps = -(-numel // len(row))
    return torch.tensor(row, dtype=dtype, device=device).repeat(reps)[:numel].contiguous()


def rank_input(torch, pattern: Pattern, rank: int, numel: int, dtype, device):
    """Rank ``rank``'s contribution: its pattern row tiled over ``numel`` elements."""
    return _tiled(torch, pattern.rank_row(rank), numel, dtype, device)


def verify(result, pattern: Pattern, world_size: int) -> tuple[bool, int]:
    """(exactly right, number of wrong elements) of a reduced tensor (any torch device)."""
    import torch

    numel = result.numel()
    row = torch.tensor(pattern.expected_row(world_size), dtype=result.dtype, device=result.device)
    p = pattern.period
    full = numel - numel % p
    flat = result.reshape(-1)
    step = p * VERIFY_CHUNK  # whole periods per chunk: no large temporaries
    bad = 0
    for lo in range(0, full, step):
        hi = min(full, lo + step)
        bad += int((flat[lo:hi].view(-1, p) != row).sum().item())
    if numel % p:
        bad += int((flat[full:] != row[: numel % p]).sum().item())
    return bad == 0, bad


# --------------------------------------------------------------------------------------
# The rank's side (runs under torchrun: python -m hwlab.allreduce --spec FILE)
# --------------------------------------------------------------------------------------


def _is_oom(dev, err: BaseException) -> bool:
    return isinstance(err, dev.oom_errors) or "can't allocate memory" in str(err)


def worker(spec: dict[str, Any]) -> None:
    """One rank of the sweep; rank 0 writes the raw per-size results to ``spec['raw']``."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from hwlab.device import Device

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = spec["backend"]
    cuda = backend == "nccl"
    dev = Device("cuda" if cuda else "cpu", local_rank if cuda else 0, spec["threads_per_rank"])
    kw = {"device_id": dev.torch_device} if cuda else {}
    dist.init_process_group(backend, timeout=timedelta(seconds=spec["timeout_s"]), **kw)

    def barrier() -> None:
        if cuda:
            dist.barrier(device_ids=[local_rank])
        else:
            dist.barrier()

    tdtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[spec["dtype"]]
    el = element_bytes(spec["dtype"])
    pattern = Pattern(**spec["pattern"]) if spec["pattern"] else None
    results: list[dict[str, Any]] = []
    for point in spec["points"]:
        size, warmup, iters = point["size_bytes"], point["warmup"], point["iters"]
        numel = size // el
        ok_alloc = 1
        x = src = None
        try:
            x = torch.empty(numel, dtype=tdtype, device=dev.torch_device)
            row = pattern.rank_row(rank) if pattern else [1]
            src = _tiled(torch, row, numel, tdtype, dev.torch_device)
        except (RuntimeError, MemoryError) as e:  # agree on OOM, or the others would hang
            if not _is_oom(dev, e):
                raise
            ok_alloc = 0
        flag = torch.tensor([ok_alloc], dtype=torch.int32, device=dev.torch_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if int(flag.item()) == 0:
            results.append({"size_bytes": size, "status": OOM})
            break
        times = []
        start, stop = dev.event_pair()
        for i in range(warmup + iters):
            x.copy_(src)
            dev.synchronize()
            barrier()
            start.record()
            dist.all_reduce(x)
            stop.record()
            dev.synchronize()
            if i >= warmup:
                times.append(dev.elapsed_s(start, stop))
        correct, bad = verify(x, pattern, world) if pattern else (None, None)
        results.append(
            {
                "size_bytes": size,
                "status": OK,
                "times_s": times,
                "correct": correct,
                "wrong_elements": bad,
            }
        )
        del x, src
        dev.empty_cache()

    gathered: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(results, gathered, dst=0)
    if rank == 0:
        write_json(spec["raw"], {"ranks": gathered, "timer": dev.timer_name})
    barrier()
    dist.destroy_process_group()


def combine_ranks(ranks: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per size: median over iterations on each rank, max over ranks; correct on all ranks."""
    rows = []
    for per_rank in zip(*ranks, strict=False):
        size = per_rank[0]["size_bytes"]
        if any(r["status"] != OK for r in per_rank):
            rows.append({"size_bytes": size, "status": OOM})
            continue
        medians = [F.median(r["times_s"]) for r in per_rank]
        slow = max(range(len(per_rank)), key=medians.__getitem__)
        ts = per_rank[slow]["times_s"]
        correct = [r["correct"] for r in per_rank]
        rows.append(
            {
                "size_bytes": size,
                "status": OK,
                "time_s": medians[slow],
                "time_min_s": min(ts),
                "time_max_s": max(ts),
                "rel_spread": F.rel_spread(ts),
                "slowest_rank": slow,
                "rank_median_s": medians,
                "correct": None if None in correct else all(correct),
                "wrong_elements": None
                if None in correct
                else sum(r["wrong_elements"] for r in per_rank),
            }
        )
    return rows


# --------------------------------------------------------------------------------------
# The job's side: decide, launch torchrun, write the record
# --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def torchrun_command(
    python: str,
    world_size: int,
    nodes: int,
    spec_path: str,
    *,
    rdzv_endpoint: str = "",
    rdzv_id: str = "hwlab-allreduce",
) -> list[str]:
    """The launch command. One node: torchrun --standalone. Several: one torchrun per node
    through srun (inside the SLURM allocation), c10d rendezvous at ``rdzv_endpoint``."""
    per_node = world_size // nodes
    worker = ["-m", "hwlab.allreduce", "--spec", spec_path]
    run = [python, "-m", "torch.distributed.run", "--max-restarts", "0"]
    if nodes == 1:
        return [*run, "--standalone", "--nnodes", "1", "--nproc-per-node", str(per_node), *worker]
    if not rdzv_endpoint:
        raise ValueError("nodes > 1 needs a rendezvous endpoint HOST:PORT")
    srun = [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
    ]
    return [
        *srun,
        *run,
        "--nnodes",
        str(nodes),
        "--nproc-per-node",
        str(per_node),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        rdzv_endpoint,
        "--rdzv-id",
        rdzv_id,
        *worker,
    ]


# ---- processes that die with the job ------------------------------------------------------
# SIGKILL of the job (or of Snakemake's whole process group) must not leave ranks running:
# they would finish the sweep, hold the GPUs and overlap the next measurement. torchrun
# starts each rank in a session of its own, so killing the job's process group does not
# reach them. Hence: the job asks the kernel to SIGKILL torchrun when the job dies
# (PR_SET_PDEATHSIG, set between fork and exec); each rank does the same for its torchrun
# and, for the instant before that, watches the job itself (pid + start time); on SIGTERM,
# SIGINT or SIGHUP the job stops torchrun and its ranks, removes its scratch folder and
# exits; a scratch folder left by a SIGKILL is swept by the next job (hwlab.lock).

TMP_PREFIX = ".allreduce-"
PR_SET_PDEATHSIG = 1
ENV_JOB = "HWLAB_JOB"  # "host:pid:starttime" of the job that started the ranks


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _start_time(pid: int) -> str | None:
    """The start time of ``pid`` as text (:func:`hwlab.jobtimes.start_ticks`)."""
    from hwlab.jobtimes import start_ticks

    ticks = start_ticks(pid)
    return None if ticks is None else str(ticks)


def job_identity() -> dict[str, str]:
    pid = os.getpid()
    return {ENV_JOB: f"{socket.gethostname()}:{pid}:{_start_time(pid) or ''}"}


def job_alive(identity: str | None) -> bool:
    """Whether the job named by ``identity`` still runs (True if it cannot be told: on
    another host, or without /proc)."""
    if not identity:
        return True
    host, pid, start = (identity.split(":") + ["", "", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit() or not start:
        return True
    return _start_time(int(pid)) == start


def _die_with_parent(parent: int):
    def preexec() -> None:  # in the child, between fork and exec
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent:  # the job died before the line above
            os._exit(1)

    return preexec


class _Stop(BaseException):
    """Raised in the job's main thread by SIGTERM / SIGINT / SIGHUP."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def _signals_stop():
    """SIGTERM / SIGINT / SIGHUP raise :class:`_Stop` in the main thread; once one has,
    later ones are ignored while the job cleans up (Snakemake, shutting down, may send its
    own), and the job exits with 128 + the signal number instead of dying of it."""

    stopped = []

    def handler(signum, _frame):
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        stopped.append(signum)
        raise _Stop(signum)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        if not stopped:  # else: keep ignoring them until the job has exited
            for s, h in old.items():
                signal.signal(s, h)


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop torchrun: SIGTERM (it stops its ranks), then SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def run_bound(cmd: list[str], *, env: dict[str, str]) -> int:
    """Run the launcher bound to this job (see above); its exit code. A signal to the job
    stops the launcher and its ranks, then exits the job with 128 + the signal number."""
    with _signals_stop():
        proc = None
        try:
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=sys.stderr,
                stderr=sys.stderr,
                preexec_fn=_die_with_parent(os.getpid()),
            )
            return proc.wait()
        except _Stop as e:
            msg = (
                f"hwlab allreduce: {signal.Signals(e.signum).name}: stopping torchrun and its "
                "ranks, removing the scratch folder\n"
            )
            with contextlib.suppress(OSError):
                os.write(2, msg.encode())
            if proc is not None:
                _stop(proc)
            raise SystemExit(128 + e.signum) from None
        finally:
            if proc is not None and proc.poll() is None:
                _stop(proc, grace_s=2.0)


def rank_failure(returncode: int) -> str:
    if returncode < 0:
        return f"torchrun was killed by {signal.Signals(-returncode).name}"
    return "the ranks' output is above in this log (torchrun's 'Root Cause' names the rank)"


def watch_job(identity: str | None, interval_s: float = 1.0) -> None:
    """In a rank: exit at once if the job that started the sweep is gone."""

    def loop() -> None:
        while True:
            if not job_alive(identity):
                os._exit(1)
            time.sleep(interval_s)

    threading.Thread(target=loop, name="hwlab-job-watch", daemon=True).start()


def plan_points(
    dtype: str,
    min_bytes: int,
    max_bytes: int,
    warmup: int,
    iters: int,
    min_iters: int,
    budget_mb: int,
) -> list[dict[str, int]]:
    el = element_bytes(dtype)
    points = []
    for size in message_sizes(min_bytes, max_bytes):
        if size % el:
            raise ValueError(
                f"allreduce.min_bytes: message size {size} is not a multiple of the "
                f"{dtype} element ({el} bytes)"
            )
        w, n = iterations(size, warmup, iters, min_iters, budget_mb)
        points.append({"size_bytes": size, "warmup": w, "iters": n})
    return points


def rows_for(raw_rows, points, *, backend, world_size, nodes, dtype, timer):
    """Table rows of one sweep (derived columns from :mod:`hwlab.formulas`)."""
    by_size = {p["size_bytes"]: p for p in points}
    out = []
    for r in raw_rows:
        p = by_size[r["size_bytes"]]
        row = {
            "backend": backend,
            "world_size": world_size,
            "nodes": nodes,
            "dtype": dtype,
            "size_bytes": r["size_bytes"],
            "count": r["size_bytes"] // element_bytes(dtype),
            "status": r["status"],
            "warmup": p["warmup"],
            "iters": p["iters"],
            "timer": timer,
        }
        if r["status"] == OK:
            algbw = F.algbw_gbps(r["size_bytes"], r["time_s"])
            row.update(
                time_us=r["time_s"] * 1e6,
                time_min_us=r["time_min_s"] * 1e6,
                time_max_us=r["time_max_s"] * 1e6,
                rel_spread=r["rel_spread"],
                algbw_gbps=algbw,
                busbw_gbps=F.busbw_gbps(algbw, world_size),
                correct=r["correct"],
                wrong_elements=r["wrong_elements"],
                slowest_rank=r["slowest_rank"],
            )
        out.append(row)
    return out


CSV_COLUMNS = [
    "backend", "world_size", "nodes", "dtype", "size_bytes", "count", "time_us",
    "time_min_us", "time_max_us", "rel_spread", "algbw_gbps", "busbw_gbps", "correct",
    "wrong_elements", "warmup", "iters", "timer", "status",
]  # fmt: skip


def measure(
    out_json: str,
    out_csv: str,
    *,
    device_json: str,
    backend: str,
    world_size: int,
    nodes: int,
    dtype: str,
    min_bytes: int,
    max_bytes: int,
    warmup: int,
    iters: int,
    min_iters: int,
    budget_mb: int,
    timeout_s: int,
    rdzv_endpoint: str = "",
    threads: int = 0,
) -> dict[str, Any]:
    """Run one sweep (or decide it is skipped) and write its JSON record and CSV rows."""
    import pandas as pd
    import torch

    from hwlab.device import available_threads

    info = read_json(device_json)
    resolved = resolve_backend(backend, info["kind"])
    if world_size % nodes:
        raise ValueError(
            f"allreduce.world_sizes: {world_size} ranks do not split evenly over "
            f"allreduce.nodes = {nodes}"
        )
    per_node = world_size // nodes
    threads = threads or available_threads()
    pattern = pattern_for(world_size, dtype)
    points = plan_points(dtype, min_bytes, max_bytes, warmup, iters, min_iters, budget_mb)
    capped = [p for p in points if (p["warmup"], p["iters"]) != (warmup, iters)]
    fields: dict[str, Any] = {
        "backend": resolved,
        "backend_requested": backend,
        "world_size": world_size,
        "nodes": nodes,
        "ranks_per_node": per_node,
        "dtype": dtype,
        "device_kind": "cuda" if resolved == "nccl" else "cpu",
        "method": {
            "launcher": "torchrun --standalone" if nodes == 1 else "srun + torchrun (c10d)",
            "timer": "cuda_events" if resolved == "nccl" else "perf_counter_ns",
            "per_iteration": "rewrite input, synchronize, barrier, time one all_reduce(SUM)",
            "statistic": "median over iterations per rank, max over ranks",
            "warmup": warmup,
            "iters": iters,
            "min_iters": min_iters,
            "budget_mb": budget_mb,
            "capped_sizes": [p["size_bytes"] for p in capped],
            "threads_per_rank": max(1, threads // per_node) if resolved == "gloo" else None,
            "pattern": asdict(pattern) if pattern else None,
            "busbw_factor": F.allreduce_busbw_factor(world_size),
        },
    }
    reason = skip_reason(
        resolved,
        world_size,
        nodes,
        gpus_visible=torch.cuda.device_count() if torch.cuda.is_available() else 0,
        nccl_available=torch.distributed.is_nccl_available(),
        gloo_available=torch.distributed.is_gloo_available(),
        in_slurm="SLURM_JOB_ID" in os.environ,
    )
    if reason:
        rec = record(SKIPPED, reason, **fields, rows=[])
        write_json(out_json, rec)
        _write_csv(pd, out_csv, [{**_skip_row(fields), "reason": reason}])
        return rec

    start = time.time()
    with owned_tempdir(Path(out_json).parent, TMP_PREFIX) as tmp:
        spec = {
            "backend": resolved,
            "dtype": dtype,
            "points": points,
            "pattern": asdict(pattern) if pattern else None,
            "threads_per_rank": fields["method"]["threads_per_rank"] or 1,
            "timeout_s": timeout_s,
            "raw": str(Path(tmp) / "raw.json"),
        }
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        endpoint = rdzv_endpoint or (f"{socket.gethostname()}:{_free_port()}" if nodes > 1 else "")
        cmd = torchrun_command(
            sys.executable,
            world_size,
            nodes,
            str(spec_path),
            rdzv_endpoint=endpoint,
            rdzv_id=f"hwlab-{os.environ.get('SLURM_JOB_ID', os.getpid())}",
        )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "OMP_NUM_THREADS": str(spec["threads_per_rank"]),
            **job_identity(),
        }
        print("hwlab allreduce:", " ".join(cmd), file=sys.stderr, flush=True)
        returncode = run_bound(cmd, env=env)
        if returncode != 0 or not Path(spec["raw"]).is_file():
            raise RuntimeError(
                f"torchrun exited with code {returncode} before writing results: "
                f"{rank_failure(returncode)}"
            )
        raw = read_json(spec["raw"])
    fields["method"]["command"] = cmd
    raw_rows = combine_ranks(raw["ranks"])
    rows = rows_for(
        raw_rows,
        points,
        backend=resolved,
        world_size=world_size,
        nodes=nodes,
        dtype=dtype,
        timer=raw["timer"],
    )
    wrong = [r["size_bytes"] for r in rows if r.get("correct") is False]
    status_reason = (
        f"WRONG RESULT at sizes {wrong} (bytes): the reduced tensor differs from the exact sum"
        if wrong
        else None
    )
    rec = with_window(record(OK, status_reason, **fields, rows=rows), start)
    write_json(out_json, rec)
    _write_csv(pd, out_csv, rows)
    return rec


def _skip_row(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "backend": fields["backend"],
        "world_size": fields["world_size"],
        "nodes": fields["nodes"],
        "dtype": fields["dtype"],
        "status": SKIPPED,
    }


def _write_csv(pd, path: str, rows: list[dict[str, Any]]) -> None:
    from hwlab.io import write_table

    df = pd.DataFrame(rows)
    cols = [c for c in CSV_COLUMNS if c in df.columns] + [
        c for c in df.columns if c not in CSV_COLUMNS
    ]
    write_table(df.reindex(columns=cols), path)


def write_sweep(out_json: str, out_csv: str, *, device_json: str, threads: int, **sweep) -> None:
    """Snakemake entry: one (backend, world size) sweep -> JSON record + CSV rows."""
    measure(out_json, out_csv, device_json=device_json, threads=threads, **sweep)


def _main(argv: list[str] | None = None) -> int:
    # die with torchrun, and with the job if torchrun died before this line
    set_parent_death_signal(signal.SIGKILL)
    watch_job(os.environ.get(ENV_JOB))
    ap = argparse.ArgumentParser(description="one AllReduce rank (started by torchrun)")
    ap.add_argument("--spec", required=True, help="JSON spec written by hwlab.allreduce")
    args = ap.parse_args(argv)
    worker(json.loads(Path(args.spec).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
