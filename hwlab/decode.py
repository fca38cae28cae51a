"""Decode profiling at one batch size: TPOT, throughput, memory, kernel inventory, GPU-Util.

Method (one job per batch, one process; see the writeup's §5 and Lab 1a):
- Model: :func:`hwlab.model.load` (sdpa attention, eval, ``torch.inference_mode``). Prompt:
  ``prompt_len`` random token ids per sequence (seeded); decoding is greedy with a KV cache
  (transformers' ``DynamicCache``), every sequence the same length, no padding.
- Warmup: one untimed prefill and decode step (first-call costs: allocator, kernels,
  libraries) before anything is timed.
- Timed run: a fresh prefill, timed alone (device timer, then a synchronize), then
  ``new_tokens`` decode steps, each step between a pair of device markers
  (:meth:`hwlab.device.Device.event_pair`: CUDA events on a GPU, so there is no
  synchronize between steps; perf_counter_ns on a CPU). The first ``warmup_steps`` steps
  are dropped; TPOT is the median with p10 / p90 of the rest, tokens/s = batch / median
  TPOT. Peak memory: CUDA ``max_memory_allocated`` since the timed run began; CPU the
  process's peak RSS (it includes the Python/torch baseline, recorded beside it).
- GPU-Util: on a GPU a background thread samples NVML utilisation every
  ``nvml_interval_ms`` during the kept decode steps (NVML's value is the fraction of its
  own sample period, 1/6 s to 1 s, in which any kernel ran: busy, not productive). The NVML
  device is found by the CUDA device's PCI bus id (``nvmlDeviceGetHandleByPciBusId``; NVML
  ignores CUDA_VISIBLE_DEVICES), else its UUID, else its index; the record says which.
- Attention backend: ``decode.sdpa_backend`` (flash, cudnn, efficient, math; auto = torch
  chooses) is forced with ``torch.nn.attention.sdpa_kernel`` around the warmup, the timed
  steps and the profiled window. The record names the SDPA op(s) and attention kernels the
  profiled window ran and the cuDNN version; a backend with no kernel for this model on
  this device is a ``skipped`` record with torch's reason.
- Napkin inputs: weight bytes (unique parameters x dtype size; a tied embedding is read
  once, by the lm_head) and the K/V bytes the kept steps read (the whole context of each
  step), averaged per step. The aggregation divides them by the device's bandwidth.
- Kernel inventory: after the timed run, torch.profiler (``record_shapes=True``) records a
  fresh prefill and ``profile_steps`` decode steps, each inside an annotation
  (``hwlab::prefill`` / ``hwlab::decode_step``); the chrome trace is kept (gzipped, opens
  in Perfetto) and read back by :mod:`hwlab.inventory`. Profiling never overlaps timing.
- Out of memory (``torch.OutOfMemoryError`` on a GPU; on a CPU an allocation failure,
  possibly under the ``memory_cap_mb`` address-space cap this job sets on itself before the
  model is built) yields a record with ``status: oom`` and its reason, empty inventory
  files, and the job succeeds so the sweep goes on.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib
import json
import logging
import os
import re
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hwlab import formulas as F
from hwlab.device import Device
from hwlab.dtypes import MODEL_DTYPES
from hwlab.inventory import CPU_OP_CATS, kernel_rows, load_trace, write_kernels_csv
from hwlab.io import OK, OOM, SKIPPED, atomic_path, read_json, record, with_window, write_json

log = logging.getLogger("hwlab.decode")

PREFILL, DECODE = "hwlab::prefill", "hwlab::decode_step"
CPU_NVML_REASON = "device is a CPU: NVML GPU-Util exists for NVIDIA GPUs only"
CPU_OOM_MARKERS = ("can't allocate memory", "cannot allocate memory", "not enough memory")


# ---- the API the decode and ncu jobs share ----------------------------------------------


def random_prompt(batch: int, prompt_len: int, vocab_size: int, seed: int, device) -> torch.Tensor:
    """[batch, prompt_len] int64 token ids, uniform over the vocabulary, seeded (CPU draw)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch, prompt_len), generator=gen, dtype=torch.int64)
    return ids.to(device)


@functools.cache
def _accepts_logits_to_keep(model_class: type) -> bool:
    import inspect

    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def prefill_kwargs(model) -> dict[str, Any]:
    """The keyword arguments a prefill passes beside the ids: ``logits_to_keep=1`` where the
    model's forward takes it (only the last position's logits, as generate does). Read from
    the model class's signature once per class, so no timed prefill pays for
    ``inspect.signature``."""
    return {"logits_to_keep": 1} if _accepts_logits_to_keep(type(model)) else {}


@torch.inference_mode()
def prefill(model, input_ids: torch.Tensor) -> tuple[object, torch.Tensor]:
    """Run the prompt through the model; returns (KV cache, greedy next ids [batch, 1]).
    Only the last position's logits are computed (:func:`prefill_kwargs`)."""
    out = model(input_ids=input_ids, use_cache=True, **prefill_kwargs(model))
    return out.past_key_values, out.logits[:, -1, :].argmax(dim=-1, keepdim=True)


@torch.inference_mode()
def decode_step(model, cache, next_ids: torch.Tensor) -> torch.Tensor:
    """One greedy decode step for every sequence; the cache grows in place."""
    out = model(input_ids=next_ids, past_key_values=cache, use_cache=True)
    return out.logits[:, -1, :].argmax(dim=-1, keepdim=True)


# ---- memory cap and OOM ------------------------------------------------------------------


def address_space_bytes() -> int:
    """This process's current virtual size (VmSize), the quantity RLIMIT_AS limits."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def apply_memory_cap(cap_mb: int) -> dict[str, int]:
    """Let this process grow by at most ``cap_mb`` MiB of address space from now on
    (RLIMIT_AS = current VmSize + cap). Larger allocations then fail like a full machine."""
    now = address_space_bytes()
    limit = now + cap_mb * 1024**2
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return {"cap_mb": cap_mb, "vm_at_cap_bytes": now, "rlimit_as_bytes": limit}


def is_oom(exc: BaseException, dev: Device) -> bool:
    """Out of memory on this device: torch's OOM types, MemoryError, or a CPU allocation
    failure (torch raises RuntimeError "... can't allocate memory ...")."""
    if isinstance(exc, dev.oom_errors):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in msg for m in CPU_OOM_MARKERS)


# ---- GPU-Util (NVML) ---------------------------------------------------------------------


def cuda_identity(torch_device) -> tuple[str | None, str | None]:
    """(PCI bus id ``domain:bus:device.0``, UUID) of a CUDA device as torch reports them."""
    props = torch.cuda.get_device_properties(torch_device)
    bus = getattr(props, "pci_bus_id", None)
    busid = None
    if bus is not None:
        dom, dev = getattr(props, "pci_domain_id", 0), getattr(props, "pci_device_id", 0)
        busid = f"{dom:08x}:{bus:02x}:{dev:02x}.0"
    uuid = getattr(props, "uuid", None)
    return busid, (str(uuid) if uuid else None)


class UtilSampler:
    """Samples NVML GPU utilisation in a background thread between start() and stop().

    ``nvml`` is the module with NVML's Python interface (default: nvidia-ml-py's
    ``pynvml``); ``identity`` the device's (PCI bus id, UUID) (default: from torch)."""

    def __init__(
        self,
        dev: Device,
        interval_ms: int,
        *,
        nvml=None,
        identity: tuple[str | None, str | None] | None = None,
    ):
        self.dev = dev
        self.interval_s = interval_ms / 1e3
        self.samples: list[int] = []
        self.reason: str | None = None if dev.is_cuda else CPU_NVML_REASON
        self.found_by: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._module = nvml
        self._identity = identity
        self._nvml = None
        self._dev_handle = None

    def _handle(self):
        """NVML's handle of this CUDA device: by PCI bus id (NVML and CUDA may number
        devices differently), else by UUID, else by index (the last resort)."""
        nvml = self._nvml
        busid, uuid = self._identity or cuda_identity(self.dev.torch_device)
        tried = []
        if busid:
            try:
                return nvml.nvmlDeviceGetHandleByPciBusId(busid), f"PCI bus id {busid}"
            except nvml.NVMLError as e:
                tried.append(f"PCI bus id {busid}: {e}")
        if uuid:
            u = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
            try:
                return nvml.nvmlDeviceGetHandleByUUID(u), f"UUID {u}"
            except nvml.NVMLError as e:
                tried.append(f"UUID {u}: {e}")
        index = self.dev.torch_device.index or 0
        how = f"index {index}" + (f" (not found by {'; '.join(tried)})" if tried else "")
        return nvml.nvmlDeviceGetHandleByIndex(index), how

    def prepare(self) -> None:
        """Open NVML and find the device (before the timed loop: it takes milliseconds)."""
        if self.reason:
            return
        try:
            nvml = self._module or importlib.import_module("pynvml")
            nvml.nvmlInit()
            self._nvml = nvml
            self._dev_handle, self.found_by = self._handle()
        except Exception as e:  # no driver library, no permission: record why, go on
            self.reason = f"NVML unavailable: {type(e).__name__}: {e}"

    def start(self) -> None:
        """Start sampling in the background (call prepare() first)."""
        if self.reason or self._nvml is None:
            return
        pynvml, handle = self._nvml, self._dev_handle

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.samples.append(int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
                except pynvml.NVMLError as e:
                    self.reason = f"NVML sampling failed: {e}"
                    return
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=run, name="nvml-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
        s = self.samples
        if not s and self.reason is None:
            self.reason = "no NVML sample was taken during the timed steps"
        return {
            "gpu_util_mean_pct": sum(s) / len(s) if s else None,
            "gpu_util_max_pct": max(s) if s else None,
            "gpu_util_samples": len(s),
            "gpu_util_interval_ms": self.interval_s * 1e3,
            "gpu_util_reason": self.reason,
            "gpu_util_device": self.found_by,
            "gpu_util_raw": s,
        }


# ---- attention backend -------------------------------------------------------------------
SDPA_BACKENDS = ("flash", "cudnn", "efficient", "math", "auto")
# the backend-specific SDPA ops (the generic aten::scaled_dot_product_attention calls one)
SDPA_OP = re.compile(r"^aten::_(scaled_dot_product_\w+|flash_attention\w*|efficient_attention\w*)")
ATTENTION_KERNEL = re.compile(r"flash_fwd|flash_attn|FlashAttn|fmha|sdpa|attention", re.I)
NO_SDPA_KERNEL = ("No viable backend for scaled_dot_product_attention", "No available kernel")


def sdpa_context(backend: str):
    """The context forcing ``backend`` for scaled_dot_product_attention (auto: none)."""
    if backend not in SDPA_BACKENDS:
        raise ValueError(f"decode.sdpa_backend must be one of {SDPA_BACKENDS}, got {backend!r}")
    if backend == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    which = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }[backend]
    return sdpa_kernel(which)


def no_sdpa_kernel(exc: BaseException) -> bool:
    """torch found no kernel of the forced backend for these inputs on this device."""
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in NO_SDPA_KERNEL)


def attention_used(trace: dict[str, Any]) -> dict[str, Any]:
    """The SDPA op(s) and attention kernels (full name -> launches, and the same by bare
    kernel name) a profiled window ran."""
    from hwlab.ncu import short_kernel_name

    ops: set[str] = set()
    kernels: dict[str, int] = {}
    for e in trace.get("traceEvents", []):
        if not isinstance(e, dict) or e.get("ph") != "X":
            continue
        name, cat = str(e.get("name", "")), str(e.get("cat", "")).lower()
        if cat in CPU_OP_CATS and SDPA_OP.search(name):
            ops.add(name)
        elif cat == "kernel" and ATTENTION_KERNEL.search(name):
            kernels[name] = kernels.get(name, 0) + 1
    short: dict[str, int] = {}
    for name, n in kernels.items():
        k = short_kernel_name(name)
        short[k] = short.get(k, 0) + n
    return {
        "attention_ops": sorted(ops),
        "attention_kernels": kernels,
        "attention_kernels_short": short,
    }


def cudnn_version() -> int | None:
    try:
        return torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # a torch build without cuDNN bindings
        return None


# ---- derived numbers -----------------------------------------------------------------------


def model_geometry(arch: dict[str, Any]) -> dict[str, int]:
    """Layers, K/V heads and head_dim: what the K/V cache's size depends on
    (:func:`hwlab.decode_ops.attention_shape`, the one reading of the config)."""
    from hwlab.decode_ops import attention_shape

    geo = attention_shape(arch)
    return {k: geo[k] for k in ("layers", "kv_heads", "head_dim")}


def napkin_bytes(
    *,
    param_count: int,
    dtype: str,
    batch: int,
    prompt_len: int,
    kept_steps: range,
    geometry: dict[str, int],
) -> dict[str, float]:
    """Bytes one decode step must read at least: all weights, plus the K/V of the context
    (prompt + tokens so far, the new one included) averaged over the kept steps."""
    nbytes = MODEL_DTYPES[dtype]
    weights = F.weight_bytes(param_count, nbytes)
    kv = [
        F.kv_cache_bytes(batch, prompt_len + i + 1, bytes_per_el=nbytes, **geometry)
        for i in kept_steps
    ]
    return {"weight_bytes": weights, "kv_bytes_per_step": sum(kv) / len(kv) if kv else 0.0}


def check_steps(new_tokens: int, warmup_steps: int) -> None:
    """A decode run must keep at least one step after its ``warmup_steps`` dropped ones."""
    if new_tokens <= warmup_steps:
        raise ValueError(
            f"decode.new_tokens ({new_tokens}) must exceed decode.warmup_steps "
            f"({warmup_steps}): no decode step would be left to time"
        )


def tpot_stats(step_s: list[float], warmup_steps: int, batch: int) -> dict[str, Any]:
    """TPOT statistics (ms) of the kept steps and the decode throughput they imply."""
    check_steps(len(step_s), warmup_steps)
    kept = step_s[warmup_steps:]
    p50 = F.median(kept)
    return {
        "tpot_ms_p50": p50 * 1e3,
        "tpot_ms_p10": F.quantile(kept, 0.1) * 1e3,
        "tpot_ms_p90": F.quantile(kept, 0.9) * 1e3,
        "tokens_per_s": batch / p50,
        "timed_steps": len(kept),
        "tpot_ms_steps": [s * 1e3 for s in step_s],
    }


# ---- the measurement ---------------------------------------------------------------------


def profile_window(
    dev: Device,
    run_prefill: Callable[[], Any],
    run_step: Callable[[Any], Any],
    profile_steps: int,
    trace_out: str,
) -> tuple[list[dict], dict[str, Any]]:
    """Record ``run_prefill()`` and ``profile_steps`` calls of ``run_step(state)`` (each
    returns the next state) under torch.profiler, inside the hwlab::prefill /
    hwlab::decode_step annotations; write the gzipped chrome trace; return what is read
    back from it (parsed once): the inventory rows and the attention the window ran
    (:func:`attention_used`). Eager and graph decode both profile through this."""
    import tempfile

    from torch.profiler import ProfilerActivity, profile, record_function

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.is_cuda else [])
    with profile(activities=acts, record_shapes=True) as prof:
        with record_function(PREFILL):
            state = run_prefill()
        for _ in range(profile_steps):
            with record_function(DECODE):
                state = run_step(state)
        dev.synchronize()
    with tempfile.TemporaryDirectory() as tmpdir:
        raw = Path(tmpdir) / "trace.json"
        prof.export_chrome_trace(str(raw))
        with (
            atomic_path(trace_out) as tmp,
            open(raw, "rb") as src,
            gzip.open(tmp, "wb", compresslevel=6) as dst,
        ):
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        trace = load_trace(raw)
    return kernel_rows(trace), attention_used(trace)


def timed_decode(
    dev: Device,
    run_prefill: Callable[[], Any],
    run_step: Callable[[Any], Any],
    *,
    batch: int,
    new_tokens: int,
    warmup_steps: int,
    nvml_interval_ms: int,
) -> dict[str, Any]:
    """The timed run eager and graph decode share (the module docstring's method): the peak
    memory counter reset, ``run_prefill()`` timed alone between device markers, then
    ``new_tokens`` calls of ``run_step(state)`` each between its own pair of markers (no
    synchronize between steps), GPU-Util sampled from step ``warmup_steps`` on. Returns
    prefill_ms, the TPOT statistics (:func:`tpot_stats`), peak_mem_mb and the GPU-Util
    fields. Whatever a run needs before its prefill (a static cache's reset) is done by
    the caller before this, so it is not timed."""
    dev.reset_peak_memory()
    start, stop = dev.event_pair()
    start.record()
    state = run_prefill()
    stop.record()
    dev.synchronize()
    prefill_s = dev.elapsed_s(start, stop)

    marks = [dev.event_pair() for _ in range(new_tokens)]
    sampler = UtilSampler(dev, nvml_interval_ms)
    sampler.prepare()
    for i, (s, e) in enumerate(marks):
        if i == warmup_steps:
            sampler.start()
        s.record()
        state = run_step(state)
        e.record()
    dev.synchronize()
    util = sampler.stop()
    steps = [dev.elapsed_s(s, e) for s, e in marks]
    peak = dev.peak_memory_bytes()
    del state
    return {
        "prefill_ms": prefill_s * 1e3,
        **tpot_stats(steps, warmup_steps, batch),
        "peak_mem_mb": peak / 1024**2,
        **util,
    }


def _eager_step(model):
    def run(state):
        cache, nxt = state
        return cache, decode_step(model, cache, nxt)

    return run


def measure_batch(
    dev: Device,
    model,
    *,
    batch: int,
    prompt_len: int,
    new_tokens: int,
    warmup_steps: int,
    profile_steps: int,
    seed: int,
    nvml_interval_ms: int,
    trace_out: str,
) -> tuple[dict[str, Any], list[dict]]:
    """Time and profile decoding at ``batch``; returns (measured fields, inventory rows)."""
    vocab = int(model.config.vocab_size)
    prompt = random_prompt(batch, prompt_len, vocab, seed, dev.torch_device)

    cache, nxt = prefill(model, prompt)  # warmup, untimed
    decode_step(model, cache, nxt)
    del cache, nxt
    dev.synchronize()

    def run_prefill():
        return prefill(model, prompt)

    fields = timed_decode(
        dev,
        run_prefill,
        _eager_step(model),
        batch=batch,
        new_tokens=new_tokens,
        warmup_steps=warmup_steps,
        nvml_interval_ms=nvml_interval_ms,
    )
    rows, attention = profile_window(dev, run_prefill, _eager_step(model), profile_steps, trace_out)
    return {**fields, **attention}, rows


def _empty_trace(path: str, status: str, reason: str) -> None:
    data = {"traceEvents": [], "hwlab": {"status": status, "reason": reason}}
    with atomic_path(path) as tmp, gzip.open(tmp, "wt") as fh:
        json.dump(data, fh)


def open_job(
    device_json: str, manifest: str, threads: int, *, new_tokens: int, warmup_steps: int
) -> tuple[dict[str, Any], dict[str, Any], Device]:
    """What every decode job (eager or graph) starts with: weights from the manifest only
    (``HF_HUB_OFFLINE``: never a download inside a measuring job), the step counts checked
    (:func:`check_steps`), the device record, the manifest and the :class:`Device`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    check_steps(new_tokens, warmup_steps)
    info = read_json(device_json)
    man = read_json(manifest)
    return info, man, Device.from_info(info, threads)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message ('' if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def oom_reason(exc: BaseException, batch: int, what: str = "") -> str:
    """The reason of an oom record: the batch, ``what`` ran (e.g. " (graph mode)"), torch's
    first line."""
    return f"out of memory at batch {batch}{what}: {first_line(exc)}"


def failed_record(status: str, reason: str, meta: dict[str, Any], dev: Device) -> dict[str, Any]:
    """The record of a decode job that could not measure (skipped, oom): logged, the
    device's cached memory released, the run's fields without measurements."""
    log.warning("%s", reason)
    with contextlib.suppress(Exception):
        dev.empty_cache()
    return record(status, reason, **meta)


def write_job(
    rec: dict[str, Any],
    rows: list[dict],
    *,
    out_json: str,
    out_kernels: str,
    out_trace: str,
    start: float,
) -> None:
    """A decode job's three files: the record (with its time window from ``start``), the
    inventory CSV and, where nothing was profiled, an empty trace that says why."""
    if rec["status"] != OK:
        _empty_trace(out_trace, rec["status"], rec["reason"])
    write_kernels_csv(out_kernels, rows)
    write_json(out_json, with_window(rec, start))


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def decode_meta(
    dev: Device,
    info: dict[str, Any],
    man: dict[str, Any],
    *,
    batch: int,
    dtype: str,
    prompt_len: int,
    new_tokens: int,
    warmup_steps: int,
    profile_steps: int,
    sdpa_backend: str,
) -> dict[str, Any]:
    """The fields every decode record (eager or graph) carries before it is measured: the
    run, the model and its geometry, the timer, the napkin's byte counts."""
    geometry = model_geometry(man["arch"])
    meta = {
        "batch": batch,
        "model": man["name"],
        "model_source": man["source"],
        "param_count": man["param_count"],
        "dtype": dtype,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "warmup_steps": warmup_steps,
        "profile_steps": profile_steps,
        "device_kind": dev.kind,
        "device_name": info.get("name"),
        "threads": dev.threads if not dev.is_cuda else None,
        "timer": dev.timer_name,
        "sdpa_backend": sdpa_backend,
        "cudnn_version": cudnn_version(),
        "peak_mem_kind": "torch.cuda.max_memory_allocated"
        if dev.is_cuda
        else "process peak RSS (ru_maxrss)",
        **geometry,
        **napkin_bytes(
            param_count=man["param_count"],
            dtype=dtype,
            batch=batch,
            prompt_len=prompt_len,
            kept_steps=range(warmup_steps, new_tokens),
            geometry=geometry,
        ),
    }
    if not dev.is_cuda:
        meta["baseline_rss_mb"] = _rss_bytes() / 1024**2
    return meta


def run_batch(
    *,
    out_json: str,
    out_kernels: str,
    out_trace: str,
    device_json: str,
    manifest: str,
    threads: int,
    batch: int,
    prompt_len: int,
    new_tokens: int,
    warmup_steps: int,
    profile_steps: int,
    memory_cap_mb: int,
    nvml_interval_ms: int,
    dtype: str,
    seed: int,
    sdpa_backend: str = "flash",
) -> dict[str, Any]:
    """The decode job: build the model, measure one batch, write its three files."""
    from hwlab import model as hwmodel

    start = time.time()
    info, man, dev = open_job(
        device_json, manifest, threads, new_tokens=new_tokens, warmup_steps=warmup_steps
    )
    meta = decode_meta(
        dev,
        info,
        man,
        batch=batch,
        dtype=dtype,
        prompt_len=prompt_len,
        new_tokens=new_tokens,
        warmup_steps=warmup_steps,
        profile_steps=profile_steps,
        sdpa_backend=sdpa_backend,
    )
    if memory_cap_mb and not dev.is_cuda:
        meta["memory_cap"] = apply_memory_cap(memory_cap_mb)
    rows: list[dict] = []
    try:
        model = hwmodel.load(manifest, dtype=dtype, device=str(dev.torch_device), seed=seed)
        with sdpa_context(sdpa_backend):
            fields, rows = measure_batch(
                dev,
                model,
                batch=batch,
                prompt_len=prompt_len,
                new_tokens=new_tokens,
                warmup_steps=warmup_steps,
                profile_steps=profile_steps,
                seed=seed,
                nvml_interval_ms=nvml_interval_ms,
                trace_out=out_trace,
            )
        rec = record(OK, None, **meta, **fields)
    except (RuntimeError, MemoryError) as e:
        if no_sdpa_kernel(e):
            rec = failed_record(
                SKIPPED,
                f"decode.sdpa_backend {sdpa_backend}: no such attention kernel for this "
                f"model ({dtype}) on {dev.kind}: {first_line(e)}",
                meta,
                dev,
            )
        elif is_oom(e, dev):
            reason = oom_reason(e, batch)
            if meta.get("memory_cap"):
                reason += f" (decode.memory_cap_mb = {memory_cap_mb} MiB)"
            rec = failed_record(OOM, reason, meta, dev)
        else:
            raise
    write_job(
        rec, rows, out_json=out_json, out_kernels=out_kernels, out_trace=out_trace, start=start
    )
    return rec
