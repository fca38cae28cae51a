"""The operations of one decode step, measured in isolation: the decode model's inputs
(:mod:`hwlab.decode_model`).

Method (one job for the model's shapes x decode batches):
- Linears: every projection of the architecture with its real N x K from the model config
  (q, k, v, o: ``num_attention_heads`` / ``num_key_value_heads`` x ``head_dim`` against
  ``hidden_size``; gate, up, down: ``intermediate_size``; lm_head: ``vocab_size``), each
  distinct (N, K) timed once per M in the batches (M = B: a decode step multiplies one row
  per sequence) through the GEMM stage's own op and timer, :func:`hwlab.gemm.make_op`
  (``F.linear`` in the model dtype, no bias: Qwen2's q/k/v bias add is an elementwise op)
  and :meth:`hwlab.device.Device.bench` in ``each`` mode (on a GPU, device time of the
  kernel alone: the untimed flush before each call gives the host its head start).
- Cache state: in a decode step every weight is used once, and between two uses of one
  weight all the other weights stream through the caches. So before every timed call,
  untimed, a buffer as large as the model's weights (capped at max(2 x last-level cache,
  256 MiB): enough to evict everything) is *read* — a read, not a write, because a
  rewritten buffer leaves dirty lines whose write-backs the next call would pay for
  (measured on the CPU default: a write flush made the M = 1 lm_head GEMV 1.8x slower than
  inside the real decode step; the read flush matches it within a few percent).
- Attention: SDPA at the decode shape through transformers' own SDPA entry
  (``sdpa_attention_forward``, so GQA is handled as in the model: ``enable_gqa`` or the
  single-query head packing): query [B, H, 1, D] against K/V [B, KVH, L, D]. Eager mode:
  L = the mean context length of the timed steps, no mask (what ``DynamicCache`` decoding
  passes), timed *without* the read before each call: the cache's ``torch.cat`` has just
  rewritten all of K/V, so SDPA finds them in cache. Graph mode: L = the static cache's
  length with a boolean [B, 1, 1, L] mask (what ``StaticCache`` decoding passes), timed
  after the read like the linears: the static cache writes one position per step and the
  rest of K/V was last touched a step ago.
- Repeats: ``warmup`` calls, then repeats of ``iters`` calls, interleaved: each round
  times one repeat of every point in turn (:func:`interleaved`), so a disturbance of the
  machine spreads over many points' repeats instead of spoiling a few points; a point stops
  once its median's 95% CI is within ``target_spread`` (or at ``max_repeats``; all stop when
  ``budget_s`` per point is spent). Every point records its median, CI, spread and samples
  (:meth:`hwlab.device.Samples.stats`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("hwlab.decode_ops")

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")
MIN_FLUSH_BYTES = 256 * 1024**2


class ArchError(ValueError):
    """The architecture lacks a field the linear shapes need."""


def linear_shapes(arch: dict[str, Any]) -> list[dict[str, Any]]:
    """Every linear of one decode step: name, N (outputs), K (inputs), calls per step.

    Llama / Qwen2 / Mistral-style decoder: per layer q, k, v, o, gate, up, down; one
    lm_head. ``head_dim`` defaults to hidden_size / num_attention_heads."""
    need = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size")
    missing = [k for k in need if k not in arch]
    if missing or "vocab_size" not in arch:
        raise ArchError(
            f"architecture {arch.get('model_type', '?')!r} lacks {missing or ['vocab_size']}: "
            "the decode model knows Llama/Qwen2-style decoders (q/k/v/o, gate/up/down, lm_head)"
        )
    h = int(arch["hidden_size"])
    geo = attention_shape(arch)
    heads, kv, d, layers = geo["heads"], geo["kv_heads"], geo["head_dim"], geo["layers"]
    inter = int(arch["intermediate_size"])
    shapes = {
        "q_proj": (heads * d, h),
        "k_proj": (kv * d, h),
        "v_proj": (kv * d, h),
        "o_proj": (h, heads * d),
        "gate_proj": (inter, h),
        "up_proj": (inter, h),
        "down_proj": (h, inter),
        "lm_head": (int(arch["vocab_size"]), h),
    }
    return [
        {
            "name": n,
            "N": shapes[n][0],
            "K": shapes[n][1],
            "per_step": 1 if n == "lm_head" else layers,
        }
        for n in LINEARS
    ]


def attention_shape(arch: dict[str, Any]) -> dict[str, int]:
    """The attention geometry of a decoder config (the one reading of it: the linears' shapes
    and :func:`hwlab.decode.model_geometry` use it too): query heads, K/V heads (default:
    as many as query heads), ``head_dim`` (default: hidden_size / heads) and layers."""
    heads = int(arch["num_attention_heads"])
    return {
        "heads": heads,
        "kv_heads": int(arch.get("num_key_value_heads") or heads),
        "head_dim": int(arch.get("head_dim") or int(arch["hidden_size"]) // heads),
        "layers": int(arch["num_hidden_layers"]),
    }


def eager_context_len(prompt_len: int, warmup_steps: int, new_tokens: int) -> int:
    """Mean K/V length attended by the timed eager steps (step i sees prompt + i + 1)."""
    kept = range(warmup_steps, new_tokens)
    return round(sum(prompt_len + i + 1 for i in kept) / len(kept))


def flush_bytes(weight_bytes: float, llc_bytes: int | None) -> int:
    """Bytes read between two timed calls: the model's weights, at most what evicts any
    cache (2 x the last-level cache, at least 256 MiB)."""
    cap = max(MIN_FLUSH_BYTES, 2 * (llc_bytes or 0))
    return int(min(max(weight_bytes, 1), cap))


def read_flusher(dev, nbytes: int):
    """A callable that reads ``nbytes`` (a float32 buffer summed): evicts without dirtying."""
    torch = dev.torch
    buf = torch.ones(max(1, nbytes // 4), dtype=torch.float32, device=dev.torch_device)
    return lambda: buf.sum()


def _sdpa_op(dev, dtype: str, batch: int, shape: dict[str, int], kv_len: int, masked: bool):
    """The zero-argument SDPA call at the decode shape (transformers' entry point)."""
    from hwlab.dtypes import torch_dtype

    torch = dev.torch
    tdt = torch_dtype(dtype)
    h, kvh, d = shape["heads"], shape["kv_heads"], shape["head_dim"]
    gen = torch.Generator(device="cpu").manual_seed(0)
    q = torch.randn(batch, h, 1, d, generator=gen).to(dev.torch_device, tdt)
    k = torch.randn(batch, kvh, kv_len, d, generator=gen).to(dev.torch_device, tdt)
    v = torch.randn(batch, kvh, kv_len, d, generator=gen).to(dev.torch_device, tdt)
    mask = (
        torch.ones(batch, 1, 1, kv_len, dtype=torch.bool, device=dev.torch_device)
        if masked
        else None
    )
    try:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        class _Attn(torch.nn.Module):
            num_key_value_groups = h // kvh
            is_causal = True

        mod = _Attn()

        def call():
            return sdpa_attention_forward(mod, q, k, v, mask, scaling=d**-0.5)[0]

        call()
        return call, "transformers sdpa_attention_forward"
    except ImportError:
        rep = h // kvh
        kk = k.repeat_interleave(rep, dim=1)
        vv = v.repeat_interleave(rep, dim=1)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        return (lambda: sdpa(q, kk, vv, attn_mask=mask)), "torch sdpa (K/V repeated)"


def _merge(a, b):
    """Two :class:`hwlab.device.Samples` of one point as one (samples appended)."""
    if a is None:
        return b
    a.device_s += b.device_s
    a.wall_s += b.wall_s
    a.dispatch_s += b.dispatch_s
    return a


def interleaved(dev, points: dict[Any, tuple], p: dict[str, Any]) -> dict[Any, Any]:
    """Benchmark several points in rounds: each round times one repeat (``iters`` calls,
    :meth:`Device.bench` ``each`` mode with the point's flush) of every point still open,
    in turn. A disturbance of the machine (another process on the cores) then costs one or
    two repeats of many points, which their medians shrug off, instead of every repeat of a
    few. A point closes once it has ``repeats`` repeats and its median's 95% CI is within
    ``target_spread`` (``target``), or at ``max_repeats``; all stop when the budget
    (``budget_s`` per point) is spent (``budget``). ``points``: key -> (fn, flush or None).
    Returns key -> Samples (``stopped`` set per point)."""
    from hwlab.formulas import rel_ci

    for fn, _ in points.values():
        for _ in range(p["warmup"]):
            fn()
    dev.synchronize()
    got: dict[Any, Any] = dict.fromkeys(points)
    open_ = list(points)
    t0, budget = time.perf_counter(), p["budget_s"] * len(points)
    while open_:
        for key in list(open_):
            fn, flush = points[key]
            s = dev.bench(fn, iters=p["iters"], mode="each", flush=flush, min_repeats=1)
            got[key] = _merge(got[key], s)
            n = got[key].n
            if n < p["repeats"]:
                continue
            if not p["target_spread"]:
                stop = "fixed"
            elif rel_ci(got[key].device_s) <= p["target_spread"]:
                stop = "target"
            elif p["max_repeats"] and n >= p["max_repeats"]:
                stop = "max_repeats"
            else:
                continue
            got[key].stopped = stop
            open_.remove(key)
        spent = budget and time.perf_counter() - t0 >= budget
        if open_ and spent and all(got[k].n >= p["repeats"] for k in open_):
            for k in open_:
                got[k].stopped = "budget"
            break
    for s in got.values():
        s.target_spread, s.budget_s = p["target_spread"], p["budget_s"]
    return got


def _op_bytes(dtype: str, m: int, n: int, k: int) -> float:
    """Bytes of one GEMM point's operands (A, B and C, :func:`hwlab.formulas.gemm_bytes`)."""
    from hwlab.dtypes import gemm_dtype
    from hwlab.formulas import gemm_bytes

    dt = gemm_dtype(dtype)
    return gemm_bytes(m, n, k, dt.in_bytes, dt.in_bytes, dt.out_bytes)


INTERLEAVE_BYTES = 2 * 1024**3  # all points' operands alive at once up to this; else per shape


def measure_ops(
    dev,
    arch: dict[str, Any],
    *,
    dtype: str,
    weight_bytes: float,
    llc_bytes: int | None,
    gemm_M: list[int],
    attention: list[dict[str, Any]],
    warmup: int,
    repeats: int,
    iters: int,
    target_spread: float,
    budget_s: float,
    max_repeats: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Time every distinct linear shape at every M, and SDPA at every ``attention`` point
    ({mode, batch, kv_len, masked, cold}); returns the ops record's fields."""
    from hwlab.gemm import make_op

    p = dict(
        warmup=warmup,
        repeats=repeats,
        iters=iters,
        target_spread=target_spread,
        budget_s=budget_s,
        max_repeats=max_repeats,
    )
    linears = linear_shapes(arch)
    nflush = flush_bytes(weight_bytes, llc_bytes)
    flush = read_flusher(dev, nflush)
    shapes = list(dict.fromkeys((s["N"], s["K"]) for s in linears))
    ms = sorted(set(gemm_M))
    total = sum(_op_bytes(dtype, m, n, k) for n, k in shapes for m in ms)
    groups = [shapes] if total <= INTERLEAVE_BYTES else [[nk] for nk in shapes]
    gemm = []
    for group in groups:
        points, results = {}, {}
        for n, k in group:
            for m in ms:
                try:
                    points[(n, k, m)] = (make_op(dev, dtype, m, n, k, seed), flush)
                except dev.oom_errors as e:
                    dev.empty_cache()
                    results[(n, k, m)] = {"status": "oom", "reason": str(e).splitlines()[0]}
        try:
            for key, smp in interleaved(dev, points, p).items():
                results[key] = {"status": "ok", **smp.stats()}
        except dev.oom_errors as e:
            dev.empty_cache()
            for key in points:
                results[key] = {"status": "oom", "reason": str(e).splitlines()[0]}
        for n, k, m in sorted(results, key=lambda x: (group.index(x[:2]), x[2])):
            gemm.append({"N": n, "K": k, "M": m, **results[(n, k, m)]})
            log.info("linear N=%d K=%d M=%d: %s", n, k, m, gemm[-1].get("time_us"))
        del points
    shape = attention_shape(arch)
    points, entries = {}, {}
    for i, a in enumerate(attention):
        fn, entries[i] = _sdpa_op(dev, dtype, a["batch"], shape, a["kv_len"], a["masked"])
        points[i] = (fn, flush if a.get("cold", True) else None)
    sdpa = []
    for i, smp in sorted(interleaved(dev, points, p).items()):
        sdpa.append({**attention[i], **shape, "status": "ok", "entry": entries[i], **smp.stats()})
        log.info("sdpa %s: %s", attention[i], sdpa[-1].get("time_us"))
    return {
        "linears": linears,
        "gemm": gemm,
        "sdpa": sdpa,
        "flush_bytes": nflush,
        "flush": "read of a float32 buffer (sum) before every timed call",
        "method": {
            **p,
            "timing_mode": "each, interleaved: one repeat of every point per round",
            "timer": dev.timer_name,
            "op": "F.linear",
        },
    }


def write_ops_json(
    out: str,
    *,
    device_json: str,
    manifest: str,
    threads: int,
    dtype: str,
    gemm_M: list[int],
    attention: list[dict[str, Any]],
    seed: int,
    **bench: Any,
) -> dict[str, Any]:
    """The decode_ops job: measure on the run's device, write ``decode_model/ops.json``."""
    from hwlab import formulas as F
    from hwlab.device import Device
    from hwlab.dtypes import MODEL_DTYPES
    from hwlab.io import OK, SKIPPED, read_json, record, with_window, write_json

    start = time.time()
    info = read_json(device_json)
    man = read_json(manifest)
    dev = Device.from_info(info, threads)
    meta = {
        "model": man["name"],
        "dtype": dtype,
        "device_kind": dev.kind,
        "device_name": info.get("name"),
        "threads": dev.threads if not dev.is_cuda else None,
        "weight_bytes": F.weight_bytes(man["param_count"], MODEL_DTYPES[dtype]),
    }
    try:
        fields = measure_ops(
            dev,
            man["arch"],
            dtype=dtype,
            weight_bytes=meta["weight_bytes"],
            llc_bytes=info.get("llc_bytes"),
            gemm_M=gemm_M,
            attention=attention,
            seed=seed,
            **bench,
        )
        rec = record(OK, None, **meta, **fields)
    except ArchError as e:
        rec = record(SKIPPED, str(e), **meta)
    write_json(out, with_window(rec, start))
    return rec
