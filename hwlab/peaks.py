"""Measured ceilings of this machine: the roofline's second pair of lines.

- Compute: square GEMMs (M = N = K from config) per dtype, timed like the warm Lab 2 loop
  (:func:`hwlab.gemm.time_op`); the best median over sizes is the measured peak, in the
  spirit of mamf-finder's "maximum achievable matmul FLOPS".
- Repeats (compute and memory alike): at least ``repeats``; with ``target_spread``, more
  until the median's relative 95% CI width is at most the target, ``budget_s`` seconds are
  spent on one kernel, or ``max_repeats`` (:meth:`hwlab.device.Device.bench`). Each entry
  records the spread reached, the count and why the repeats stopped.
- Memory: STREAM-like kernels over fp32 arrays, each 2x the last-level cache (>= 256 MiB):
  copy (c = a; 2 x size bytes) and triad (a = b + s*c; 3 x size bytes), counting bytes the
  way STREAM does (write-allocate traffic is not counted). The measured bandwidth is the
  better of the two.
A CPU's only ceilings are these; on a GPU they sit beside the catalog's spec values.
"""

from __future__ import annotations

from typing import Any

from hwlab import formulas as F
from hwlab.device import Device
from hwlab.gemm import make_op, time_op

MIN_STREAM_BYTES = 256 * 1024**2
STOP_KEYS = ("target_spread", "budget_s", "max_repeats")  # Device.bench's stopping rule


def stream_bytes(stream_mb: int, llc_bytes: int | None) -> int:
    if stream_mb:
        return stream_mb * 1024**2
    return max(MIN_STREAM_BYTES, 2 * (llc_bytes or 0))


def _spread(t) -> dict[str, Any]:
    st = t.stats()
    keys = ("rel_spread", "rel_ci", "n_repeats", "target_reached", "stopped")
    return {k: st[k] for k in keys}


def measure_compute(
    dev: Device,
    dtype: str,
    sizes: list[int],
    *,
    warmup: int,
    repeats: int,
    iters: int,
    seed: int = 0,
    **stop: float,
) -> dict[str, Any]:
    """The best TFLOP/s of square GEMMs of ``sizes`` in ``dtype`` (the module docstring);
    ``stop`` (target_spread, budget_s, max_repeats) goes to :meth:`Device.bench`."""
    reason = dev.dtype_skip_reason(dtype)
    if reason:
        return {"status": "skipped", "reason": reason}
    by_size = {}
    for n in sizes:
        try:
            fn = make_op(dev, dtype, n, n, n, seed)
            t = time_op(
                dev,
                fn,
                l2="warm",
                warmup=warmup,
                repeats=repeats,
                iters=iters,
                **stop,
            )
        except dev.oom_errors as e:
            dev.empty_cache()
            by_size[n] = {"status": "oom", "reason": str(e).splitlines()[0]}
            continue
        except RuntimeError as e:
            by_size[n] = {"status": "skipped", "reason": str(e).splitlines()[0]}
            continue
        s = t.median_s
        flops = F.gemm_flops(n, n, n)
        by_size[n] = {
            "status": "ok",
            "time_us": s * 1e6,
            "tflops": F.tflops(flops, s),
            **_spread(t),
            # the spread travels with the number: the slowest and fastest repeat
            "tflops_min": F.tflops(flops, max(t.device_s)),
            "tflops_max": F.tflops(flops, min(t.device_s)),
        }
        del fn
    ok = {n: r for n, r in by_size.items() if r["status"] == "ok"}
    if not ok:
        return {"status": "skipped", "reason": "no size ran", "sizes": by_size}
    best = max(ok, key=lambda n: ok[n]["tflops"])
    return {
        "status": "ok",
        "reason": None,
        "tflops": ok[best]["tflops"],
        "tflops_min": ok[best]["tflops_min"],
        "tflops_max": ok[best]["tflops_max"],
        "rel_spread": ok[best]["rel_spread"],
        "n_repeats": ok[best]["n_repeats"],
        "best_size": best,
        "sizes": by_size,
    }


def measure_memory(
    dev: Device,
    nbytes: int,
    *,
    warmup: int,
    repeats: int,
    iters: int,
    **stop: float,
) -> dict[str, Any]:
    """STREAM-like copy and triad GB/s over ``nbytes`` arrays (the module docstring);
    ``stop`` as in :func:`measure_compute`."""
    torch = dev.torch
    n = nbytes // 4
    a = torch.ones(n, dtype=torch.float32, device=dev.torch_device)
    b = torch.full((n,), 2.0, dtype=torch.float32, device=dev.torch_device)
    c = torch.zeros(n, dtype=torch.float32, device=dev.torch_device)
    kernels = {
        "copy": (lambda: c.copy_(a), 2 * n * 4),
        "triad": (lambda: torch.add(b, c, alpha=3.0, out=a), 3 * n * 4),
    }
    out: dict[str, Any] = {"array_bytes": n * 4}
    for name, (fn, moved) in kernels.items():
        t = time_op(
            dev,
            fn,
            l2="warm",
            warmup=warmup,
            repeats=repeats,
            iters=iters,
            **stop,
        )
        out[f"{name}_gbps"] = F.gbps(moved, t.median_s)
        out.update({f"{name}_{k}": v for k, v in _spread(t).items()})
        out[f"{name}_gbps_min"] = F.gbps(moved, max(t.device_s))
        out[f"{name}_gbps_max"] = F.gbps(moved, min(t.device_s))
    best = "copy" if out["copy_gbps"] >= out["triad_gbps"] else "triad"
    out["mem_bw_gbps"] = out[f"{best}_gbps"]
    out["mem_bw_kernel"] = best
    out["mem_bw_gbps_min"] = out[f"{best}_gbps_min"]
    out["mem_bw_gbps_max"] = out[f"{best}_gbps_max"]
    return out


def measure(
    dev: Device,
    *,
    dtypes: list[str],
    gemm_sizes: list[int],
    stream_mb: int,
    llc_bytes: int | None,
    warmup: int,
    repeats: int,
    iters: int,
    seed: int = 0,
    **stop: float,
) -> dict[str, Any]:
    """All measured ceilings of ``dev`` as one JSON-able dict; ``stop`` (target_spread,
    budget_s, max_repeats) as in :func:`measure_compute`."""
    compute = {
        dt: measure_compute(
            dev,
            dt,
            gemm_sizes,
            warmup=warmup,
            repeats=repeats,
            iters=iters,
            seed=seed,
            **stop,
        )
        for dt in dtypes
    }
    memory = measure_memory(
        dev,
        stream_bytes(stream_mb, llc_bytes),
        warmup=warmup,
        repeats=repeats,
        iters=iters,
        **stop,
    )
    return {
        "threads": dev.threads if not dev.is_cuda else None,
        "method": {
            "gemm_sizes": gemm_sizes,
            "warmup": warmup,
            "repeats": repeats,
            "iters": iters,
            "timer": dev.timer_name,
            **{k: stop.get(k) or None for k in STOP_KEYS},
        },
        "tflops": {dt: r.get("tflops") for dt, r in compute.items()},
        # [slowest, fastest] repeat of the best size: the peak's own spread
        "tflops_range": {
            dt: [r.get("tflops_min"), r.get("tflops_max")] for dt, r in compute.items()
        },
        "mem_bw_gbps": memory["mem_bw_gbps"],
        "mem_bw_gbps_range": [memory["mem_bw_gbps_min"], memory["mem_bw_gbps_max"]],
        "compute": compute,
        "memory": memory,
    }


def _range(value: float | None, rng: Any) -> tuple[float | None, float | None]:
    """(lo, hi) of a measured value: its recorded [slowest, fastest] repeat, else the value
    itself (no spread recorded, e.g. a reference run or an older peaks.json)."""
    if value is None:
        return (None, None)
    try:
        lo, hi = (float(x) for x in rng)
    except (TypeError, ValueError):
        return (value, value)
    if not (lo == lo and hi == hi):  # NaN
        return (value, value)
    return (min(lo, value), max(hi, value))


def ceilings(
    peaks: dict[str, Any],
    spec: dict[str, Any] | None,
    dtype: str,
    sweep_best_tflops: float | None = None,
    sweep_best_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Spec and measured ceilings for ``dtype``: what the % columns and the figure use.

    The measured compute ceiling is the best TFLOP/s this run achieved in ``dtype``: the
    peaks stage's square GEMMs or, if one did better, a sweep point (``sweep_best_tflops``;
    then the ceiling is not independent of the sweep and ``peak_independent`` is False).
    The % of peak columns use the spec when the catalog knows the device (as the writeup
    does) and the measured value otherwise; ``basis`` says which. ``*_range`` are the
    (lo, hi) spreads of the ceilings actually used (a spec value has none).
    """
    from hwlab.catalog import peak_tflops

    spec_dense = peak_tflops(spec, dtype)
    spec_sparse = peak_tflops(spec, dtype, sparse=True)
    spec_bw = spec.get("mem_bw_gbps") if spec else None
    measured = peaks.get("measured") or {}
    meas_tf = measured.get("tflops", {}).get(dtype)
    meas_tf_range = _range(meas_tf, (measured.get("tflops_range") or {}).get(dtype))
    meas_src = "peaks stage (square GEMM)"
    if sweep_best_tflops is not None and (meas_tf is None or sweep_best_tflops > meas_tf):
        meas_tf, meas_src = sweep_best_tflops, "best sweep point"
        meas_tf_range = _range(meas_tf, sweep_best_range)
    meas_bw = measured.get("mem_bw_gbps")
    meas_bw_range = _range(meas_bw, measured.get("mem_bw_gbps_range"))
    use_spec = spec_dense is not None and spec_bw is not None
    return {
        "spec_tflops": spec_dense,
        "spec_sparse_tflops": spec_sparse,
        "spec_bw_gbps": spec_bw,
        "measured_tflops": meas_tf,
        "measured_tflops_source": meas_src if meas_tf is not None else None,
        "measured_tflops_range": meas_tf_range,
        "measured_bw_gbps": meas_bw,
        "measured_bw_range": meas_bw_range,
        "peak_tflops": spec_dense if use_spec else meas_tf,
        "bw_gbps": spec_bw if use_spec else meas_bw,
        "peak_tflops_range": (spec_dense, spec_dense) if use_spec else meas_tf_range,
        "bw_range": (spec_bw, spec_bw) if use_spec else meas_bw_range,
        "basis": "spec" if use_spec else "measured",
        # % of peak against the sweep's own best point is 100% by construction
        "peak_independent": use_spec or meas_src != "best sweep point",
    }


PEAK_COLUMNS = ["ceiling", "dtype", "size", "status", "value", "unit", "lo", "hi",
                "rel_spread", "n_repeats", "used", "reason"]  # fmt: skip


def peaks_table(peaks: dict[str, Any]):
    """The measured ceilings with their spread: one row per dtype x GEMM size and per
    STREAM-like kernel. lo / hi are the value at the slowest / fastest repeat; ``used``
    marks the value the roofline takes (best size per dtype, better of copy / triad)."""
    import pandas as pd

    m = peaks.get("measured") or {}
    rows = []
    for dt, c in (m.get("compute") or {}).items():
        sizes = c.get("sizes") or {}
        if not sizes:
            rows.append({"ceiling": "compute (square GEMM)", "dtype": dt,
                         "status": c.get("status"), "reason": c.get("reason")})  # fmt: skip
        for n, r in sizes.items():
            rows.append(
                {
                    "ceiling": "compute (square GEMM)",
                    "dtype": dt,
                    "size": int(n),
                    "status": r.get("status"),
                    "value": r.get("tflops"),
                    "unit": "TFLOP/s",
                    "lo": r.get("tflops_min"),
                    "hi": r.get("tflops_max"),
                    "rel_spread": r.get("rel_spread"),
                    "n_repeats": r.get("n_repeats"),
                    "used": str(n) == str(c.get("best_size")),
                    "reason": r.get("reason"),
                }
            )
    mem = m.get("memory") or {}
    for k in ("copy", "triad"):
        if f"{k}_gbps" not in mem:
            continue
        rows.append(
            {
                "ceiling": f"memory ({k}, STREAM-like)",
                "dtype": "fp32",
                "size": mem.get("array_bytes"),
                "status": "ok",
                "value": mem.get(f"{k}_gbps"),
                "unit": "GB/s",
                "lo": mem.get(f"{k}_gbps_min"),
                "hi": mem.get(f"{k}_gbps_max"),
                "rel_spread": mem.get(f"{k}_rel_spread"),
                "n_repeats": mem.get(f"{k}_n_repeats"),
                "used": mem.get("mem_bw_kernel", k) == k
                and mem.get(f"{k}_gbps") == mem.get("mem_bw_gbps"),
            }
        )
    return pd.DataFrame(rows, columns=PEAK_COLUMNS)


def write_peaks_table(peaks_json: str, csv: str, md: str) -> None:
    """tables/peaks.{csv,md}: the measured ceilings with their spread and repeat count."""
    from hwlab.io import read_json, write_table

    peaks = read_json(peaks_json)
    df = peaks_table(peaks)
    view = df.copy()
    view["spread_pct"] = 100 * pd_float(view["rel_spread"])
    meth = (peaks.get("measured") or {}).get("method") or {}
    write_table(df, csv)
    write_table(
        view,
        None,
        md,
        md_columns={
            "ceiling": "ceiling",
            "dtype": "dtype",
            "size": "size (N or bytes)",
            "value": "median",
            "unit": "unit",
            "lo": "slowest repeat",
            "hi": "fastest repeat",
            "spread_pct": "spread (%)",
            "n_repeats": "n",
            "used": "used",
            "status": "status",
        },
        title="Measured ceilings (peaks stage)",
        notes=[
            f"{meth.get('warmup')} warmup calls, {meth.get('repeats')} repeats × "
            f"{meth.get('iters')} iterations, timer {meth.get('timer')}; spread = (max − min) / "
            "median of the repeats; 'used' marks the ceiling the roofline's % columns take "
            "when the device has no catalog entry (best size per dtype; better of copy / triad).",
        ],
    )


def pd_float(series):
    import pandas as pd

    return pd.to_numeric(series, errors="coerce")


def write_peaks_json(
    out: str,
    *,
    device_json: str,
    dtypes: list[str],
    gemm_sizes: list[int],
    stream_mb: int,
    warmup: int,
    repeats: int,
    iters: int,
    threads: int,
    seed: int,
    target_spread: float = 0.0,
    budget_s: float = 0.0,
    max_repeats: int = 0,
) -> None:
    import time

    from hwlab.io import read_json, with_window, write_json

    start = time.time()
    info = read_json(device_json)
    dev = Device.from_info(info, threads)
    measured = measure(
        dev,
        dtypes=dtypes,
        gemm_sizes=gemm_sizes,
        stream_mb=stream_mb,
        llc_bytes=info.get("llc_bytes"),
        warmup=warmup,
        repeats=repeats,
        iters=iters,
        seed=seed,
        target_spread=target_spread,
        budget_s=budget_s,
        max_repeats=max_repeats,
    )
    rec = {
        "device": {"kind": info["kind"], "name": info["name"]},
        "measured": measured,
    }
    write_json(out, with_window(rec, start))
