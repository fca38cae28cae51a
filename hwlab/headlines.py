"""Headline statements computed from a run's data, with explicit thresholds.

Each function takes the run's tables (pandas) and returns a :class:`Finding`: whether the
writeup's statement holds on this run (True / False, or None when the data needed is not
there), the sentence saying what the data shows either way, the evidence and the thresholds
used. Nothing here is pasted text: every number in a sentence comes from the arguments.

Thresholds (documented, and recorded in every finding):
- ON_MEMORY_LINE = 90: a roofline point whose effective GB/s is at least 90% of the memory
  ceiling sits "on the memory line" (warm-L2 points may read > 100%).
- PLATEAU_BAND = 0.05: points within 5% of the best TFLOP/s form the compute plateau.
- the sweet spot maximises %dense peak + min(%mem peak, 100): cache-served bytes beyond
  the memory line do not count as extra memory utilisation.
- COMPUTE_BOUND = 50: a point at or past 0.9 x the dense ridge reaching at least 50% of the
  dense peak is compute-bound; a point below both the memory line and that is
  overhead/launch-bound (neither ceiling limits it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

import pandas as pd

from hwlab import formulas as F

ON_MEMORY_LINE = 90.0
PLATEAU_BAND = 0.05
COMPUTE_BOUND = 50.0


# ---- verdicts: four outcomes --------------------------------------------------------------
# A headline holds, does not hold, is inconclusive (the measured spread straddles its
# threshold: the data cannot tell), or is not evaluable here (the data it needs is absent,
# and the finding says why).
HOLDS, FAILS, INCONCLUSIVE, NOT_EVALUABLE = (
    "holds",
    "does not hold",
    "inconclusive",
    "not evaluable",
)
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_EVALUABLE)
_FROM_BOOL = {True: HOLDS, False: FAILS, None: NOT_EVALUABLE}


def against(lo: float | None, hi: float | None, threshold: float, *, above: bool = True) -> str:
    """Verdict of "the quantity is >= threshold" (``above``; else "<= threshold") for a
    quantity measured to lie in [lo, hi] (its spread). Straddling the threshold is
    INCONCLUSIVE; a missing bound is NOT_EVALUABLE."""
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return NOT_EVALUABLE
    lo, hi = min(lo, hi), max(lo, hi)
    if above:
        return HOLDS if lo >= threshold else FAILS if hi < threshold else INCONCLUSIVE
    return HOLDS if hi <= threshold else FAILS if lo > threshold else INCONCLUSIVE


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two measured intervals (lo, hi) overlap: if so, the two numbers must not be
    reported as different."""
    return min(a) <= max(b) and min(b) <= max(a)


def all_of(*verdicts: str) -> str:
    """Conjunction of verdicts: any FAILS fails; else any NOT_EVALUABLE or INCONCLUSIVE
    leaves the whole so (not evaluable first); else HOLDS."""
    if FAILS in verdicts:
        return FAILS
    if NOT_EVALUABLE in verdicts:
        return NOT_EVALUABLE
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return HOLDS


@dataclass
class Finding:
    """One headline. ``verdict`` is one of VERDICTS (True / False / None are accepted and
    read as HOLDS / FAILS / NOT_EVALUABLE)."""

    key: str
    title: str
    verdict: str | bool | None
    text: str
    evidence: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.verdict, str):
            self.verdict = _FROM_BOOL[None if self.verdict is None else bool(self.verdict)]
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def holds(self) -> bool | None:
        """True / False for a decided verdict, None for inconclusive or not evaluable."""
        return {HOLDS: True, FAILS: False}.get(self.verdict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "holds": self.holds}


def _fmt(x: float | None) -> str:
    """1 decimal for numbers >= 10 (the writeup's style), 3 significant digits below."""
    if x is None or pd.isna(x):
        return "n/a"
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:.3g}"


def roofline_series(
    roofline: pd.DataFrame, dtype: str | None = None, l2: str = "warm"
) -> pd.DataFrame:
    """The ok points of one dtype and L2 mode, sorted by AI (the dtype defaults to the one
    with the most points, preferring bf16 as the writeup does)."""
    ok = roofline[(roofline["status"] == "ok") & (roofline["l2"] == l2)]
    if ok.empty:
        return ok
    if dtype is None:
        counts = ok["dtype"].value_counts()
        dtype = "bf16" if "bf16" in counts.index else counts.index[0]
    return ok[ok["dtype"] == dtype].sort_values("ai").reset_index(drop=True)


def measured_ridge(series: pd.DataFrame, on_line: float = ON_MEMORY_LINE) -> dict[str, Any]:
    """The first point clearly off the memory ceiling (the writeup's reading of its Lab 2).

    Points with %mem peak >= ``on_line`` are on the memory line; the measured ridge is the
    first point after the last such point (in AI order). None if no point is on the line or
    none follows it.
    """
    on = series.index[series["pct_mem_peak"] >= on_line]
    if len(on) == 0:
        return {"M": None, "ai": None, "last_on_line_M": None}
    last = on.max()
    if last + 1 >= len(series):
        return {"M": None, "ai": None, "last_on_line_M": int(series.loc[last, "M"])}
    first_off = series.loc[last + 1]
    return {
        "M": int(first_off["M"]),
        "ai": float(first_off["ai"]),
        "last_on_line_M": int(series.loc[last, "M"]),
    }


def plateau(series: pd.DataFrame, band: float = PLATEAU_BAND) -> dict[str, Any]:
    """The compute plateau: points within ``band`` of the best TFLOP/s."""
    best = series["tflops"].max()
    top = series[series["tflops"] >= (1 - band) * best]
    i = series["tflops"].idxmax()
    return {
        "best_tflops": float(best),
        "best_M": int(series.loc[i, "M"]),
        "best_pct_dense": float(series.loc[i, "pct_dense_peak"]),
        "low_tflops": float(top["tflops"].min()),
        "Ms": [int(m) for m in top["M"]],
    }


def sweet_spot(series: pd.DataFrame) -> dict[str, Any]:
    """M maximising %dense peak + min(%mem peak, 100)."""
    score = series["pct_dense_peak"] + series["pct_mem_peak"].clip(upper=100)
    i = score.idxmax()
    return {
        "M": int(series.loc[i, "M"]),
        "score": float(score[i]),
        "pct_dense": float(series.loc[i, "pct_dense_peak"]),
        "pct_mem": float(series.loc[i, "pct_mem_peak"]),
    }


def ridge_finding(roofline: pd.DataFrame, ceil: dict[str, Any]) -> Finding:
    """Measured ridge vs the spec's dense and sparse ridges (writeup: ~120 vs 117 vs 234)."""
    s = roofline_series(roofline)
    th = {"on_memory_line_pct": ON_MEMORY_LINE}
    if s.empty or s["pct_mem_peak"].isna().all():
        return Finding(
            "ridge",
            "Ridge point",
            None,
            "No roofline points with a memory ceiling to compare against.",
            thresholds=th,
        )
    r = measured_ridge(s)
    dense = (
        F.ridge_point(ceil["peak_tflops"], ceil["bw_gbps"])
        if ceil.get("peak_tflops") and ceil.get("bw_gbps")
        else None
    )
    sparse = (
        F.ridge_point(ceil["spec_sparse_tflops"], ceil["spec_bw_gbps"])
        if ceil.get("spec_sparse_tflops") and ceil.get("spec_bw_gbps")
        else None
    )
    ev = {
        "measured_ridge_M": r["M"],
        "measured_ridge_ai": r["ai"],
        "last_on_line_M": r["last_on_line_M"],
        "dense_ridge": dense,
        "sparse_ridge": sparse,
        "basis": ceil.get("basis"),
    }
    if r["M"] is None:
        text = (
            f"No point leaves the memory line within the sweep (last on it: M = "
            f"{r['last_on_line_M']}); extend gemm.M to find the ridge."
            if r["last_on_line_M"] is not None
            else f"No point reaches {ON_MEMORY_LINE:.0f}% of the memory peak, so the sweep "
            "shows no memory-bound stretch to leave; the ridge cannot be read off it."
        )
        return Finding("ridge", "Ridge point", None, text, ev, th)
    basis = "spec" if ceil.get("basis") == "spec" else "measured"
    text = (
        f"The first point clearly off the memory ceiling is M={r['M']} "
        f"(AI = {_fmt(r['ai'])} FLOP/byte; M={r['last_on_line_M']} is the last on it). "
        f"The {basis} dense peak over bandwidth puts the ridge at {_fmt(dense)} FLOP/byte"
    )
    if sparse:
        text += f"; the sparse peak would put it at {_fmt(sparse)}"
    holds = None
    if dense:
        # the measured ridge lies between the last on-line point and the first off it
        lo = float(s.loc[s["M"] == r["last_on_line_M"], "ai"].iloc[0])
        holds = lo <= dense * 1.1 and r["ai"] >= dense * 0.9
        ev["dense_ridge_bracketed"] = holds
        if sparse:
            closer_to_dense = abs(r["ai"] - dense) < abs(r["ai"] - sparse)
            ev["closer_to_dense_than_sparse"] = closer_to_dense
            holds = holds and closer_to_dense
        text += (
            ". The measurement confirms the dense ridge."
            if holds
            else ". The measured transition does not bracket the dense ridge."
        )
    else:
        text += "."
    return Finding("ridge", "Ridge point", holds, text, ev, th)


def plateau_finding(roofline: pd.DataFrame, ceil: dict[str, Any]) -> Finding:
    """Compute plateau in TFLOP/s and % of the dense peak; does it rule out the sparse peak?"""
    s = roofline_series(roofline)
    th = {"plateau_band": PLATEAU_BAND}
    if s.empty:
        return Finding("plateau", "Compute plateau", None, "No roofline points.", thresholds=th)
    p = plateau(s)
    sparse = ceil.get("spec_sparse_tflops")
    ev = {
        **p,
        "dense_peak": ceil.get("peak_tflops"),
        "sparse_peak": sparse,
        "basis": ceil.get("basis"),
    }
    text = (
        f"The plateau lands at {_fmt(p['low_tflops'])}–{_fmt(p['best_tflops'])} TFLOP/s "
        f"(M in {p['Ms']}); the best point, M={p['best_M']}, reaches "
        f"{_fmt(p['best_pct_dense'])}% of the {ceil.get('basis')} dense peak "
        f"({_fmt(ceil.get('peak_tflops'))} TFLOP/s)"
    )
    holds = None
    if sparse:
        holds = p["best_tflops"] < 0.6 * sparse
        text += (
            f", {_fmt(100 * p['best_tflops'] / sparse)}% of the sparse peak "
            f"({_fmt(sparse)}): the sparse peak is {'' if holds else 'not '}ruled out."
        )
    else:
        text += "."
    return Finding("plateau", "Compute plateau", holds, text, ev, th)


def sweet_spot_finding(roofline: pd.DataFrame) -> Finding:
    s = roofline_series(roofline)
    if s.empty:
        return Finding("sweet_spot", "Per-matmul sweet spot", None, "No roofline points.")
    sp = sweet_spot(s)
    text = (
        f"M={sp['M']} has the best combined utilisation: {_fmt(sp['pct_dense'])}% of the "
        f"dense peak and {_fmt(sp['pct_mem'])}% of the memory peak."
    )
    return Finding(
        "sweet_spot",
        "Per-matmul sweet spot",
        True,
        text,
        sp,
        {"score": "pct_dense_peak + min(pct_mem_peak, 100)"},
    )


def cache_finding(roofline: pd.DataFrame, ncu_gemm: pd.DataFrame | None = None) -> Finding:
    """Warm points above 100% of the memory peak, explained by the cold-L2 counterparts
    (and NCU's true DRAM bytes where captured)."""
    warm = roofline_series(roofline, l2="warm")
    th = {"above_peak_pct": 100.0}
    if warm.empty or warm["pct_mem_peak"].isna().all():
        return Finding(
            "cache",
            "Cache effects",
            None,
            "No warm-L2 points with a memory ceiling.",
            thresholds=th,
        )
    above = warm[warm["pct_mem_peak"] > 100]
    ev: dict[str, Any] = {
        "above_peak_M": [int(m) for m in above["M"]],
        "max_pct_mem": float(warm["pct_mem_peak"].max()),
    }
    if above.empty:
        return Finding(
            "cache",
            "Cache effects",
            False,
            f"No warm point exceeds the memory peak (max {_fmt(ev['max_pct_mem'])}%): "
            "on this device the warm loop is not served from cache.",
            ev,
            th,
        )
    text = (
        f"Warm-L2 points M={ev['above_peak_M']} read above 100% of the memory peak "
        f"(up to {_fmt(ev['max_pct_mem'])}%): the analytic byte count includes bytes served "
        "from cache."
    )
    cold = roofline_series(roofline, dtype=str(warm["dtype"].iloc[0]), l2="cold")
    holds: bool | None = True
    if not cold.empty:
        both = above.merge(cold, on="M", suffixes=("_warm", "_cold"))
        if not both.empty:
            ev["cold_pct_mem"] = {
                int(r["M"]): float(r["pct_mem_peak_cold"]) for _, r in both.iterrows()
            }
            worst = max(ev["cold_pct_mem"].values())
            holds = worst <= 105
            text += (
                f" With the cache flushed before each call the same points read at most "
                f"{_fmt(worst)}% — "
                + (
                    "the excess was cache."
                    if holds
                    else "still above the peak: the memory ceiling itself looks too low."
                )
            )
    if ncu_gemm is not None and not ncu_gemm.empty:
        ev["ncu_dram_gbps"] = {
            int(r["M"]): float(r["dram_read_gbps"])
            for _, r in ncu_gemm.iterrows()
            if pd.notna(r.get("dram_read_gbps"))
        }
        text += f" NCU's true DRAM read rate: {ev['ncu_dram_gbps']} GB/s."
    return Finding("cache", "Cache effects", holds, text, ev, th)


def regimes_from_roofline(roofline: pd.DataFrame, ridge_ai: float | None) -> list[dict[str, Any]]:
    """Classify each warm point: compute-bound (at or past 0.9 x the dense ridge and at least
    COMPUTE_BOUND % of the dense peak), cache-assisted (above 100% of the memory peak),
    memory-bound (on the memory line), else overhead/launch-bound (below both ceilings)."""
    s = roofline_series(roofline)
    out = []
    for _, r in s.iterrows():
        past_ridge = ridge_ai is not None and r["ai"] >= 0.9 * ridge_ai
        if past_ridge and r["pct_dense_peak"] >= COMPUTE_BOUND:
            regime = "compute-bound"
        elif r["pct_mem_peak"] > 100:
            regime = "cache-assisted (L2)"
        elif r["pct_mem_peak"] >= ON_MEMORY_LINE:
            regime = "memory-bound"
        else:
            regime = "below both ceilings (launch/overhead-bound)"
        out.append({"M": int(r["M"]), "ai": float(r["ai"]), "regime": regime})
    return out


def regime_finding(
    roofline: pd.DataFrame, ceil: dict[str, Any], decode: pd.DataFrame | None = None
) -> Finding:
    """The regime sequence along the roofline sweep (and, where decode data exists, how TPOT
    responds to batch: see :func:`decode_regimes`)."""
    s = roofline_series(roofline)
    if s.empty:
        return Finding("regimes", "Regime transition", None, "No roofline points.")
    ridge_ai = (
        F.ridge_point(ceil["peak_tflops"], ceil["bw_gbps"])
        if ceil.get("peak_tflops") and ceil.get("bw_gbps")
        else None
    )
    rows = regimes_from_roofline(roofline, ridge_ai)
    seq: list[dict[str, Any]] = []
    for row in rows:
        if seq and seq[-1]["regime"] == row["regime"]:
            seq[-1]["Ms"].append(row["M"])
        else:
            seq.append({"regime": row["regime"], "Ms": [row["M"]]})
    text = (
        "As M grows: "
        + " → ".join(
            f"{x['regime']} (M={x['Ms'][0]}{'–' + str(x['Ms'][-1]) if len(x['Ms']) > 1 else ''})"
            for x in seq
        )
        + "."
    )
    expected = [
        "below both ceilings (launch/overhead-bound)",
        "cache-assisted (L2)",
        "memory-bound",
        "compute-bound",
    ]
    seen = [x["regime"] for x in seq]
    order_ok = all(
        seen.index(a) < seen.index(b)
        for a, b in combinations(expected, 2)
        if a in seen and b in seen
    )
    holds = order_ok and seen[0] != "compute-bound" and "compute-bound" in seen
    text += (
        " The stages appear in the writeup's order."
        if holds
        else " This differs from the writeup's four-stage order."
    )
    return Finding(
        "regimes",
        "Regime transition",
        holds,
        text,
        {"sequence": seq, "ridge_ai": ridge_ai},
        {
            "on_memory_line_pct": ON_MEMORY_LINE,
            "compute_bound_pct": COMPUTE_BOUND,
            "compute_from_ai": "0.9 x dense ridge",
        },
    )


# ---- decode, kernel inventory and NCU --------------------------------------------------------

UTIL_HIGH = 50.0  # GPU-Util at or above this reads as "busy"
WORK_LOW = 10.0  # NCU SM / DRAM throughput at or below this is "mostly idle"
GEMV_LOW = 0.10  # GEMV share below this: the GEMV path is gone
TC_HIGH = 0.50  # tensor-core share above this: the tensor-core path dominates
ATTN_LOW = 0.05  # attention below this share of decode time is never the bottleneck
OVERHEAD = 2.0  # measured TPOT at least this many times the napkin: overhead-dominated
FLAT, PROPORTIONAL = 0.3, 0.7  # TPOT-vs-batch elasticity bounds (see decode_regimes)


def _lab1b_value(ncu_lab1b: pd.DataFrame | None, metric: str, batch: int) -> float | None:
    if ncu_lab1b is None or f"b{batch}" not in ncu_lab1b.columns:
        return None
    row = ncu_lab1b[ncu_lab1b["metric"] == metric]
    if row.empty or pd.isna(row[f"b{batch}"].iloc[0]):
        return None
    return float(row[f"b{batch}"].iloc[0])


def gpu_util_finding(
    decode: pd.DataFrame | None,
    ncu_lab1b: pd.DataFrame | None,
    ncu_reasons: list[str] | None = None,
    batch: int = 1,
) -> Finding:
    """NVML GPU-Util beside NCU's SM and DRAM throughput at batch 1 (writeup: 89% vs 1.13%
    SM and 1.75% DRAM)."""
    th = {"util_high_pct": UTIL_HIGH, "work_low_pct": WORK_LOW}
    title = "GPU-Util vs real work"
    util, why = None, "no decode data"
    if decode is not None and not decode.empty:
        row = decode[decode["batch"] == batch]
        if not row.empty:
            util = row["gpu_util_pct"].iloc[0]
            util = None if pd.isna(util) else float(util)
            why = row["gpu_util_reason"].iloc[0] if "gpu_util_reason" in row else None
    sm = _lab1b_value(ncu_lab1b, "sm_throughput", batch)
    sm_label = "Compute (SM) Throughput"
    if sm is None:
        sm, sm_label = _lab1b_value(ncu_lab1b, "sm_busy", batch), "SM Busy"
    dram = _lab1b_value(ncu_lab1b, "dram_throughput", batch)
    ev = {
        "batch": batch,
        "gpu_util_pct": util,
        "ncu_sm_pct": sm,
        "ncu_sm_metric": sm_label,
        "ncu_dram_pct": dram,
    }
    missing = []
    if util is None:
        missing.append(f"GPU-Util unavailable ({why or 'not sampled'})")
    if sm is None or dram is None:
        missing.append(
            "NCU Speed-of-Light unavailable ("
            + ("; ".join(ncu_reasons or []) or "not captured")
            + ")"
        )
    if missing:
        return Finding(
            "gpu_util",
            title,
            None,
            f"Cannot be evaluated on this run at batch {batch}: " + "; ".join(missing) + ".",
            ev,
            th,
        )
    holds = util >= UTIL_HIGH and sm <= WORK_LOW and dram <= WORK_LOW
    text = (
        f"At batch={batch}, GPU-Util reads {_fmt(util)}% while NCU shows the attention "
        f"kernel at {_fmt(sm)}% {sm_label} and {_fmt(dram)}% of DRAM throughput: "
    )
    text += (
        "GPU-Util says busy, the kernel is mostly idle — GPU-Util only measures "
        "whether any kernel is running."
        if holds
        else "the two do not disagree here."
    )
    return Finding("gpu_util", title, holds, text, ev, th)


def class_shares_by_batch(classes: pd.DataFrame, phase: str = "decode") -> pd.DataFrame:
    """batch x class share table for one phase."""
    c = classes[classes["phase"] == phase]
    return c.pivot_table(index="batch", columns="class", values="share", aggfunc="sum")


def gemv_switch_finding(classes: pd.DataFrame | None, device_kind: str) -> Finding:
    """The first batch where GEMV falls below GEMV_LOW and tensor cores pass TC_HIGH
    (writeup: between batch 16 and 32)."""
    th = {"gemv_low": GEMV_LOW, "tc_high": TC_HIGH}
    title = "GEMV → tensor-core GEMM switch"
    if classes is None or classes.empty:
        return Finding(
            "gemv_switch", title, None, "No kernel inventory on this run.", thresholds=th
        )
    w = class_shares_by_batch(classes).fillna(0.0)
    batches = list(w.index)
    gemv = w.get("gemv", pd.Series(0.0, index=w.index))
    tc = w.get("tc_gemm", pd.Series(0.0, index=w.index))
    ev = {
        "gemv_share": {int(b): float(gemv[b]) for b in batches},
        "tc_share": {int(b): float(tc[b]) for b in batches},
    }
    switch = next((b for b in batches if gemv[b] < GEMV_LOW and tc[b] > TC_HIGH), None)
    gemv_gone = next((b for b in batches if gemv[b] < GEMV_LOW), None)
    ev.update(switch_batch=switch, gemv_gone_batch=gemv_gone)
    if switch is not None:
        i = batches.index(switch)
        before = batches[i - 1] if i else None
        text = (
            f"The matmul path changes between batch {before} and {switch}: GEMV "
            f"{100 * gemv[before]:.0f}% → {100 * gemv[switch]:.0f}% and tensor-core GEMM "
            f"{100 * tc[before]:.0f}% → {100 * tc[switch]:.0f}% of decode time."
            if before is not None
            else f"Tensor-core GEMMs already dominate at the smallest batch, {switch} "
            f"({100 * tc[switch]:.0f}%)."
        )
        ev["before_batch"] = before
        return Finding("gemv_switch", title, before is not None, text, ev, th)
    if device_kind != "cuda":
        text = "No tensor cores on a CPU: the tensor-core share stays 0. " + (
            f"The GEMV share falls below {100 * GEMV_LOW:.0f}% at batch {gemv_gone} "
            f"({100 * gemv[gemv_gone]:.0f}%; batch {batches[0]}: "
            f"{100 * gemv[batches[0]]:.0f}%): from there matmuls are GEMMs."
            if gemv_gone is not None
            else f"The GEMV share never falls below {100 * GEMV_LOW:.0f}%."
        )
        return Finding("gemv_switch", title, False, text, ev, th)
    return Finding(
        "gemv_switch",
        title,
        False,
        f"No batch has GEMV below {100 * GEMV_LOW:.0f}% with tensor cores above "
        f"{100 * TC_HIGH:.0f}% (largest tensor-core share "
        f"{100 * tc.max():.0f}% at batch {int(tc.idxmax())}).",
        ev,
        th,
    )


def attention_finding(classes: pd.DataFrame | None) -> Finding:
    """Attention's share of decode time across batches (writeup: < 3%, never the bottleneck)."""
    th = {"attention_low": ATTN_LOW}
    title = "Attention is never the bottleneck"
    if classes is None or classes.empty:
        return Finding("attention", title, None, "No kernel inventory on this run.", thresholds=th)
    w = class_shares_by_batch(classes).fillna(0.0)
    att = w.get("attention", pd.Series(0.0, index=w.index))
    top = w.idxmax(axis=1)
    worst = int(att.idxmax())
    ev = {
        "attention_share": {int(b): float(att[b]) for b in w.index},
        "top_class": {int(b): str(top[b]) for b in w.index},
    }
    holds = bool(att.max() < ATTN_LOW)
    text = (
        f"Attention takes at most {100 * att.max():.1f}% of decode time (batch {worst}); "
        f"the largest class is {', '.join(sorted(set(ev['top_class'].values())))} at every "
        "batch. "
    )
    text += (
        "Decode-latency work belongs on the FFN matmuls, not attention."
        if holds
        else f"Attention exceeds {100 * ATTN_LOW:.0f}% here: it is a real share of decode time."
    )
    return Finding("attention", title, holds, text, ev, th)


def decode_overhead_finding(decode: pd.DataFrame | None, batch: int = 1) -> Finding:
    """Measured TPOT vs the napkin bound at batch 1 (writeup: ~12 ms vs 1.79 ms on H100)."""
    th = {"overhead_ratio": OVERHEAD}
    title = "Decode overhead vs the napkin bound"
    if decode is None or decode.empty:
        return Finding("decode_overhead", title, None, "No decode data on this run.", thresholds=th)
    row = decode[(decode["batch"] == batch) & (decode["status"] == "ok")]
    if row.empty or pd.isna(row["napkin_ms"].iloc[0]):
        return Finding(
            "decode_overhead",
            title,
            None,
            f"No measured batch {batch} with a napkin bound.",
            thresholds=th,
        )
    r = row.iloc[0]
    ratio = float(r["overhead_ratio"])
    ev = {
        "batch": batch,
        "tpot_ms": float(r["tpot_ms_p50"]),
        "napkin_ms": float(r["napkin_ms"]),
        "ratio": ratio,
        "bw_basis": r.get("bw_basis"),
    }
    holds = ratio >= OVERHEAD
    text = (
        f"At batch {batch} a decode step takes {_fmt(r['tpot_ms_p50'])} ms against a napkin "
        f"lower bound of {_fmt(r['napkin_ms'])} ms (weights + KV read once at "
        f"{_fmt(r['bw_gbps'])} GB/s, {r.get('bw_basis')}): {ratio:.2g}× the bound. "
    )
    text += (
        "Framework overhead (Python, sampler, launches) dominates, as the writeup found."
        if holds
        else "The step is close to the memory bound: little framework overhead "
        "on top of streaming the weights."
    )
    return Finding("decode_overhead", title, holds, text, ev, th)


def decode_regimes(decode: pd.DataFrame | None) -> list[dict[str, Any]]:
    """TPOT's elasticity to batch between consecutive measured batches:
    e = log(TPOT ratio) / log(batch ratio). e < FLAT: TPOT ~flat (weights streamed once
    serve the whole batch: memory/overhead-bound); e >= PROPORTIONAL: TPOT grows with the
    batch (compute-bound); in between: transition."""
    import math

    if decode is None:
        return []
    ok = decode[decode["status"] == "ok"].sort_values("batch")
    out = []
    for (_, a), (_, b) in zip(ok.iterrows(), ok.iloc[1:].iterrows(), strict=False):
        e = math.log(b["tpot_ms_p50"] / a["tpot_ms_p50"]) / math.log(b["batch"] / a["batch"])
        regime = (
            "flat (memory/overhead-bound)"
            if e < FLAT
            else "proportional (compute-bound)"
            if e >= PROPORTIONAL
            else "transition"
        )
        out.append(
            {"from": int(a["batch"]), "to": int(b["batch"]), "elasticity": e, "regime": regime}
        )
    return out


def operating_point(decode: pd.DataFrame | None, min_efficiency: float = 0.5):
    """The largest measured batch whose scaling efficiency is still >= ``min_efficiency``
    (writeup: batch 64, before efficiency collapses to ~47% at 128)."""
    if decode is None:
        return None
    ok = decode[(decode["status"] == "ok") & decode["scaling_efficiency"].notna()]
    ok = ok[ok["scaling_efficiency"] >= min_efficiency]
    if ok.empty:
        return None
    r = ok.sort_values("batch").iloc[-1]
    base = decode[(decode["batch"] == decode["batch"].min()) & (decode["status"] == "ok")]
    mult = float(r["tokens_per_s"] / base["tokens_per_s"].iloc[0]) if not base.empty else None
    return {
        "batch": int(r["batch"]),
        "tpot_ms": float(r["tpot_ms_p50"]),
        "tokens_per_s": float(r["tokens_per_s"]),
        "efficiency": float(r["scaling_efficiency"]),
        "throughput_multiple": mult,
        "min_efficiency": min_efficiency,
    }
