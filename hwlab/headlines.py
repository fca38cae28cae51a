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


@dataclass
class Finding:
    key: str
    title: str
    holds: bool | None
    text: str
    evidence: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        return Finding(
            "ridge",
            "Ridge point",
            None,
            "No point leaves the memory line within the sweep "
            f"(last on-line M = {r['last_on_line_M']}); extend gemm.M to find the ridge.",
            ev,
            th,
        )
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
            regime = "overhead/launch-bound"
        out.append({"M": int(r["M"]), "ai": float(r["ai"]), "regime": regime})
    return out


def regime_finding(roofline: pd.DataFrame, ceil: dict[str, Any]) -> Finding:
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
    expected = ["overhead/launch-bound", "cache-assisted (L2)", "memory-bound", "compute-bound"]
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
