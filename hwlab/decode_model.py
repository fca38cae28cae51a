"""Where decode time goes: a calibrated model of one decode step at batch B, from this run's
own measurements, checked against the measured TPOT (no torch here: it only reads).

Terms, per decode step at batch B (milliseconds):
- **matmuls**: for every linear of the architecture (q, k, v, o, gate, up, down per layer;
  lm_head), the isolated GEMM time at M = B with its real N x K (:mod:`hwlab.decode_ops`),
  times its calls per step. Split for reading: *weights* = the least matmul time measured
  at any M <= B (streaming every weight once; its floor is the napkin's weight bytes over
  the bandwidth) and *compute* = the rest (what more rows cost on the same weights).
- **attention**: the isolated SDPA time at the decode shape x layers (eager: the mean
  context of the timed steps; graph mode: the static cache's length, masked).
- **overhead** (everything else: Python, op dispatch or kernel launches, elementwise ops,
  cache updates, sampling): alpha x ops per step + beta x B, alpha (µs per op: a fixed
  per-step cost from the profiled op/kernel count) and beta (µs per sequence) fitted by
  non-negative least squares on the *fit* batches' residuals (measured TPOT - predicted
  matmuls - predicted attention); every other batch is *held out*. With one fit batch,
  beta = 0. Every batch takes the op count of the nearest fit batch (the op count is a
  property of the graph, not of B), so a held-out batch is predicted as an unrun one.
- **in the trace** (the check, per decode batch): from ``decode/b<B>.trace.json.gz``
  (``kernels.csv`` where the trace has no steps), the median over the profiled steps of
  the time in matmul classes (gemv/gemm/tc_gemm) and the attention class (self times of
  ops on a CPU, kernel durations on a GPU; classes from the kernel class rules), with
  trace overhead = measured TPOT - both (the timed TPOT: the profiler's own cost per
  recorded op is not in it); the trace's gaps (time in the profiled step outside every op:
  Python on a CPU, GPU idle between kernels on a GPU), op count and the rest of the op time
  are reported beside it.
- **error** = (predicted - measured median TPOT) / measured; its interval uses the median's
  95% CI (order statistics over the timed steps). Where a batch misses the goal, the table
  names the term whose prediction is furthest from the trace (``worst_term``): the term
  errors add up to the total error exactly.
- **bound**: the largest of weights, compute, attention, overhead at that batch.

Graph-mode records (``decode/graph/b<B>``) get the same model, fitted on their own traces.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from hwlab import formulas as F
from hwlab.io import fmt_sig

MATMUL_CLASSES = ("gemv", "gemm", "tc_gemm")
TERMS = ("weights", "compute", "attention", "overhead")
TERM_COLORS = {
    "weights": "tab:blue",
    "compute": "tab:green",
    "attention": "tab:red",
    "overhead": "tab:gray",
}
COLUMNS = [
    "mode",
    "batch",
    "role",
    "status",
    "reason",
    "tpot_ms",
    "tpot_ci_lo_ms",
    "tpot_ci_hi_ms",
    "tpot_p10_ms",
    "tpot_p90_ms",
    "predicted_ms",
    "error_pct",
    "error_lo_pct",
    "error_hi_pct",
    "goal_pct",
    "within_goal",
    "matmul_ms",
    "weights_ms",
    "weights_gbps",
    "compute_ms",
    "attention_ms",
    "overhead_ms",
    "bound",
    "napkin_ms",
    "napkin_bw_gbps",
    "trace_matmul_ms",
    "trace_attention_ms",
    "trace_overhead_ms",
    "trace_other_ops_ms",
    "trace_gaps_ms",
    "profiled_step_ms",
    "ops_per_step",
    "err_matmul_ms",
    "err_attention_ms",
    "err_overhead_ms",
    "worst_term",
    "combine",
    "host_ms",
    "other_ms",
    "alpha_us_per_op",
    "beta_us_per_seq",
    "other_a_us",
    "other_b_us_per_seq",
]


# ---- isolated measurements ---------------------------------------------------------------


def gemm_times(ops: dict[str, Any]) -> dict[tuple[int, int, int], float]:
    """(N, K, M) -> median µs of the ok GEMM points of ``decode_model/ops.json``."""
    return {
        (int(g["N"]), int(g["K"]), int(g["M"])): float(g["time_us"])
        for g in ops.get("gemm", [])
        if g.get("status") == "ok"
    }


def sdpa_times(ops: dict[str, Any]) -> dict[tuple[str, int], float]:
    """(mode, batch) -> median µs of one SDPA call at that decode shape."""
    return {
        (s["mode"], int(s["batch"])): float(s["time_us"])
        for s in ops.get("sdpa", [])
        if s.get("status") == "ok"
    }


def matmul_ms(linears: list[dict[str, Any]], gemm: dict, batch: int) -> float | None:
    """Sum over the step's linears of calls x GEMM time at M = batch (ms); None if a shape
    was not measured at that M."""
    total = 0.0
    for s in linears:
        t = gemm.get((int(s["N"]), int(s["K"]), batch))
        if t is None:
            return None
        total += s["per_step"] * t
    return total / 1e3


def weights_compute(
    linears: list[dict[str, Any]], gemm: dict, batch: int
) -> tuple[float | None, float | None]:
    """(weights, compute) ms of the matmul term at ``batch``: weights = the least matmul time
    over the measured M <= batch (every weight streamed once), compute = the rest."""
    mm = matmul_ms(linears, gemm, batch)
    if mm is None:
        return None, None
    ms = sorted({m for (_, _, m) in gemm if m <= batch})
    cands = [v for v in (matmul_ms(linears, gemm, m) for m in ms) if v is not None]
    w = min(cands + [mm])
    return w, mm - w


def linear_bytes(linears: list[dict[str, Any]], dtype: str) -> float:
    """Bytes of every linear's weight read once per step (a tied lm_head counts once)."""
    from hwlab.dtypes import MODEL_DTYPES

    return float(sum(s["per_step"] * s["N"] * s["K"] for s in linears) * MODEL_DTYPES[dtype])


def attention_ms(sdpa: dict, mode: str, batch: int, layers: int) -> float | None:
    t = sdpa.get((mode, batch))
    return None if t is None else layers * t / 1e3


# ---- the trace ---------------------------------------------------------------------------


def trace_step_terms(trace: dict[str, Any], rules) -> dict[str, Any]:
    """Per profiled decode step (each ``hwlab::decode_step`` annotation) the time in matmul
    and attention classes, in all ops / kernels, their count and the step's duration; the
    median of each over the steps (ms), so one disturbed step does not move them.

    The steps are :func:`hwlab.inventory.step_profile`'s (the one trace reader of this
    package: CPU ops by start time inside the step with their self times and a matmul's
    rows from its input shapes; kernels and copies by their launch inside the step, device
    durations). Duration: a CPU trace's annotation; a CUDA trace's GPU-side annotation,
    else the kernels' span. gaps = duration - the time in ops / kernels (CPU: Python
    between ops; GPU: idle). Steps with no op are left out."""
    from hwlab.inventory import step_profile, trace_source

    cuda = trace_source(trace) == "cuda"
    steps = []
    for s in step_profile(trace, rules):
        if not s["ops"]:
            continue
        if cuda:
            dur = s["device_us"] if s["device_us"] is not None else s["span_us"]
        else:
            dur = s["wall_us"]
        matmul = sum(s["by_class"][c] for c in MATMUL_CLASSES)
        attention = s["by_class"]["attention"]
        steps.append(
            {
                "matmul": matmul,
                "attention": attention,
                "other": s["busy_us"] - matmul - attention,
                "ops": s["ops"],
                "dur": dur,
                "gaps": dur - s["busy_us"],
            }
        )
    if not steps:
        return {}

    def med(key: str) -> float:
        return F.median([x[key] for x in steps]) / 1e3

    return {
        "steps": len(steps),
        "trace_matmul_ms": med("matmul"),
        "trace_attention_ms": med("attention"),
        "trace_other_ops_ms": med("other"),
        "ops_per_step": F.median([x["ops"] for x in steps]),
        "profiled_step_ms": med("dur"),
        "trace_gaps_ms": max(0.0, med("gaps")),
    }


def kernels_terms(rows: Iterable[dict[str, Any]], steps: int) -> dict[str, Any]:
    """The same split from a classified ``kernels.csv`` (means over ``steps`` profiled
    steps; no duration, no gaps): for runs whose trace is not there."""
    dec = [r for r in rows if r.get("phase") == "decode"]
    if not dec or not steps:
        return {}
    per = 1e3 * steps

    def t(classes: Iterable[str]) -> float:
        cs = set(classes)
        return sum(float(r["time_us"]) for r in dec if r.get("class") in cs) / per

    total = sum(float(r["time_us"]) for r in dec) / per
    mm, att = t(MATMUL_CLASSES), t(["attention"])
    return {
        "steps": steps,
        "trace_matmul_ms": mm,
        "trace_attention_ms": att,
        "trace_other_ops_ms": total - mm - att,
        "ops_per_step": sum(int(r["calls"]) for r in dec) / steps,
        "profiled_step_ms": None,
        "trace_gaps_ms": None,
    }


# ---- the overhead fit --------------------------------------------------------------------


def nnls2(points: list[tuple[float, float, float]]) -> tuple[float, float]:
    """(c1, c2) >= 0 minimising sum (c1 x1 + c2 x2 - y)^2 over ``points`` = [(x1, x2, y)]:
    the unconstrained least squares, else the better of the two one-coefficient fits. A
    singular system (x2 proportional to x1, e.g. a single point) fits c1 alone."""
    if not points:
        raise ValueError("nothing to fit")

    def one(i: int) -> tuple[float, float]:
        sxx = sum(p[i] * p[i] for p in points)
        c = max(0.0, sum(p[i] * p[2] for p in points) / sxx) if sxx else 0.0
        return (c, 0.0) if i == 0 else (0.0, c)

    s11 = sum(a * a for a, _, _ in points)
    s22 = sum(b * b for _, b, _ in points)
    s12 = sum(a * b for a, b, _ in points)
    s1y = sum(a * y for a, _, y in points)
    s2y = sum(b * y for _, b, y in points)
    det = s11 * s22 - s12 * s12
    if abs(det) <= 1e-9 * max(s11 * s22, 1e-300):
        return one(0)
    c1 = (s1y * s22 - s2y * s12) / det
    c2 = (s2y * s11 - s1y * s12) / det
    if c1 >= 0 and c2 >= 0:
        return c1, c2

    def sse(c: tuple[float, float]) -> float:
        return sum((c[0] * a + c[1] * b - y) ** 2 for a, b, y in points)

    return min((one(0), one(1)), key=sse)


def fit_overhead(points: list[tuple[int, float, float]]) -> dict[str, float]:
    """alpha (µs per op), beta (µs per sequence) of overhead = alpha x ops + beta x B by
    non-negative least squares over ``points`` = [(batch, ops per step, overhead ms)]. One
    point, or points at one batch: beta = 0."""
    pts = [(n, b, o * 1e3) for b, n, o in points if n and o is not None and not math.isnan(o)]
    if not pts:
        raise ValueError("no fit batch with an op count and an overhead")
    if len({b for _, b, _ in pts}) < 2:
        pts = [(n, 0.0, o) for n, _, o in pts]
    a, b = nnls2(pts)
    return {"alpha_us_per_op": a, "beta_us_per_seq": b}


def fit_other(points: list[tuple[int, float]]) -> dict[str, float]:
    """a + b x B (µs) for the device time of the kernels that are neither matmul nor
    attention, by non-negative least squares over [(batch, ms)] (one batch: b = 0)."""
    pts = [(1.0, float(b), ms * 1e3) for b, ms in points if ms is not None]
    if not pts:
        raise ValueError("no fit batch with a kernel split")
    if len({p[1] for p in pts}) < 2:
        pts = [(1.0, 0.0, y) for _, _, y in pts]
    a, b = nnls2(pts)
    return {"other_a_us": a, "other_b_us_per_seq": b}


def fit_host(points: list[tuple[float, float, float]]) -> dict[str, Any]:
    """alpha (µs per kernel) of an asynchronous device's host time = alpha x kernels, from
    [(kernels per step, measured TPOT ms, predicted device-busy ms)]: a batch whose TPOT
    exceeds its busy time is host-bound, TPOT = host, so alpha = TPOT / kernels (median of
    those); with no host-bound batch only an upper bound is known, min TPOT / kernels."""
    bound_ = [1e3 * t / n for n, t, busy in points if n and busy is not None and t > busy]
    if bound_:
        return {"alpha_us_per_op": F.median(bound_), "host_fit": "host-bound fit batches"}
    ub = [1e3 * t / n for n, t, _ in points if n]
    return {"alpha_us_per_op": min(ub), "host_fit": "upper bound (no fit batch host-bound)"}


def overhead_ms(fit: dict[str, float], ops_per_step: float, batch: int) -> float:
    return (fit["alpha_us_per_op"] * ops_per_step + fit.get("beta_us_per_seq", 0.0) * batch) / 1e3


def nearest_ops(batch: int, ops_by_batch: dict[int, float]) -> float:
    """The op count of the nearest batch (log scale) among those with a trace."""
    b = min(ops_by_batch, key=lambda x: (abs(math.log(x / batch)), x))
    return ops_by_batch[b]


# ---- errors, bounds ----------------------------------------------------------------------


def error_pct(pred: float | None, measured: float | None) -> float | None:
    """100 x (pred - measured) / measured, rounded to 1e-6 % (a fit batch's exact fit reads
    0, not a float's residue)."""
    if pred is None or not measured:
        return None
    return round(100.0 * (pred - measured) / measured, 6) + 0.0


def abs_interval(lo: float | None, hi: float | None) -> tuple[float | None, float | None]:
    """The range of |x| for x in [lo, hi]."""
    if lo is None or hi is None:
        return None, None
    lo, hi = min(lo, hi), max(lo, hi)
    if lo <= 0 <= hi:
        return 0.0, max(-lo, hi)
    return min(abs(lo), abs(hi)), max(abs(lo), abs(hi))


def bound(terms: dict[str, float | None]) -> str | None:
    """The largest term (weights / compute / attention / overhead), None if any is missing."""
    vals = {k: terms.get(k) for k in TERMS}
    if any(v is None for v in vals.values()):
        return None
    return max(TERMS, key=lambda k: vals[k])


def worst_term(errs: dict[str, float | None]) -> str | None:
    vals = {k: v for k, v in errs.items() if v is not None}
    return max(vals, key=lambda k: abs(vals[k])) if vals else None


def regime_sequence(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Consecutive batches with the same bound, in batch order: [{bound, batches}]."""
    seq: list[dict[str, Any]] = []
    for _, r in rows.sort_values("batch").iterrows():
        if r["bound"] is None or pd.isna(r["bound"]):
            continue
        if seq and seq[-1]["bound"] == r["bound"]:
            seq[-1]["batches"].append(int(r["batch"]))
        else:
            seq.append({"bound": r["bound"], "batches": [int(r["batch"])]})
    return seq


def weights_transition(rows: pd.DataFrame) -> dict[str, Any]:
    """Where the step stops being bound by weights: the first batch after a weights-bound
    batch whose largest term is something else (compute, overhead or attention)."""
    seq = regime_sequence(rows)
    out: dict[str, Any] = {"sequence": seq, "last_weights": None, "first_after": None, "to": None}
    for i, s in enumerate(seq):
        if s["bound"] == "weights" and i + 1 < len(seq):
            out.update(last_weights=s["batches"][-1], first_after=seq[i + 1]["batches"][0])
            out["to"] = seq[i + 1]["bound"]
            return out
        if s["bound"] == "weights":
            out["last_weights"] = s["batches"][-1]
    return out


# ---- the table ---------------------------------------------------------------------------


def _ci(steps_ms: list[float] | None, warmup: int) -> tuple[float | None, float | None]:
    kept = (steps_ms or [])[warmup:]
    if not kept:
        return None, None
    return F.median_ci(kept)


def combine_rule(device_kind: str, mode: str) -> str:
    """How the terms add up: ``sum`` where the host runs the ops itself (a CPU) or the
    device runs a captured graph back to back (CUDA graph mode); ``max`` for eager decoding
    on an asynchronous device (CUDA): the step takes the longer of issuing its kernels and
    running them."""
    return "max" if device_kind == "cuda" and mode == "eager" else "sum"


def _fit_mode(
    combine: str,
    fitting: list[int],
    ok: dict[int, dict[str, Any]],
    tt: dict[int, dict[str, Any]],
    measured,
) -> dict[str, Any]:
    """The overhead coefficients of one mode from its fit batches (see model_table)."""
    if combine == "sum":
        pts = []
        for b in fitting:
            mm, att = measured(b)
            pts.append((b, tt[b]["ops_per_step"], ok[b]["tpot_ms_p50"] - mm - att))
        return fit_overhead(pts)
    other = fit_other([(b, tt[b].get("trace_other_ops_ms")) for b in fitting])
    pts = []
    for b in fitting:
        mm, att = measured(b)
        busy = mm + att + (other["other_a_us"] + other["other_b_us_per_seq"] * b) / 1e3
        pts.append((tt[b]["ops_per_step"], ok[b]["tpot_ms_p50"], busy))
    return {**other, **fit_host(pts), "beta_us_per_seq": 0.0}


def _predict(
    combine: str, fit: dict[str, Any], mm: float, att: float, ops: float, b: int
) -> dict[str, float]:
    """predicted, overhead (and for max: host, other) ms at batch b."""
    if combine == "sum":
        ov = overhead_ms(fit, ops, b)
        return {"predicted_ms": mm + att + ov, "overhead_ms": ov}
    other = (fit["other_a_us"] + fit["other_b_us_per_seq"] * b) / 1e3
    host = fit["alpha_us_per_op"] * ops / 1e3
    pred = max(host, mm + att + other)
    return {
        "predicted_ms": pred,
        "overhead_ms": pred - mm - att,
        "host_ms": host,
        "other_ms": other,
    }


def model_table(
    *,
    ops: dict[str, Any],
    records: dict[str, list[dict[str, Any]]],
    terms: dict[str, dict[int, dict[str, Any]]],
    fit_batches: list[int],
    predict_batches: list[int],
    goal_pct: float,
    bw_gbps: float | None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The decode model's table (one row per mode x batch) and what it was fitted with.

    ``records[mode]``: the decode records of a mode; ``terms[mode][batch]``: the split of
    that batch's profiled steps (:func:`trace_step_terms` or :func:`kernels_terms`).
    ``sum`` (CPU; CUDA graph mode): overhead = alpha x ops + beta x B fitted on the fit
    batches' residuals, measured TPOT - predicted matmuls - predicted attention.
    ``max`` (CUDA eager): the step is max(host, busy), host = alpha x kernels per step,
    busy = matmuls + attention + other kernels (a + b x B, fitted on the fit batches'
    kernel time outside matmul and attention); alpha from the host-bound fit batches.
    A mode decoded at none of the fit batches is fitted on its smallest batch."""
    linears = ops.get("linears") or []
    gemm, sdpa = gemm_times(ops), sdpa_times(ops)
    wbytes = linear_bytes(linears, ops["dtype"]) if linears and ops.get("dtype") else None
    rows, fits = [], {}
    for mode, recs in records.items():
        by = {int(r["batch"]): r for r in recs}
        ok = {b: r for b, r in by.items() if r.get("status") == "ok"}
        layers = next((int(r["layers"]) for r in recs if "layers" in r), None)
        kind = next((r.get("device_kind") for r in recs if r.get("device_kind")), "cpu")
        combine = combine_rule(kind, mode)
        tt = {b: terms.get(mode, {}).get(b) or {} for b in ok}

        def measured(b: int, mode=mode, layers=layers) -> tuple[float | None, ...]:
            mm = matmul_ms(linears, gemm, b)
            att = attention_ms(sdpa, mode, b, layers) if layers else None
            return mm, att

        usable = [b for b in sorted(ok) if tt[b].get("ops_per_step") and None not in measured(b)]
        fitting = [b for b in usable if b in fit_batches] or usable[:1]
        fit = None
        if fitting:
            fit = _fit_mode(combine, fitting, ok, tt, measured)
            fits[mode] = {**fit, "fit_batches": fitting, "combine": combine}
        ops_fit = {b: tt[b]["ops_per_step"] for b in fitting}
        batches = sorted(set(by) | (set(predict_batches) if mode == "eager" else set()))
        for b in batches:
            r = by.get(b)
            role = "predicted" if r is None else ("fit" if b in fitting else "held out")
            mm, att = measured(b)
            w, c = weights_compute(linears, gemm, b)
            row: dict[str, Any] = {
                "mode": mode,
                "batch": b,
                "role": role,
                "status": r.get("status") if r else "predicted",
                "reason": r.get("reason") if r else None,
                "combine": combine,
                "matmul_ms": mm,
                "weights_ms": w,
                "weights_gbps": wbytes / (w * 1e6) if wbytes and w else None,
                "compute_ms": c,
                "attention_ms": att,
                **({k: v for k, v in fit.items() if k in COLUMNS} if fit else {}),
            }
            if fit and None not in (mm, att):
                row.update(_predict(combine, fit, mm, att, nearest_ops(b, ops_fit), b))
            row["bound"] = bound(
                {"weights": w, "compute": c, "attention": att, "overhead": row.get("overhead_ms")}
            )
            if r is not None and bw_gbps and r.get("weight_bytes") is not None:
                kv = r.get("kv_bytes_per_step") or 0
                row["napkin_ms"] = F.decode_step_napkin_s(r["weight_bytes"], kv, bw_gbps) * 1e3
                row["napkin_bw_gbps"] = bw_gbps
            if r is not None and r.get("status") == "ok":
                _measured_columns(row, r, tt.get(b) or {}, goal_pct)
            rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df, {"fits": fits, "goal_pct": goal_pct, "bw_gbps": bw_gbps}


def _measured_columns(
    row: dict[str, Any], r: dict[str, Any], x: dict[str, Any], goal_pct: float
) -> None:
    """The measured TPOT, the error and the per-term comparison with the trace."""
    t = float(r["tpot_ms_p50"])
    pred = row.get("predicted_ms")
    lo, hi = _ci(r.get("tpot_ms_steps"), int(r.get("warmup_steps", 0)))
    row.update(
        tpot_ms=t,
        tpot_ci_lo_ms=lo,
        tpot_ci_hi_ms=hi,
        tpot_p10_ms=r.get("tpot_ms_p10"),
        tpot_p90_ms=r.get("tpot_ms_p90"),
        error_pct=error_pct(pred, t),
    )
    if pred is not None and lo and hi:
        row["error_lo_pct"] = 100.0 * (pred - hi) / t
        row["error_hi_pct"] = 100.0 * (pred - lo) / t
    if row["error_pct"] is not None:
        row["goal_pct"] = goal_pct
        row["within_goal"] = abs(row["error_pct"]) <= goal_pct
    row.update({k: v for k, v in x.items() if k in COLUMNS})
    if not x:
        return
    row["trace_overhead_ms"] = t - x["trace_matmul_ms"] - x["trace_attention_ms"]
    mm, att, ov = row.get("matmul_ms"), row.get("attention_ms"), row.get("overhead_ms")
    errs = {
        "matmul": None if mm is None else mm - x["trace_matmul_ms"],
        "attention": None if att is None else att - x["trace_attention_ms"],
        "overhead": None if ov is None else ov - row["trace_overhead_ms"],
    }
    row.update({f"err_{k}_ms": v for k, v in errs.items()})
    row["worst_term"] = worst_term(errs)


def summary(df: pd.DataFrame, mode: str = "eager") -> dict[str, Any]:
    """The errors of one mode's measured batches: worst |error|, per-role worst, misses."""
    d = df[(df["mode"] == mode) & df["error_pct"].notna()]
    if d.empty:
        return {}
    out: dict[str, Any] = {
        "max_abs_error_pct": float(d["error_pct"].abs().max()),
        "errors_pct": {int(r["batch"]): float(r["error_pct"]) for _, r in d.iterrows()},
        "roles": {int(r["batch"]): r["role"] for _, r in d.iterrows()},
        "misses": {
            int(r["batch"]): r["worst_term"]
            for _, r in d.iterrows()
            if r["within_goal"] is False or r["within_goal"] == False  # noqa: E712
        },
    }
    for role in ("fit", "held out"):
        x = d[d["role"] == role]
        out[f"max_abs_error_{role.replace(' ', '_')}_pct"] = (
            float(x["error_pct"].abs().max()) if not x.empty else None
        )
    return out


MD_COLUMNS = {
    "mode": "mode",
    "batch": "batch",
    "role": "role",
    "tpot_ms": "TPOT p50 (ms)",
    "tpot_ci_lo_ms": "CI lo",
    "tpot_ci_hi_ms": "CI hi",
    "predicted_ms": "predicted (ms)",
    "error_pct": "error (%)",
    "weights_ms": "weights (ms)",
    "weights_gbps": "weights GB/s",
    "compute_ms": "compute (ms)",
    "attention_ms": "attention (ms)",
    "overhead_ms": "overhead (ms)",
    "bound": "bound",
    "napkin_ms": "napkin (ms)",
    "trace_matmul_ms": "trace matmul",
    "trace_overhead_ms": "trace overhead",
    "trace_gaps_ms": "trace gaps",
    "worst_term": "worst term",
}


def notes(df: pd.DataFrame, meta: dict[str, Any], ops: dict[str, Any]) -> list[str]:
    out = [
        "Predicted = matmuls (every linear at M = batch, measured alone: "
        f"{ops.get('method', {}).get('op', 'F.linear')}, Device.bench each mode, a "
        f"{ops.get('flush_bytes', 0) / 1e6:.0f} MB read before every call) + attention "
        "(SDPA at the decode shape, measured alone) + overhead (alpha x ops per step + beta x "
        "batch, fitted on the fit batches' residuals TPOT - matmuls - attention, ops per step "
        "from their traces); matmuls = weights (least matmul time at "
        "any M <= batch) + compute (the rest).",
        f"Error = (predicted - measured median TPOT) / measured; goal |error| <= "
        f"{meta['goal_pct']:g}%. TPOT CI: 95% CI of the median over the timed steps.",
        "trace columns: the profiled steps split by kernel class (matmul, attention) with "
        "the timed TPOT as the total (trace overhead = TPOT - matmul - attention); trace gaps "
        "= time inside the profiled step outside every op (CPU: Python; GPU: idle). worst "
        "term = the term whose prediction is furthest from the trace.",
    ]
    for mode, f in meta["fits"].items():
        on = ", ".join(map(str, f["fit_batches"]))
        if f["combine"] == "sum":
            out.append(
                f"{mode}: step = matmuls + attention + overhead; overhead = "
                f"{fmt_sig(f['alpha_us_per_op'])} µs per op + "
                f"{fmt_sig(f['beta_us_per_seq'])} µs per "
                f"sequence, fitted on batches {on}."
            )
        else:
            out.append(
                f"{mode}: step = max(host, busy) (an asynchronous device); host = "
                f"{fmt_sig(f['alpha_us_per_op'])} µs per kernel ({f['host_fit']}); busy = matmuls "
                f"+ attention + other kernels ({fmt_sig(f['other_a_us'])} µs + "
                f"{fmt_sig(f['other_b_us_per_seq'])} µs per sequence), fitted on batches {on}."
            )
    if meta.get("bw_gbps"):
        out.append(
            f"Napkin: (weights + K/V) / {fmt_sig(meta['bw_gbps'], 4)} GB/s, as in tables/decode.md."
        )
    for _, r in df[(df["status"] != "ok") & (df["status"] != "predicted")].iterrows():
        out.append(f"{r['mode']} batch {r['batch']}: {r['status']}: {r['reason']}")
    if ops.get("status") != "ok":
        out.append(f"isolated measurements: {ops.get('status')}: {ops.get('reason')}")
    return out


# ---- figure ------------------------------------------------------------------------------


def plot(df: pd.DataFrame, png: str, svg: str) -> None:
    """Stacked terms per batch (one panel per mode) with the measured TPOT, its p10-p90
    spread and median CI on top; fit / held-out / predicted under each bar."""
    from hwlab import figures

    modes = [m for m in ("eager", "graph") if m in set(df["mode"])] or ["eager"]
    fig, axes = figures.new(1, len(modes), width=5.6, height=4.2)
    for ax, mode in zip(axes[0], modes, strict=True):
        d = df[df["mode"] == mode].sort_values("batch").reset_index(drop=True)
        xs = list(range(len(d)))
        bottom = [0.0] * len(d)
        for term in TERMS:
            vals = [0.0 if pd.isna(v) else float(v) for v in d[f"{term}_ms"]]
            ax.bar(xs, vals, bottom=bottom, color=TERM_COLORS[term], label=term, width=0.6)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        m = d[d["tpot_ms"].notna()]
        if not m.empty:
            ix = list(m.index)
            ax.errorbar(
                ix,
                m["tpot_ms"],
                yerr=[m["tpot_ms"] - m["tpot_p10_ms"], m["tpot_p90_ms"] - m["tpot_ms"]],
                fmt="none",
                ecolor="black",
                capsize=4,
                lw=0.8,
                label="measured p10–p90",
            )
            ax.plot(ix, m["tpot_ms"], "kD", ms=5, label="measured TPOT (median)")
        nap = d[d["napkin_ms"].notna()]
        if not nap.empty:
            ax.plot(
                list(nap.index),
                nap["napkin_ms"],
                "_",
                color="tab:orange",
                ms=22,
                mew=2,
                label="napkin bound",
            )
        labels = []
        for _, r in d.iterrows():
            err = "" if pd.isna(r["error_pct"]) else f"\n{r['error_pct']:+.0f}%"
            labels.append(f"{int(r['batch'])}\n{r['role']}{err}")
        ax.set_xticks(xs, labels, fontsize=7)
        ax.set_xlim(-0.6, max(len(xs), 3) - 0.4)  # one bar keeps a bar's width
        ax.set_xlabel("batch (role, model error)")
        ax.set_ylabel("ms per decode step")
        ax.set_title(f"Where decode time goes — {mode}")
        tops = [*bottom, *[v for v in d["tpot_p90_ms"] if not pd.isna(v)]]
        ax.set_ylim(0, 1.45 * max([*tops, 1e-3]))  # headroom for the legend
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    figures.save(fig, png, svg)


# ---- the aggregation job -----------------------------------------------------------------


def _batch_of(path: str) -> int:
    from pathlib import Path

    return int(Path(path).name[1:].split(".")[0])


def write_decode_model(
    *,
    records: list[str],
    kernels: list[str],
    traces: list[str],
    graph_records: list[str],
    graph_kernels: list[str],
    graph_traces: list[str],
    ops_json: str,
    peaks_json: str,
    classes_yaml: str,
    fit_batches: list[int],
    predict_batches: list[int],
    goal_pct: float,
    out: dict[str, str],
    hardware_json: str | None = None,
) -> pd.DataFrame:
    """The decode_model job: tables/decode_model.csv|md, figures/decode_model.png|svg.
    Each batch's split comes from its trace; where the trace holds no decode step (an oom
    record, a trace from elsewhere), from its kernels.csv."""
    from hwlab import records as R
    from hwlab.decode_tables import bandwidth
    from hwlab.inventory import classify_rows, load_rules, load_trace, read_kernels_csv
    from hwlab.io import read_json, write_table

    rules = load_rules(classes_yaml)
    ops = read_json(ops_json)
    recs: dict[str, list[dict[str, Any]]] = {}
    terms: dict[str, dict[int, dict[str, Any]]] = {}
    for mode, rp, kp, tp in (
        ("eager", records, kernels, traces),
        ("graph", graph_records, graph_kernels, graph_traces),
    ):
        if not rp:
            continue
        recs[mode] = R.read_all(rp, "decode")
        steps = {int(r["batch"]): int(r.get("profile_steps") or 0) for r in recs[mode]}
        kcsv = {_batch_of(p): p for p in kp}
        terms[mode] = {}
        for p in tp:
            b = _batch_of(p)
            x = trace_step_terms(load_trace(p), rules)
            if not x and b in kcsv:
                x = kernels_terms(classify_rows(read_kernels_csv(kcsv[b]), rules), steps.get(b, 0))
            terms[mode][b] = x
    bw, _ = bandwidth(R.read_peaks(peaks_json, hardware_json))
    if ops.get("status") != "ok":
        ops = {**ops, "linears": [], "gemm": [], "sdpa": []}
    df, meta = model_table(
        ops=ops,
        records=recs,
        terms=terms,
        fit_batches=fit_batches,
        predict_batches=predict_batches,
        goal_pct=goal_pct,
        bw_gbps=bw,
    )
    write_table(
        df,
        out["csv"],
        out["md"],
        md_columns=MD_COLUMNS,
        title="Where decode time goes — the decode model",
        notes=notes(df, meta, ops),
    )
    plot(df, out["png"], out["svg"])
    return df
