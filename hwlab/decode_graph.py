"""Graph-mode decode: the decode step compiled (and on a GPU, replayed as a CUDA graph) over
a static KV cache, beside the eager records of :mod:`hwlab.decode`.

Why: the writeup (§5) blames the gap between a measured decode step and its napkin bound on
"framework overhead — Python, sampler, kernel launches". Graph mode removes exactly that
share (Python and per-op dispatch on a CPU; Python and kernel launches on a GPU), so eager
vs graph at the same batch measures it instead of asserting it.

Method (one job per batch, one process; records beside the eager ones, under
``decode/graph/b{batch}.json|.kernels.csv|.trace.json.gz``):
- Model: :func:`hwlab.model.load`, as the eager job. Cache: transformers' ``StaticCache``
  (``max_cache_len`` = prompt + the longest run of steps below), allocated at the first
  prefill and reset in place (``Cache.reset``: zeroed, same addresses) before every later
  prefill, so a captured graph keeps pointing at live memory.
- Step: ``model(input_ids=next_ids, cache=static_cache)`` and the greedy argmax, wrapped in
  ``torch.compile(fullgraph=True, dynamic=False)`` (a graph break retries without
  ``fullgraph`` and is recorded). CUDA: ``mode="reduce-overhead"`` (inductor + CUDA graphs,
  cudagraph trees): every call is preceded by ``torch.compiler.cudagraph_mark_step_begin()``
  and its output cloned, because a replay overwrites the previous replay's outputs; where
  inductor refuses to capture (it logs why) it runs without CUDA graphs, and the record
  says so (``cudagraph_skips``, ``cuda_graphs``). CPU:
  inductor's default mode (C++/OpenMP kernels built with the host's C++ compiler; no C++
  compiler -> ``status: skipped`` with the reason).
- Compile: a first run (reset, prefill, ``COMPILE_CALLS`` steps) compiles, warms and (CUDA)
  records the graph. The time of each of those calls is recorded (``warm_calls_s``;
  ``compile_s`` = their sum: compiling and, on a GPU, warming and capturing the CUDA graph)
  and never enters TPOT. Inductor's on-disk caches make a
  second compile of the same graph fast: the cache directory is ``TORCHINDUCTOR_CACHE_DIR``
  when set, else ``resources/torchinductor`` under the working directory (the record says
  whether the FX graph cache hit).
- Timed run: reset (before the timer starts: zeroing the cache is no part of a prefill),
  prefill (timed alone), ``new_tokens`` compiled steps between device markers, through the
  eager job's own timing code (:func:`hwlab.decode.timed_decode`: CUDA events without a
  synchronize between steps; CPU perf_counter_ns); the first ``warmup_steps`` dropped;
  TPOT median with p10 / p90.
  Recompilations after the compile run are counted (``recompiles``; should be 0).
- Profile: reset, prefill, ``profile_steps`` compiled steps under torch.profiler with the
  same annotations as the eager job (:func:`hwlab.decode.profile_window`), so
  :mod:`hwlab.inventory` reads both and both records name the attention ops and kernels.
Anything that cannot work on this host (no C++ compiler for inductor, torch.compile failing
inside dynamo/inductor) gives ``status: skipped`` with the first line of the reason; out of
memory gives ``status: oom``.

This module is light at import time (no torch): the Snakefile imports its config helpers.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("hwlab.decode_graph")

COMPILE_CALLS = 3  # compile, warm, (CUDA) record + first replay
INDUCTOR_CACHE = "resources/torchinductor"


# ---- configuration (pure, used by the Snakefile at parse time) ---------------------------


def graph_batches(decode_cfg: dict[str, Any]) -> list[int]:
    """The batches decoded in graph mode: ``decode.graph_batches`` ([] = every decode batch)
    when ``graph`` is in ``decode.mode``, in the order of ``decode.batches``."""
    if "graph" not in decode_cfg.get("mode", ["eager"]):
        return []
    chosen = decode_cfg.get("graph_batches") or decode_cfg["batches"]
    return [b for b in decode_cfg["batches"] if b in chosen]


def fit_batches(decode_cfg: dict[str, Any], model_cfg: dict[str, Any]) -> list[int]:
    """Batches the decode model's overhead term is fitted on: ``decode_model.fit_batches``,
    or ([]) the smallest and the largest decode batch when there are three or more (every
    batch between them is held out and predicted as if it had not been run), else the
    smallest alone (the other one is held out)."""
    batches = sorted(decode_cfg["batches"])
    auto = [batches[0], batches[-1]] if len(batches) >= 3 else batches[:1]
    chosen = model_cfg.get("fit_batches") or auto
    return [b for b in batches if b in chosen]


def config_errors(config: dict[str, Any]) -> list[str]:
    """Rules across keys for decode.mode / graph_batches and decode_model (one line each)."""
    d, m = config.get("decode", {}), config.get("decode_model", {})
    batches = list(d.get("batches", []))
    errors = []
    extra = [b for b in d.get("graph_batches", []) if b not in batches]
    if extra and "graph" in d.get("mode", []):
        errors.append(
            f"decode.graph_batches: {extra} not in decode.batches {batches} (graph mode is "
            "measured beside an eager record of the same batch; [] = every decode batch, or "
            "drop graph from decode.mode)."
        )
    fit = list(m.get("fit_batches", []))
    bad = [b for b in fit if b not in batches]
    if bad:
        errors.append(f"decode_model.fit_batches: {bad} not in decode.batches {batches}.")
    elif fit and len(batches) > 1 and set(batches) <= set(fit):
        errors.append(
            "decode_model.fit_batches: every decode batch is a fit batch; leave at least one "
            "out so the model is validated on a batch it was not fitted on."
        )
    return errors


def cache_len(prompt_len: int, new_tokens: int, profile_steps: int) -> int:
    """The static cache's length: the prompt plus the longest run of decode steps one
    prefill is followed by (compile run, timed run, profiled run)."""
    return prompt_len + max(new_tokens, profile_steps, COMPILE_CALLS)


# ---- the compiled step ---------------------------------------------------------------------


def _cache_kwarg(model) -> str:
    """transformers >= 5.2x calls the cache argument ``cache`` (``past_key_values`` before)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cxx_skip_reason() -> str | None:
    """Why inductor cannot build CPU kernels here (no C++ compiler), or None."""
    from torch._inductor import config as ic

    names = [c for c in ic.cpp.cxx if c] or ["g++"]
    if any(shutil.which(c) for c in names):
        return None
    return (
        f"torch.compile (inductor) needs a C++ compiler for CPU kernels; none of "
        f"{', '.join(names)} is on PATH (set CXX or install g++)"
    )


def is_compile_failure(exc: BaseException) -> bool:
    """An error raised by dynamo / inductor while compiling (not by the model itself)."""
    return type(exc).__module__.startswith(("torch._dynamo", "torch._inductor"))


class GraphStep:
    """Greedy decode over a ``StaticCache`` with the step compiled once.

    ``reset()`` zeroes the cache in place (same tensors: a captured graph stays valid);
    ``prefill(ids)`` runs the prompt eagerly (resetting first if the cache holds an earlier
    run, so a caller that times the prefill calls ``reset()`` before its timer starts);
    ``__call__(next_ids)`` runs one compiled step and returns the next ids.
    """

    def __init__(self, model, dev, max_cache_len: int, fullgraph: bool = True):
        import torch
        from transformers import StaticCache

        from hwlab.decode import prefill_kwargs

        self.torch = torch
        self.model = model
        self.dev = dev
        self.cache = StaticCache(config=model.config, max_cache_len=max_cache_len)
        self.kw = _cache_kwarg(model)
        self.prefill_kw = {self.kw: self.cache, **prefill_kwargs(model)}
        self.fullgraph = fullgraph
        self.mode = "reduce-overhead" if dev.is_cuda else "default"
        self.backend = (
            "inductor + CUDA graphs (torch.compile mode reduce-overhead)"
            if dev.is_cuda
            else "inductor (C++/OpenMP, torch.compile default mode)"
        )
        self._dirty = False  # the cache holds a run (a prefill since the last reset)
        self._build()

    def _build(self) -> None:
        torch, model, cache, kw = self.torch, self.model, self.cache, self.kw

        def step(ids):
            out = model(input_ids=ids, use_cache=True, **{kw: cache})
            return out.logits[:, -1, :].argmax(dim=-1, keepdim=True)

        self.eager_step = step
        self.compiled = torch.compile(
            step,
            mode=None if self.mode == "default" else self.mode,
            fullgraph=self.fullgraph,
            dynamic=False,
        )

    def refuse_fullgraph(self) -> None:
        """Rebuild the compiled step allowing graph breaks (after a fullgraph failure)."""
        self.torch._dynamo.reset()
        self.fullgraph = False
        self._build()

    def reset(self) -> None:
        """Zero the cache in place if it holds a run (a memset of the whole static cache)."""
        if self._dirty:
            with self.torch.inference_mode():
                self.cache.reset()
            self._dirty = False

    def prefill(self, ids):
        """The prompt through the model into the (reset) cache; the greedy next ids."""
        self.reset()  # a no-op after the caller's own reset()
        self._dirty = True
        with self.torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, **self.prefill_kw)
            # an inference tensor like every step's output: the same guards, one graph
            return out.logits[:, -1, :].argmax(dim=-1, keepdim=True)

    def __call__(self, ids):
        torch = self.torch
        with torch.inference_mode():
            if self.dev.is_cuda:
                torch.compiler.cudagraph_mark_step_begin()
                return self.compiled(ids).clone()
            return self.compiled(ids)


def _counters() -> dict[str, int]:
    from torch._dynamo.utils import counters

    return {
        "cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0)),
        "unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
        "fxgraph_cache_hit": int(counters["inductor"].get("fxgraph_cache_hit", 0)),
        "fxgraph_cache_miss": int(counters["inductor"].get("fxgraph_cache_miss", 0)),
    }


def measure_graph_batch(
    dev,
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
    """Compile, time and profile graph-mode decoding at ``batch`` (see the module docstring);
    returns (measured fields, inventory rows)."""
    from hwlab.decode import profile_window, random_prompt, timed_decode

    vocab = int(model.config.vocab_size)
    prompt = random_prompt(batch, prompt_len, vocab, seed, dev.torch_device)
    max_len = cache_len(prompt_len, new_tokens, profile_steps)
    step = GraphStep(model, dev, max_len)
    before = _counters()
    graph_break = None

    def compile_run() -> list[float]:
        times = []
        nxt = step.prefill(prompt)
        dev.synchronize()
        for _ in range(COMPILE_CALLS):
            t0 = time.perf_counter()
            nxt = step(nxt)
            dev.synchronize()
            times.append(time.perf_counter() - t0)
        return times

    try:
        warm = compile_run()
    except Exception as e:  # a graph break under fullgraph: retry allowing breaks
        from torch._dynamo.exc import Unsupported

        if not isinstance(e, Unsupported):
            raise
        graph_break = str(e).splitlines()[0]
        log.warning("fullgraph capture failed (%s); compiling with graph breaks", graph_break)
        step.refuse_fullgraph()
        warm = compile_run()
    compiled = _counters()

    step.reset()  # before the timer: zeroing the static cache is no part of the prefill
    fields = timed_decode(
        dev,
        lambda: step.prefill(prompt),
        step,
        batch=batch,
        new_tokens=new_tokens,
        warmup_steps=warmup_steps,
        nvml_interval_ms=nvml_interval_ms,
    )
    timed = _counters()

    step.reset()
    rows, attention = profile_window(
        dev, lambda: step.prefill(prompt), step, profile_steps, trace_out
    )
    fields = {
        **fields,
        **attention,
        "compile_s": sum(warm),
        "warm_calls_s": warm,
        "compile_backend": step.backend,
        "compile_mode": step.mode,
        "fullgraph": step.fullgraph,
        "graph_break": graph_break,
        "cache": "transformers StaticCache",
        "max_cache_len": max_len,
        "graphs_compiled": compiled["unique_graphs"] - before["unique_graphs"],
        "recompiles": timed["unique_graphs"] - compiled["unique_graphs"],
        "fxgraph_cache_hit": compiled["fxgraph_cache_hit"] - before["fxgraph_cache_hit"],
        "fxgraph_cache_miss": compiled["fxgraph_cache_miss"] - before["fxgraph_cache_miss"],
    }
    if dev.is_cuda:  # reduce-overhead falls back to plain inductor where capture is refused
        fields["cudagraph_skips"] = timed["cudagraph_skips"] - before["cudagraph_skips"]
        fields["cuda_graphs"] = fields["cudagraph_skips"] == 0
    return fields, rows


def run_graph_batch(
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
    nvml_interval_ms: int,
    dtype: str,
    seed: int,
    sdpa_backend: str = "flash",
) -> dict[str, Any]:
    """The graph-mode decode job: build the model, compile and measure one batch, write its
    three files (a skipped / oom record with empty inventory files when it cannot run)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(INDUCTOR_CACHE).resolve()))
    from hwlab import model as hwmodel
    from hwlab.decode import (
        decode_meta,
        failed_record,
        first_line,
        is_oom,
        no_sdpa_kernel,
        oom_reason,
        open_job,
        sdpa_context,
        write_job,
    )
    from hwlab.io import OK, OOM, SKIPPED, record

    start = time.time()
    info, man, dev = open_job(
        device_json, manifest, threads, new_tokens=new_tokens, warmup_steps=warmup_steps
    )
    import torch

    meta = {
        **decode_meta(
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
        ),
        "mode": "graph",
        "torch": torch.__version__,
        "inductor_cache_dir": os.environ["TORCHINDUCTOR_CACHE_DIR"],
    }
    rows: list[dict] = []
    reason = None if dev.is_cuda else cxx_skip_reason()
    if reason:
        rec = record(SKIPPED, reason, **meta)
    else:
        try:
            model = hwmodel.load(manifest, dtype=dtype, device=str(dev.torch_device), seed=seed)
            # compiled and timed under the eager job's SDPA backend; the static cache passes
            # SDPA a mask, which some backends (flash on CUDA) have no kernel for: then
            # torch's own choice, and the record says so
            for backend in dict.fromkeys([sdpa_backend, "auto"]):
                try:
                    with sdpa_context(backend):
                        fields, rows = measure_graph_batch(
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
                    break
                except RuntimeError as e:
                    if backend == "auto" or not no_sdpa_kernel(e):
                        raise
                    torch._dynamo.reset()
                    meta["sdpa_backend_note"] = (
                        f"decode.sdpa_backend {sdpa_backend} has no kernel for the static "
                        f"cache's masked attention here ({first_line(e)[:160]}): "
                        "graph mode ran with torch's own choice (auto)"
                    )
            meta["sdpa_backend_used"] = backend
            rec = record(OK, None, **meta, **fields)
        except (RuntimeError, MemoryError) as e:
            if is_compile_failure(e):
                reason = f"torch.compile failed on this host: {type(e).__name__}: {first_line(e)}"
                rec = failed_record(SKIPPED, reason, meta, dev)
            elif is_oom(e, dev):
                rec = failed_record(OOM, oom_reason(e, batch, " (graph mode)"), meta, dev)
            else:
                raise
            rows = []
    write_job(
        rec, rows, out_json=out_json, out_kernels=out_kernels, out_trace=out_trace, start=start
    )
    return rec
