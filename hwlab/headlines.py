"""Headline statements computed from a run's data, with explicit thresholds and noise.

Each function takes the run's tables (pandas) and returns a :class:`Finding` whose verdict
is one of four: the writeup's statement *holds* on this run, *does not hold*, is
*inconclusive* (the measured spread straddles a threshold; the text says by how much), or
is *not evaluable* here (the data it needs is absent; the text says why). Nothing here is
pasted text: every number in a sentence comes from the arguments.

Noise. Every measured quantity is read as an interval, never as a point: a roofline point's
TFLOP/s and GB/s at its slowest and fastest repeat (and, against a measured ceiling, that
ceiling's own range), TPOT's p10-p90 over the kept decode steps, a kernel class's share
min-max over the profiled steps, GPU-Util's p10-p90 over its samples. A threshold test on
an interval is decided only when the whole interval is on one side (:func:`against`);
two measured numbers are called different only when their intervals do not overlap
(:func:`overlap`). Data without a recorded spread (a reference run transcribed from the
writeup) is read as exact.

Thresholds (documented here and recorded in every finding):
- ON_MEMORY_LINE = 90: a roofline point whose effective GB/s is at least 90% of the memory
  ceiling sits "on the memory line" (warm-L2 points may read > 100%).
- RIDGE_TOLERANCE = 0.1: the measured transition [last point on the line, first point
  clearly off it] "brackets" a ridge r when it starts at or below 1.1 r and ends at or above
  0.9 r; it confirms the dense ridge when it brackets it and not the sparse one.
- PLATEAU_BAND = 0.05: points within 5% of the best TFLOP/s form the compute plateau; a
  plateau needs at least MIN_PLATEAU_POINTS = 2 such points. SPARSE_RULED_OUT = 0.6: a best
  point below 60% of the sparse peak rules the sparse peak out.
- WRITEUP_SWEET_SPOT_M = 64: the writeup's per-matmul sweet spot (highest combined memory +
  compute utilisation, score = %dense peak + min(%mem peak, 100): cache-served bytes beyond
  the memory line do not count). Points whose score interval overlaps the best one's are
  tied with it.
- COMPUTE_BOUND = 50: a point at or past 0.9 x the dense ridge reaching at least 50% of the
  dense peak is compute-bound; a point below both the memory line and that is
  overhead/launch-bound (neither ceiling limits it). The four-stage transition needs
  MIN_REGIME_POINTS = 5 points spanning the ridge and MIN_STAGES = 3 of the writeup's 4
  stages, in its order, ending compute-bound.
- CACHE_EXPLAINED = 105: a warm point above 100% of the memory peak is explained by cache
  when its cold-L2 counterpart reads at most 105%.
- UTIL_HIGH = 50, WORK_LOW = 10: GPU-Util >= 50% reads "busy"; NCU SM / DRAM throughput
  <= 10% is "mostly idle".
- GEMV_LOW = 0.10, TC_HIGH = 0.50: the matmul path has switched at a batch where GEMV is
  below 10% and tensor-core (matrix-engine) GEMM above 50% of decode time.
- ATTN_LOW = 0.05: attention below 5% of decode time at every batch is "never the
  bottleneck"; SECOND_ORDER = 0.5: attention whose largest share stays below half of the
  largest kernel class's is a second-order share (evidence ``second_order``).
- OVERHEAD = 2.0, OUTSIDE_OPS = 0.5: the writeup's "the step is far above the napkin bound
  and the gap is framework overhead" holds when measured TPOT is at least 2x the bound and
  (where profiled steps say) at least half of the step is spent outside ops / kernels.
- MIN_EFFICIENCY = 0.5, SUPERLINEAR = 1.05: the operating batch is the largest batch whose
  scaling efficiency is at least 50%; an efficiency above 1.05 (more than b independent
  batch-1 streams) is noise or a measurement artefact and is flagged, not used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from hwlab import formulas as F
from hwlab.io import finite as _num
from hwlab.io import fmt_number, fmt_sig

ON_MEMORY_LINE = 90.0
RIDGE_TOLERANCE = 0.1
PLATEAU_BAND = 0.05
MIN_PLATEAU_POINTS = 2
SPARSE_RULED_OUT = 0.6
WRITEUP_SWEET_SPOT_M = 64
COMPUTE_BOUND = 50.0
MIN_REGIME_POINTS = 5
MIN_STAGES = 3
CACHE_EXPLAINED = 105.0


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
    """A number in a headline as the tables print it (:func:`hwlab.io.fmt_number`: 1
    decimal from 10, the writeup's style, whole and grouped from 1,000, 3 significant
    digits below 10); 'n/a' when missing."""
    if x is None or pd.isna(x):
        return "n/a"
    return fmt_number(x)


# ---- intervals -------------------------------------------------------------------------------

# the (lo, hi) columns that carry a quantity's spread, where a table has them
RANGES = {
    "tflops": ("tflops_lo", "tflops_hi"),
    "pct_dense_peak": ("pct_dense_lo", "pct_dense_hi"),
    "pct_mem_peak": ("pct_mem_lo", "pct_mem_hi"),
    "eff_gbps": ("eff_gbps_lo", "eff_gbps_hi"),
    "tpot_ms_p50": ("tpot_ms_p10", "tpot_ms_p90"),
    "tokens_per_s": ("tokens_per_s_lo", "tokens_per_s_hi"),
    "scaling_efficiency": ("scaling_efficiency_lo", "scaling_efficiency_hi"),
    "overhead_ratio": ("overhead_ratio_lo", "overhead_ratio_hi"),
    "napkin_ms": ("napkin_ms_lo", "napkin_ms_hi"),
    "gpu_util_pct": ("gpu_util_p10_pct", "gpu_util_p90_pct"),
    "share": ("share_lo", "share_hi"),
}


def rng(row: Any, col: str) -> tuple[float | None, float | None]:
    """(lo, hi) of ``row[col]``: its recorded spread columns (RANGES), else the value
    itself (no spread recorded: read as exact). The value always lies inside."""
    v = _num(row.get(col) if hasattr(row, "get") else row[col])
    if v is None:
        return None, None
    lo_c, hi_c = RANGES.get(col, (None, None))
    lo = _num(row.get(lo_c)) if lo_c and lo_c in row else None
    hi = _num(row.get(hi_c)) if hi_c and hi_c in row else None
    lo = v if lo is None else min(lo, v)
    hi = v if hi is None else max(hi, v)
    return lo, hi


def span(lo: float | None, hi: float | None, unit: str = "") -> str:
    """'12.3' for an exact value, '11.0–13.5' for an interval."""
    if lo is None or hi is None:
        return "n/a"
    if _fmt(lo) == _fmt(hi):
        return f"{_fmt(lo)}{unit}"
    return f"{_fmt(lo)}–{_fmt(hi)}{unit}"


def straddle(lo: float, hi: float, threshold: float, unit: str = "") -> str:
    """How an interval straddles a threshold, in words."""
    return (
        f"{span(lo, hi, unit)} straddles {_fmt(threshold)}{unit} "
        f"({_fmt(threshold - lo)}{unit} below it to {_fmt(hi - threshold)}{unit} above)"
    )


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


def line_state(row: Any, on_line: float = ON_MEMORY_LINE) -> str:
    """'on' / 'off' the memory line, or 'uncertain' when the point's %mem range straddles
    it; 'n/a' without a memory ceiling."""
    lo, hi = rng(row, "pct_mem_peak")
    v = against(lo, hi, on_line)
    return {HOLDS: "on", FAILS: "off", INCONCLUSIVE: "uncertain"}.get(v, "n/a")


def measured_ridge(series: pd.DataFrame, on_line: float = ON_MEMORY_LINE) -> dict[str, Any]:
    """The first point clearly off the memory ceiling (the writeup's reading of its Lab 2).

    Points whose %mem range is wholly >= ``on_line`` are on the memory line; the measured
    ridge is the first point wholly below it after the last such point (in AI order).
    Points in between straddle the line: the transition lies somewhere in [AI of the last
    on-line point, AI of the first off point] (``uncertain_M`` lists them). None if no
    point is on the line or none follows it.
    """
    states = [line_state(r, on_line) for _, r in series.iterrows()]
    on = [i for i, st in enumerate(states) if st == "on"]
    out: dict[str, Any] = {"M": None, "ai": None, "last_on_line_M": None,
                           "last_on_line_ai": None, "uncertain_M": []}  # fmt: skip
    if not on:
        out["uncertain_M"] = [int(series.loc[i, "M"]) for i, st in enumerate(states)
                              if st == "uncertain"]  # fmt: skip
        return out
    last = on[-1]
    out.update(last_on_line_M=int(series.loc[last, "M"]),
               last_on_line_ai=float(series.loc[last, "ai"]))  # fmt: skip
    off = next((i for i in range(last + 1, len(states)) if states[i] == "off"), None)
    between = range(last + 1, off if off is not None else len(states))
    out["uncertain_M"] = [int(series.loc[i, "M"]) for i in between if states[i] == "uncertain"]
    if off is None:
        return out
    out.update(M=int(series.loc[off, "M"]), ai=float(series.loc[off, "ai"]))
    return out


def plateau(series: pd.DataFrame, band: float = PLATEAU_BAND) -> dict[str, Any]:
    """The compute plateau: points within ``band`` of the best TFLOP/s. With spreads, a
    point belongs when its fastest repeat reaches (1 - band) x the best point's slowest."""
    i = series["tflops"].idxmax()
    best = series.loc[i]
    b_lo, b_hi = rng(best, "tflops")
    ranges = [rng(r, "tflops") for _, r in series.iterrows()]
    top = [k for k, (lo, hi) in enumerate(ranges) if hi >= (1 - band) * b_lo]
    return {
        "best_tflops": float(best["tflops"]),
        "best_tflops_range": [b_lo, b_hi],
        "best_M": int(best["M"]),
        "best_pct_dense": _num(best.get("pct_dense_peak")),
        "best_pct_dense_range": list(rng(best, "pct_dense_peak")),
        "best_is_last": int(i) == len(series) - 1,
        "low_tflops": float(min(series.loc[k, "tflops"] for k in top)),
        "Ms": [int(series.loc[k, "M"]) for k in top],
    }


def sweet_spot(series: pd.DataFrame) -> dict[str, Any]:
    """M maximising %dense peak + min(%mem peak, 100), and every M tied with it (score
    intervals overlapping the best one's)."""
    rows = []
    for _, r in series.iterrows():
        d_lo, d_hi = rng(r, "pct_dense_peak")
        m_lo, m_hi = rng(r, "pct_mem_peak")
        if d_lo is None or m_lo is None:
            continue
        score = r["pct_dense_peak"] + min(r["pct_mem_peak"], 100)
        rows.append((int(r["M"]), float(score), d_lo + min(m_lo, 100), d_hi + min(m_hi, 100), r))
    if not rows:
        return {}
    m, score, lo, hi, r = max(rows, key=lambda x: x[1])
    tied = [x[0] for x in rows if overlap((x[2], x[3]), (lo, hi))]
    return {
        "M": m,
        "score": score,
        "score_range": [lo, hi],
        "pct_dense": float(r["pct_dense_peak"]),
        "pct_mem": float(r["pct_mem_peak"]),
        "tied_M": tied,
        "scores": {x[0]: [x[2], x[1], x[3]] for x in rows},
    }


def _circular_note(ceil: dict[str, Any]) -> str:
    if ceil.get("peak_independent", True):
        return ""
    return (
        " Note: % of peak is against this sweep's own best point (the peaks stage's square "
        "GEMM was slower), so the best point reads 100% by construction: the compute "
        "ceiling is not independent of the sweep."
    )


def _ridges(ceil: dict[str, Any]) -> tuple[float | None, float | None]:
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
    return dense, sparse


def brackets(a: float, b: float, ridge: float, tol: float = RIDGE_TOLERANCE) -> bool:
    """Whether the transition [a, b] (AI) brackets ``ridge`` within ``tol``."""
    return a <= ridge * (1 + tol) and b >= ridge * (1 - tol)


def ridge_finding(roofline: pd.DataFrame, ceil: dict[str, Any]) -> Finding:
    """Measured ridge vs the spec's dense and sparse ridges (writeup: ~120 vs 117 vs 234)."""
    s = roofline_series(roofline)
    th = {"on_memory_line_pct": ON_MEMORY_LINE, "ridge_tolerance": RIDGE_TOLERANCE}
    title = "Ridge point"
    if s.empty or s["pct_mem_peak"].isna().all():
        return Finding("ridge", title, NOT_EVALUABLE,
                       "No roofline points with a memory ceiling to compare against.",
                       thresholds=th)  # fmt: skip
    r = measured_ridge(s)
    dense, sparse = _ridges(ceil)
    ev = {
        "dtype": str(s["dtype"].iloc[0]),
        "measured_ridge_M": r["M"],
        "measured_ridge_ai": r["ai"],
        "last_on_line_M": r["last_on_line_M"],
        "uncertain_M": r["uncertain_M"],
        "dense_ridge": dense,
        "sparse_ridge": sparse,
        "basis": ceil.get("basis"),
    }
    if r["last_on_line_M"] is None:
        if r["uncertain_M"]:
            u = s[s["M"] == r["uncertain_M"][0]].iloc[0]
            lo, hi = rng(u, "pct_mem_peak")
            return Finding(
                "ridge", title, INCONCLUSIVE,
                f"No point is clearly on the memory line: M={r['uncertain_M'][0]} reads "
                f"{straddle(lo, hi, ON_MEMORY_LINE, '%')} of the memory peak over its repeats.",
                ev, th,
            )  # fmt: skip
        return Finding(
            "ridge", title, NOT_EVALUABLE,
            f"No point reaches {ON_MEMORY_LINE:.0f}% of the memory peak (best "
            f"{_fmt(s['pct_mem_peak'].max())}%), so the sweep shows no memory-bound stretch to "
            "leave; the ridge cannot be read off it.",
            ev, th,
        )  # fmt: skip
    if r["M"] is None:
        return Finding(
            "ridge", title, NOT_EVALUABLE,
            f"No point clearly leaves the memory line within the sweep (last on it: "
            f"M={r['last_on_line_M']}"
            + (f"; M={r['uncertain_M']} straddle it" if r["uncertain_M"] else "")
            + "); extend gemm.M to find the ridge.",
            ev, th,
        )  # fmt: skip
    a, b = r["last_on_line_ai"], r["ai"]
    basis = "spec" if ceil.get("basis") == "spec" else "measured"
    text = (
        f"The first point clearly off the memory ceiling is M={r['M']} "
        f"(AI = {_fmt(b)} FLOP/byte; M={r['last_on_line_M']}, AI {_fmt(a)}, is the last on it"
        + (f"; M={r['uncertain_M']} straddle the line" if r["uncertain_M"] else "")
        + f"). The {basis} dense peak over bandwidth puts the ridge at {_fmt(dense)} FLOP/byte"
    )
    if sparse:
        text += f"; the sparse peak would put it at {_fmt(sparse)}"
    if not dense:
        return Finding("ridge", title, NOT_EVALUABLE, text + "; no dense ceiling to compare.",
                       ev, th)  # fmt: skip
    ev["dense_ridge_bracketed"] = brackets(a, b, dense)
    ev["sparse_ridge_bracketed"] = brackets(a, b, sparse) if sparse else None
    if not ev["dense_ridge_bracketed"]:
        verdict = FAILS
        text += (
            f". The measured transition (AI {_fmt(a)}–{_fmt(b)}) does not bracket the dense ridge."
        )
    elif sparse and ev["sparse_ridge_bracketed"]:
        verdict = INCONCLUSIVE
        text += (
            f". The measured transition (AI {_fmt(a)}–{_fmt(b)}) brackets both the dense and "
            "the sparse ridge: the sweep is too coarse to tell them apart."
        )
    else:
        verdict = HOLDS
        text += ". The measurement confirms the dense ridge."
    return Finding("ridge", title, verdict, text, ev, th)


def plateau_finding(roofline: pd.DataFrame, ceil: dict[str, Any]) -> Finding:
    """Compute plateau in TFLOP/s and % of the dense peak; does it rule out the sparse peak?"""
    s = roofline_series(roofline)
    th = {"plateau_band": PLATEAU_BAND, "min_plateau_points": MIN_PLATEAU_POINTS,
          "sparse_ruled_out_below": SPARSE_RULED_OUT}  # fmt: skip
    title = "Compute plateau"
    if s.empty:
        return Finding("plateau", title, NOT_EVALUABLE, "No roofline points.", thresholds=th)
    p = plateau(s)
    sparse = ceil.get("spec_sparse_tflops")
    ev = {
        **p,
        "dtype": str(s["dtype"].iloc[0]),
        "dense_peak": ceil.get("peak_tflops"),
        "sparse_peak": sparse,
        "basis": ceil.get("basis"),
        "peak_independent": ceil.get("peak_independent", True),
    }
    lo, hi = p["best_tflops_range"]
    if len(p["Ms"]) < MIN_PLATEAU_POINTS:
        where = ", the sweep's largest M" if p["best_is_last"] else ""
        return Finding(
            "plateau", title, NOT_EVALUABLE,
            f"No plateau: only M={p['best_M']} ({span(lo, hi)} TFLOP/s{where}) is within "
            f"{100 * PLATEAU_BAND:.0f}% of the best TFLOP/s; a plateau needs at least "
            f"{MIN_PLATEAU_POINTS} points there (extend gemm.M)." + _circular_note(ceil),
            ev, th,
        )  # fmt: skip
    d_lo, d_hi = p["best_pct_dense_range"]
    text = (
        f"The plateau lands at {_fmt(p['low_tflops'])}–{_fmt(p['best_tflops'])} TFLOP/s "
        f"(M in {p['Ms']}); the best point, M={p['best_M']}"
        + (f" ({span(lo, hi)} TFLOP/s over its repeats)" if span(lo, hi) != _fmt(lo) else "")
        + f", reaches {span(d_lo, d_hi, '%')} of the {ceil.get('basis')} dense peak "
        f"({_fmt(ceil.get('peak_tflops'))} TFLOP/s)"
    )
    if not sparse:
        return Finding(
            "plateau", title, NOT_EVALUABLE,
            text + "; this device has no sparse peak in the catalog, so there is nothing to "
            "rule out." + _circular_note(ceil),
            ev, th,
        )  # fmt: skip
    limit = SPARSE_RULED_OUT * sparse
    verdict = against(lo, hi, limit, above=False)
    text += (
        f", {span(100 * lo / sparse, 100 * hi / sparse, '%')} of the sparse peak ({_fmt(sparse)}): "
    )
    text += {
        HOLDS: "the sparse peak is ruled out.",
        FAILS: "the sparse peak is not ruled out.",
        INCONCLUSIVE: f"whether the sparse peak is ruled out is within noise (best point "
        f"{straddle(lo, hi, limit)} TFLOP/s = {100 * SPARSE_RULED_OUT:.0f}% of it).",
    }[verdict]
    return Finding("plateau", title, verdict, text + _circular_note(ceil), ev, th)


def sweet_spot_finding(roofline: pd.DataFrame, ceil: dict[str, Any] | None = None) -> Finding:
    """The writeup's claim: M=64 has the highest combined memory + compute utilisation.
    Holds when M=64 alone is best, does not hold when another M beats it beyond noise,
    inconclusive when M=64 and others are tied within their spreads."""
    s = roofline_series(roofline)
    th = {"writeup_sweet_spot_M": WRITEUP_SWEET_SPOT_M,
          "score": "pct_dense_peak + min(pct_mem_peak, 100)"}  # fmt: skip
    title = "Per-matmul sweet spot"
    if s.empty:
        return Finding("sweet_spot", title, NOT_EVALUABLE, "No roofline points.", thresholds=th)
    sp = sweet_spot(s)
    if not sp:
        return Finding("sweet_spot", title, NOT_EVALUABLE,
                       "No roofline point has both a compute and a memory ceiling.",
                       thresholds=th)  # fmt: skip
    w = WRITEUP_SWEET_SPOT_M
    sp["dtype"] = str(s["dtype"].iloc[0])
    sp["noise_limited"] = len(sp["tied_M"]) > 1
    best = (
        f"M={sp['M']} has the best combined utilisation: {_fmt(sp['pct_dense'])}% of the "
        f"dense peak and {_fmt(sp['pct_mem'])}% of the memory peak (score "
        f"{span(*sp['score_range'])})"
    )
    circ = _circular_note(ceil or {})
    if w not in sp["scores"]:
        return Finding("sweet_spot", title, NOT_EVALUABLE,
                       best + f". The sweep has no M={w} to test the writeup's M={w} against."
                       + circ, sp, th)  # fmt: skip
    wlo, wmed, whi = sp["scores"][w]
    if sp["tied_M"] == [w]:
        return Finding("sweet_spot", title, HOLDS,
                       best + f"; no other M comes within its spread: the writeup's M={w} "
                       "holds here." + circ, sp, th)  # fmt: skip
    if w not in sp["tied_M"]:
        return Finding(
            "sweet_spot", title, FAILS,
            best + f"; the writeup's M={w} scores {span(wlo, whi)}, below it beyond noise: "
            f"the sweet spot here is M={sp['M']}, not M={w}." + circ,
            sp, th,
        )  # fmt: skip
    others = [m for m in sp["tied_M"] if m != w]
    return Finding(
        "sweet_spot", title, INCONCLUSIVE,
        best + f"; M={w} ({span(wlo, whi)}) and M={others} are tied within their spreads: "
        "the data cannot single out a sweet spot (noise-limited)." + circ,
        sp, th,
    )  # fmt: skip


def cache_finding(roofline: pd.DataFrame, ncu_gemm: pd.DataFrame | None = None) -> Finding:
    """Warm points above 100% of the memory peak, explained by the cold-L2 counterparts
    (and NCU's true DRAM bytes where captured)."""
    warm = roofline_series(roofline, l2="warm")
    th = {"above_peak_pct": 100.0, "cache_explained_pct": CACHE_EXPLAINED}
    title = "Cache effects"
    if warm.empty or warm["pct_mem_peak"].isna().all():
        return Finding("cache", title, NOT_EVALUABLE, "No warm-L2 points with a memory ceiling.",
                       thresholds=th)  # fmt: skip
    states = {int(r["M"]): against(*rng(r, "pct_mem_peak"), 100.0, above=True)
              for _, r in warm.iterrows()}  # fmt: skip
    # "above" means strictly above 100: against(>=) reads exactly 100 as above; fine at noise
    above = [m for m, v in states.items() if v == HOLDS]
    maybe = [m for m, v in states.items() if v == INCONCLUSIVE]
    ev: dict[str, Any] = {
        "dtype": str(warm["dtype"].iloc[0]),
        "above_peak_M": above,
        "straddling_M": maybe,
        "max_pct_mem": float(warm["pct_mem_peak"].max()),
    }
    if not above:
        if maybe:
            r = warm[warm["M"] == maybe[0]].iloc[0]
            return Finding(
                "cache", title, INCONCLUSIVE,
                f"No warm point is clearly above the memory peak; M={maybe} straddle it "
                f"(M={maybe[0]}: {straddle(*rng(r, 'pct_mem_peak'), 100.0, '%')}).",
                ev, th,
            )  # fmt: skip
        return Finding(
            "cache", title, FAILS,
            f"No warm point exceeds the memory peak (max {_fmt(ev['max_pct_mem'])}%): on this "
            "device the warm loop is not served from cache beyond what the memory ceiling "
            "already delivers.",
            ev, th,
        )  # fmt: skip
    top = warm[warm["M"].isin(above)]
    text = (
        f"Warm-L2 points M={above} read above 100% of the memory peak (up to "
        f"{_fmt(top['pct_mem_peak'].max())}%): the analytic byte count includes bytes served "
        "from cache."
    )
    verdict = HOLDS
    cold = roofline_series(roofline, dtype=ev["dtype"], l2="cold")
    if not cold.empty:
        both = cold[cold["M"].isin(above)]
        if not both.empty:
            ev["cold_pct_mem"] = {int(r["M"]): float(r["pct_mem_peak"]) for _, r in both.iterrows()}
            vs = [against(*rng(r, "pct_mem_peak"), CACHE_EXPLAINED, above=False)
                  for _, r in both.iterrows()]  # fmt: skip
            verdict = all_of(*vs)
            worst = both.loc[both["pct_mem_peak"].idxmax()]
            text += (
                f" With the cache flushed before each call the same points read at most "
                f"{span(*rng(worst, 'pct_mem_peak'), '%')} — "
                + {
                    HOLDS: "the excess was cache.",
                    FAILS: "still above the peak: the memory ceiling itself looks too low.",
                    INCONCLUSIVE: f"within noise of the {CACHE_EXPLAINED:.0f}% the excess "
                    "must fall to (cannot tell whether it was all cache).",
                }.get(verdict, "")
            )
    else:
        text += " (No cold-L2 points to confirm it with a flushed cache.)"
    if ncu_gemm is not None and not ncu_gemm.empty:
        ev["ncu_dram_gbps"] = {
            int(r["M"]): float(r["dram_read_gbps"])
            for _, r in ncu_gemm.iterrows()
            if pd.notna(r.get("dram_read_gbps"))
        }
        if ev["ncu_dram_gbps"]:
            text += (
                " NCU's true DRAM read rate: "
                + ", ".join(f"M={m}: {fmt_sig(v)} GB/s" for m, v in ev["ncu_dram_gbps"].items())
                + "."
            )
    return Finding("cache", title, verdict, text, ev, th)


STAGES = (
    "below both ceilings (launch/overhead-bound)",
    "cache-assisted (L2)",
    "memory-bound",
    "compute-bound",
)


def point_regime(row: Any, ridge_ai: float | None) -> str:
    """The regime of one point, or 'uncertain (A / B)' when its spread straddles a
    threshold that separates two regimes."""
    past_ridge = ridge_ai is not None and row["ai"] >= 0.9 * ridge_ai
    d = against(*rng(row, "pct_dense_peak"), COMPUTE_BOUND) if past_ridge else FAILS
    if d == HOLDS:
        return STAGES[3]
    lo, hi = rng(row, "pct_mem_peak")
    if lo is None:
        return "unknown"
    cands = [STAGES[3]] if d == INCONCLUSIVE else []
    if lo < ON_MEMORY_LINE:
        cands.append(STAGES[0])
    if hi >= ON_MEMORY_LINE and lo <= 100:
        cands.append(STAGES[2])
    if hi > 100:
        cands.append(STAGES[1])
    if len(cands) == 1:
        return cands[0]
    return "uncertain (" + " / ".join(cands) + ")"


def regimes_from_roofline(roofline: pd.DataFrame, ridge_ai: float | None) -> list[dict[str, Any]]:
    """Classify each warm point: compute-bound (at or past 0.9 x the dense ridge and at least
    COMPUTE_BOUND % of the dense peak), cache-assisted (above 100% of the memory peak),
    memory-bound (on the memory line), else overhead/launch-bound (below both ceilings);
    'uncertain (…)' where the point's spread straddles a threshold."""
    s = roofline_series(roofline)
    return [
        {"M": int(r["M"]), "ai": float(r["ai"]), "regime": point_regime(r, ridge_ai)}
        for _, r in s.iterrows()
    ]


def _resolutions(options: list[list[str]], limit: int = 4096):
    """Every combination of per-point regime options (at most ``limit``)."""
    from itertools import islice, product

    return islice(product(*options), limit)


def _four_stage(regimes: tuple[str, ...] | list[str]) -> bool:
    """The writeup's transition on one resolved sequence: stages never go back (overhead
    -> L2 -> HBM -> compute), at least MIN_STAGES distinct ones, compute-bound last and not
    first."""
    if "unknown" in regimes:
        return False
    idx = [STAGES.index(r) for r in regimes]
    return idx == sorted(idx) and len(set(idx)) >= MIN_STAGES and idx[-1] == 3 and idx[0] != 3


def regime_finding(
    roofline: pd.DataFrame, ceil: dict[str, Any], decode: pd.DataFrame | None = None
) -> Finding:
    """The writeup's four-stage transition (overhead -> L2 -> HBM -> compute) along the
    roofline sweep: holds when at least MIN_STAGES of the stages appear in that order,
    ending compute-bound, over at least MIN_REGIME_POINTS points spanning the ridge."""
    s = roofline_series(roofline)
    th = {
        "on_memory_line_pct": ON_MEMORY_LINE,
        "compute_bound_pct": COMPUTE_BOUND,
        "compute_from_ai": "0.9 x dense ridge",
        "min_points": MIN_REGIME_POINTS,
        "min_stages": MIN_STAGES,
    }
    title = "Regime transition"
    if s.empty:
        return Finding("regimes", title, NOT_EVALUABLE, "No roofline points.", thresholds=th)
    ridge_ai, _ = _ridges(ceil)
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
    clear = [x["regime"] for x in seq if x["regime"] in STAGES]
    uncertain_M = [r["M"] for r in rows if r["regime"].startswith("uncertain")]
    ev: dict[str, Any] = {
        "dtype": str(s["dtype"].iloc[0]),
        "sequence": seq,
        "ridge_ai": ridge_ai,
        "n_points": len(rows),
        "stages_seen": list(dict.fromkeys(clear)),
        "uncertain_M": uncertain_M,
        "peak_independent": ceil.get("peak_independent", True),
    }
    spans_ridge = ridge_ai is not None and s["ai"].min() < ridge_ai <= s["ai"].max()
    if len(rows) < MIN_REGIME_POINTS or not spans_ridge:
        why = []
        if len(rows) < MIN_REGIME_POINTS:
            why.append(f"{len(rows)} points, at least {MIN_REGIME_POINTS} needed")
        if ridge_ai is None:
            why.append("no dense ridge (no compute or memory ceiling)")
        elif not spans_ridge:
            why.append(
                f"AI {_fmt(s['ai'].min())}–{_fmt(s['ai'].max())} does not span the ridge at "
                f"{_fmt(ridge_ai)}"
            )
        return Finding("regimes", title, NOT_EVALUABLE,
                       text + " Too short a sweep to test the four-stage transition: "
                       + "; ".join(why) + " (extend gemm.M).", ev, th)  # fmt: skip
    # every way the straddling points could resolve: decided only if all agree
    options = [
        [r["regime"]]
        if r["regime"] in STAGES
        else [st for st in STAGES if st in r["regime"]] or ["unknown"]
        for r in rows
    ]
    outcomes = {_four_stage(c) for c in _resolutions(options)}
    best_M = int(s.loc[s["tflops"].idxmax(), "M"])
    comp = [r["M"] for r in rows if r["regime"] == STAGES[3]]
    circular = not ev["peak_independent"] and comp == [best_M]
    stages = len(set(clear))
    if outcomes == {True} and circular:
        verdict = INCONCLUSIVE
        text += (
            " The only compute-bound point is the sweep's best, which reads 100% of a ceiling "
            "taken from the sweep itself (circular): the compute-bound stage is not measured "
            "independently."
        )
    elif outcomes == {True}:
        verdict = HOLDS
        text += (
            f" {stages} of the writeup's 4 stages appear, in its order "
            "(overhead → L2 → HBM → compute), ending compute-bound."
        )
    elif outcomes == {False}:
        verdict = FAILS
        order = [STAGES.index(x) for x in clear]
        what = (
            "the stages do not appear in the writeup's order (overhead → L2 → HBM → compute)"
            if order != sorted(order)
            else f"only {stages} of its 4 stages {'appears' if stages == 1 else 'appear'}"
            + ("" if clear and clear[-1] == STAGES[3] else ", not ending compute-bound")
        )
        text += f" This differs from the writeup's four-stage transition: {what}."
    else:
        verdict = INCONCLUSIVE
        text += (
            f" Whether this is the writeup's four-stage transition depends on M={uncertain_M}, "
            "whose spread straddles a regime threshold: within noise."
        )
    return Finding("regimes", title, verdict, text + _circular_note(ceil), ev, th)


# ---- decode, kernel inventory and NCU --------------------------------------------------------

UTIL_HIGH = 50.0  # GPU-Util at or above this reads as "busy"
WORK_LOW = 10.0  # NCU SM / DRAM throughput at or below this is "mostly idle"
GEMV_LOW = 0.10  # GEMV share below this: the GEMV path is gone
TC_HIGH = 0.50  # tensor-core share above this: the tensor-core path dominates
ATTN_LOW = 0.05  # attention below this share of decode time is never the bottleneck
SECOND_ORDER = 0.5  # attention's share below this x the largest class's is second-order
OVERHEAD = 2.0  # measured TPOT at least this many times the napkin: overhead-dominated
OUTSIDE_OPS = 0.5  # more than this fraction of the step outside ops: framework overhead
FLAT, PROPORTIONAL = 0.3, 0.7  # TPOT-vs-batch elasticity bounds (see decode_regimes)
MIN_EFFICIENCY = 0.5
SUPERLINEAR = 1.05


def _lab1b_value(ncu_lab1b: pd.DataFrame | None, metric: str, batch: int) -> float | None:
    if ncu_lab1b is None or f"b{batch}" not in ncu_lab1b.columns:
        return None
    row = ncu_lab1b[ncu_lab1b["metric"] == metric]
    if row.empty or pd.isna(row[f"b{batch}"].iloc[0]):
        return None
    return float(row[f"b{batch}"].iloc[0])


def _lab1b_range(
    ncu_lab1b: pd.DataFrame | None,
    metric: str,
    batch: int,
    launches: pd.DataFrame | None = None,
) -> tuple[float | None, float | None]:
    """(lo, hi) of a Lab 1b metric at ``batch``: min / max over the captured launches when
    the tidy table (tables/ncu.csv) is at hand, else the Lab 1b value itself."""
    v = _lab1b_value(ncu_lab1b, metric, batch)
    if v is None:
        return None, None
    if (
        launches is not None
        and not launches.empty
        and {"batch", "metric", "value"} <= set(launches.columns)
    ):
        sel = launches[(launches["batch"] == batch) & (launches["metric"] == metric)]
        sel = sel.assign(value=pd.to_numeric(sel["value"], errors="coerce"))
        sel = sel.dropna(subset=["value"])
        # the Lab 1b value is the median over the primary kernel's launches: that kernel's
        # launches (not other kernels' captured beside it) give its range
        groups = [g for _, g in sel.groupby("kernel")] if "kernel" in sel else [sel]
        groups = [g for g in groups if len(g) > 1]
        if groups:
            g = min(groups, key=lambda g: abs(float(g["value"].median()) - v))
            lo, hi = float(g["value"].min()), float(g["value"].max())
            if lo <= v <= hi:
                return lo, hi
    return v, v


def gpu_util_finding(
    decode: pd.DataFrame | None,
    ncu_lab1b: pd.DataFrame | None,
    ncu_reasons: list[str] | None = None,
    batch: int = 1,
    ncu_launches: pd.DataFrame | None = None,
) -> Finding:
    """NVML GPU-Util beside NCU's SM and DRAM throughput at batch 1 (writeup: 89% vs 1.13%
    SM and 1.75% DRAM)."""
    th = {"util_high_pct": UTIL_HIGH, "work_low_pct": WORK_LOW}
    title = "GPU-Util vs real work"
    util, why, row = None, "no decode data", None
    if decode is not None and not decode.empty:
        rows = decode[decode["batch"] == batch]
        if not rows.empty:
            row = rows.iloc[0]
            util = _num(row.get("gpu_util_pct"))
            why = row.get("gpu_util_reason") if "gpu_util_reason" in row else None
    u_lo, u_hi = rng(row, "gpu_util_pct") if util is not None else (None, None)
    metric, sm_label = "sm_throughput", "Compute (SM) Throughput"
    if _lab1b_value(ncu_lab1b, metric, batch) is None:
        metric, sm_label = "sm_busy", "SM Busy"
    sm_lo, sm_hi = _lab1b_range(ncu_lab1b, metric, batch, ncu_launches)
    dr_lo, dr_hi = _lab1b_range(ncu_lab1b, "dram_throughput", batch, ncu_launches)
    ev = {
        "batch": batch,
        "gpu_util_pct": util,
        "gpu_util_range": [u_lo, u_hi],
        "ncu_sm_pct": _lab1b_value(ncu_lab1b, metric, batch),
        "ncu_sm_range": [sm_lo, sm_hi],
        "ncu_sm_metric": sm_label,
        "ncu_dram_pct": _lab1b_value(ncu_lab1b, "dram_throughput", batch),
        "ncu_dram_range": [dr_lo, dr_hi],
    }
    missing = []
    if util is None:
        missing.append(f"GPU-Util unavailable ({why or 'not sampled'})")
    if sm_lo is None or dr_lo is None:
        reasons = sorted(set(ncu_reasons or []))
        missing.append("NCU Speed-of-Light not captured" + (
            f" ({'; '.join(reasons)})" if reasons else ""))  # fmt: skip
    if missing:
        return Finding("gpu_util", title, NOT_EVALUABLE,
                       f"Cannot be evaluated on this run at batch {batch}: "
                       + "; ".join(missing) + ".", ev, th)  # fmt: skip
    parts = {
        "GPU-Util busy": against(u_lo, u_hi, UTIL_HIGH),
        f"{sm_label} low": against(sm_lo, sm_hi, WORK_LOW, above=False),
        "DRAM low": against(dr_lo, dr_hi, WORK_LOW, above=False),
    }
    verdict = all_of(*parts.values())
    ev["parts"] = parts
    text = (
        f"At batch={batch}, GPU-Util reads {span(u_lo, u_hi, '%')} while NCU shows the "
        f"attention kernel at {span(sm_lo, sm_hi, '%')} {sm_label} and "
        f"{span(dr_lo, dr_hi, '%')} of DRAM throughput: "
    )
    text += {
        HOLDS: "GPU-Util says busy, the kernel is mostly idle — GPU-Util only measures "
        "whether any kernel is running.",
        FAILS: "the two do not disagree here.",
        INCONCLUSIVE: "within noise of the thresholds ("
        + ", ".join(k for k, v in parts.items() if v == INCONCLUSIVE)
        + " straddles its threshold).",
    }[verdict]
    return Finding("gpu_util", title, verdict, text, ev, th)


def class_shares_by_batch(
    classes: pd.DataFrame, phase: str = "decode", col: str = "share"
) -> pd.DataFrame:
    """batch x class table of one phase's shares (``col``: share, share_lo or share_hi)."""
    c = classes[classes["phase"] == phase]
    if col not in c.columns:
        col = "share"
    c = c.assign(_v=c[col].fillna(c["share"]))
    return c.pivot_table(index="batch", columns="class", values="_v", aggfunc="sum")


def class_ranges(classes: pd.DataFrame, name: str, phase: str = "decode") -> dict[int, tuple]:
    """batch -> (lo, share, hi) of one class (0 where the class has no time)."""
    mid = class_shares_by_batch(classes, phase).fillna(0.0)
    lo = class_shares_by_batch(classes, phase, "share_lo").fillna(0.0)
    hi = class_shares_by_batch(classes, phase, "share_hi").fillna(0.0)
    out = {}
    for b in mid.index:
        m = float(mid.loc[b].get(name, 0.0))
        out[int(b)] = (
            min(float(lo.loc[b].get(name, m)), m),
            m,
            max(float(hi.loc[b].get(name, m)), m),
        )
    return out


def _pr(t: tuple) -> str:
    """A share (lo, share, hi) as a percentage: '12%', '4.5%', or '4.5% (2.5–6.5%)'."""
    lo, mid, hi = t

    def p(x: float) -> str:
        return f"{100 * x:.1f}" if 0 < x < 0.1 else f"{100 * x:.0f}"

    if p(lo) == p(hi):
        return f"{p(mid)}%"
    return f"{p(mid)}% ({p(lo)}–{p(hi)}%)"


def matrix_engine(device: dict[str, Any] | None, model_dtype: str | None) -> dict[str, Any]:
    """Whether this run's decode has a matrix-engine path and what counts as it.

    CUDA: tensor cores (class tc_gemm). CPU: only with a matrix engine (AMX, cpuinfo
    amx_bf16 / amx_int8, which oneDNN uses for bf16 / int8 matmuls) and a bf16 / int8 decode
    model, where every matmul with more than one row (class gemm) runs on it. Otherwise
    ``reason`` says why the switch cannot be evaluated."""
    device = device or {}
    if device.get("kind", "cpu") == "cuda":
        return {"path": "tensor-core GEMM", "class": "tc_gemm", "reason": None}
    me = device.get("cpu_matrix_engine") or {}
    dot = ", ".join(me.get("bf16_dot_product") or [])
    if not me.get("amx"):
        why = "no matrix engine on this CPU (no AMX: cpuinfo has no amx_bf16 / amx_int8)"
        if dot:
            why += f"; {dot} are bf16 dot-product instructions, not a matrix engine"
        if not me:
            why = "no matrix engine known for this CPU (device.json records no AMX flags)"
        return {"path": None, "class": None, "reason": why}
    if (model_dtype or "").lower() not in ("bf16", "int8"):
        return {
            "path": None,
            "class": None,
            "reason": f"this CPU has AMX ({', '.join(me.get('amx_flags') or [])}), but the decode "
            f"model runs in {model_dtype or 'an unknown dtype'}; AMX runs bf16 / int8 matmuls "
            "(set model.dtype: bf16)",
        }
    return {"path": "AMX matrix-engine GEMM (bf16 matmuls with M > 1)", "class": "gemm",
            "reason": None}  # fmt: skip


def gemv_switch_finding(
    classes: pd.DataFrame | None,
    device_kind: str | dict[str, Any],
    model_dtype: str | None = None,
) -> Finding:
    """The batch where GEMV falls below GEMV_LOW and the matrix-engine path passes TC_HIGH
    (writeup: between batch 16 and 32, on CUDA cores -> tensor cores). ``device_kind``: the
    run's device.json (or just its kind)."""
    device = device_kind if isinstance(device_kind, dict) else {"kind": device_kind}
    th = {"gemv_low": GEMV_LOW, "tc_high": TC_HIGH}
    title = "GEMV → tensor-core GEMM switch"
    if classes is None or classes.empty:
        return Finding("gemv_switch", title, NOT_EVALUABLE, "No kernel inventory on this run.",
                       thresholds=th)  # fmt: skip
    me = matrix_engine(device, model_dtype)
    gemv = class_ranges(classes, "gemv")
    batches = sorted(gemv)
    ev: dict[str, Any] = {
        "gemv_share": {b: gemv[b][1] for b in batches},
        "gemv_range": {b: [gemv[b][0], gemv[b][2]] for b in batches},
        "matrix_engine": me,
    }
    gemv_gone = next((b for b in batches if gemv[b][2] < GEMV_LOW), None)
    ev["gemv_gone_batch"] = gemv_gone
    if me["class"] is None:
        gone = (
            f" The GEMV share falls below {100 * GEMV_LOW:.0f}% at batch {gemv_gone} "
            f"({_pr(gemv[gemv_gone])}; batch {batches[0]}: {_pr(gemv[batches[0]])}): from "
            "there matmuls are GEMMs, on the same vector units."
            if gemv_gone is not None
            else f" The GEMV share never falls below {100 * GEMV_LOW:.0f}%."
        )
        return Finding("gemv_switch", title, NOT_EVALUABLE,
                       f"Not evaluable here: {me['reason']}.{gone}", ev, th)  # fmt: skip
    tc = class_ranges(classes, me["class"])
    ev["tc_share"] = {b: tc[b][1] for b in batches}
    ev["tc_range"] = {b: [tc[b][0], tc[b][2]] for b in batches}

    def state(b: int) -> str:
        g = against(gemv[b][0], gemv[b][2], GEMV_LOW, above=False)
        t = against(tc[b][0], tc[b][2], TC_HIGH)
        return {HOLDS: "switched", FAILS: "not", INCONCLUSIVE: "uncertain"}[all_of(g, t)]

    states = {b: state(b) for b in batches}
    ev["states"] = states
    switch = next((b for b in batches if states[b] == "switched"), None)
    ev["switch_batch"] = switch
    path = me["path"]
    if switch is not None:
        i = batches.index(switch)
        before = batches[i - 1] if i else None
        ev["before_batch"] = before
        if before is None:
            return Finding(
                "gemv_switch", title, FAILS,
                f"The {path} already dominates at the smallest batch, {switch} "
                f"({_pr(tc[switch])}): no GEMV stage to switch from.",
                ev, th,
            )  # fmt: skip
        text = (
            f"The matmul path changes between batch {before} and {switch}: GEMV "
            f"{_pr(gemv[before])} → {_pr(gemv[switch])} and {path} {_pr(tc[before])} → "
            f"{_pr(tc[switch])} of decode time."
        )
        if states[before] == "uncertain":
            return Finding("gemv_switch", title, INCONCLUSIVE,
                           text + f" Batch {before} itself straddles the thresholds: the switch "
                           "may come one batch earlier (within noise).", ev, th)  # fmt: skip
        return Finding("gemv_switch", title, HOLDS, text, ev, th)
    unsure = [b for b in batches if states[b] == "uncertain"]
    if unsure:
        b = unsure[0]
        return Finding(
            "gemv_switch", title, INCONCLUSIVE,
            f"At batch {b} GEMV is {_pr(gemv[b])} and {path} {_pr(tc[b])} of decode time: "
            f"their spread over the profiled steps straddles the thresholds (GEMV < "
            f"{100 * GEMV_LOW:.0f}%, {path} > {100 * TC_HIGH:.0f}%).",
            ev, th,
        )  # fmt: skip
    best = max(batches, key=lambda b: tc[b][1])
    return Finding(
        "gemv_switch", title, FAILS,
        f"No batch has GEMV below {100 * GEMV_LOW:.0f}% with {path} above "
        f"{100 * TC_HIGH:.0f}% (largest {path} share {_pr(tc[best])} at batch {best}).",
        ev, th,
    )  # fmt: skip


def _batch_list(bs: list[int]) -> str:
    return f"batch {bs[0]}" if len(bs) == 1 else f"batches {', '.join(map(str, bs))}"


def largest_classes(classes: pd.DataFrame, phase: str = "decode") -> list[dict[str, Any]]:
    """Per run of consecutive batches with the same largest class: the class, the batches
    and its share range over them."""
    w = class_shares_by_batch(classes, phase).fillna(0.0)
    out: list[dict[str, Any]] = []
    for b in w.index:
        c = str(w.loc[b].idxmax())
        if out and out[-1]["class"] == c:
            out[-1]["batches"].append(int(b))
            out[-1]["shares"].append(float(w.loc[b, c]))
        else:
            out.append({"class": c, "batches": [int(b)], "shares": [float(w.loc[b, c])]})
    return out


def largest_text(groups: list[dict[str, Any]]) -> str:
    """'gemv at batch 1 (89%) and gemm at batches 4, 16, 64 (80–86%)'."""
    parts = []
    for g in groups:
        lo, hi = min(g["shares"]), max(g["shares"])
        pct = f"{100 * lo:.0f}%" if f"{100 * lo:.0f}" == f"{100 * hi:.0f}" else (
            f"{100 * lo:.0f}–{100 * hi:.0f}%")  # fmt: skip
        parts.append(f"{g['class']} at {_batch_list(g['batches'])} ({pct})")
    return " and ".join(parts) if len(parts) <= 2 else ", ".join(parts[:-1]) + " and " + parts[-1]


def attention_finding(classes: pd.DataFrame | None) -> Finding:
    """Attention's share of decode time across batches (writeup: < 3%, never the
    bottleneck): holds when every batch's share (its max over the profiled steps) is below
    ATTN_LOW, does not hold when some batch's share (its min) is at or above it."""
    th = {"attention_low": ATTN_LOW, "second_order": SECOND_ORDER}
    title = "Attention is never the bottleneck"
    if classes is None or classes.empty:
        return Finding("attention", title, NOT_EVALUABLE, "No kernel inventory on this run.",
                       thresholds=th)  # fmt: skip
    att = class_ranges(classes, "attention")
    groups = largest_classes(classes)
    batches = sorted(att)
    verdicts = {b: against(att[b][0], att[b][2], ATTN_LOW, above=False) for b in batches}
    verdict = all_of(*verdicts.values())
    worst = max(batches, key=lambda b: att[b][1])
    # second-order: attention's worst share (its max over the profiled steps) stays below
    # SECOND_ORDER x the largest class's largest share
    largest_share = max(max(g["shares"]) for g in groups)
    ev = {
        "attention_share": {b: att[b][1] for b in batches},
        "attention_range": {b: [att[b][0], att[b][2]] for b in batches},
        "top_class": {b: g["class"] for g in groups for b in g["batches"]},
        "largest": groups,
        "largest_share": largest_share,
        "second_order": att[worst][2] < SECOND_ORDER * largest_share,
    }
    text = (
        f"Attention takes at most {_pr(att[worst])} of decode time (batch {worst}); the "
        f"largest class is {largest_text(groups)}. "
    )
    if verdict == HOLDS:
        text += (f"Below {100 * ATTN_LOW:.0f}% at every batch: decode-latency work belongs on "
                 "the largest class, not attention.")  # fmt: skip
    elif verdict == FAILS:
        over = [b for b, v in verdicts.items() if v == FAILS]
        text += (
            f"At {_batch_list(over)} attention is at or above {100 * ATTN_LOW:.0f}% of decode "
            "time: a real share, though "
            + ("still far below the largest class." if ev["second_order"]
               else "comparable to the largest class.")
        )  # fmt: skip
    else:
        b = next(b for b, v in verdicts.items() if v == INCONCLUSIVE)
        text += (
            f"At batch {b} attention's share over the profiled steps, "
            f"{straddle(100 * att[b][0], 100 * att[b][2], 100 * ATTN_LOW, '%')}: within noise."
        )
    return Finding("attention", title, verdict, text, ev, th)


def decode_overhead_finding(
    decode: pd.DataFrame | None, batch: int = 1, device_kind: str = "cpu"
) -> Finding:
    """Measured TPOT vs the napkin bound at batch 1 (writeup: ~12 ms vs 1.79 ms on H100),
    and where the gap is: the profiled steps' device time inside ops / kernels vs the step,
    which says whether it is framework overhead (outside ops) or slow ops."""
    th = {"overhead_ratio": OVERHEAD, "outside_ops_share": OUTSIDE_OPS}
    title = "Decode overhead vs the napkin bound"
    if decode is None or decode.empty:
        return Finding("decode_overhead", title, NOT_EVALUABLE, "No decode data on this run.",
                       thresholds=th)  # fmt: skip
    rows = decode[(decode["batch"] == batch) & (decode["status"] == "ok")]
    if rows.empty or pd.isna(rows["napkin_ms"].iloc[0]) or pd.isna(rows["tpot_ms_p50"].iloc[0]):
        why = f"No measured batch {batch} with a napkin bound."
        return Finding("decode_overhead", title, NOT_EVALUABLE, why, thresholds=th)
    r = rows.iloc[0]
    tpot = float(r["tpot_ms_p50"])
    t_lo, t_hi = rng(r, "tpot_ms_p50")
    n_lo, n_hi = rng(r, "napkin_ms")
    ratio = tpot / float(r["napkin_ms"])
    lo, hi = t_lo / n_hi, t_hi / n_lo
    busy = _num(r.get("profiled_busy_ms"))
    step = _num(r.get("profiled_step_ms"))
    ev = {
        "batch": batch,
        "tpot_ms": tpot,
        "tpot_range_ms": [t_lo, t_hi],
        "napkin_ms": float(r["napkin_ms"]),
        "ratio": ratio,
        "ratio_range": [lo, hi],
        "bw_basis": r.get("bw_basis"),
        "profiled_busy_ms": busy,
        "profiled_step_ms": step,
    }
    ratio_v = against(lo, hi, OVERHEAD)
    ev["ratio_verdict"] = ratio_v
    text = (
        f"At batch {batch} a decode step takes {_fmt(tpot)} ms (p10–p90 {span(t_lo, t_hi)}) "
        f"against a napkin lower bound of {span(n_lo, n_hi)} ms (weights + KV read once at "
        f"{_fmt(r['bw_gbps'])} GB/s, {r.get('bw_basis')}): {span(lo, hi)}× the bound. "
    )
    if ratio_v == FAILS:
        text += (
            "The step is close to the memory bound: little overhead on top of streaming the "
            "weights."
        )
        return Finding("decode_overhead", title, FAILS, text, ev, th)
    if ratio_v == INCONCLUSIVE:
        text += f"Its ratio {straddle(lo, hi, OVERHEAD, '×')}: within noise of the threshold."
        return Finding("decode_overhead", title, INCONCLUSIVE, text, ev, th)
    what = "kernels" if device_kind == "cuda" else "aten ops"
    if busy is None:
        text += (
            "Well above the bound; the writeup reads the gap as framework overhead, but no "
            "profiled step time is at hand to say whether it is outside the ops (framework) or "
            "inside them."
        )
        ev["framework_dominates"] = NOT_EVALUABLE
        return Finding("decode_overhead", title, HOLDS, text, ev, th)
    outside = max(0.0, tpot - busy)
    # share of the step outside ops for a step anywhere in its p10-p90 range
    s_lo, s_hi = max(0.0, 1 - busy / t_lo), max(0.0, 1 - busy / t_hi)
    framework = against(s_lo, s_hi, OUTSIDE_OPS)
    ev.update(outside_ops_ms=outside, outside_ops_share=outside / tpot,
              outside_ops_share_range=[s_lo, s_hi], framework_dominates=framework)  # fmt: skip
    text += (
        f"The profiled steps spent {_fmt(busy)} ms per step inside {what}"
        + (f" ({_fmt(step)} ms per step under the profiler)" if step else "")
        + f", so {_fmt(outside)} ms ({span(100 * s_lo, 100 * s_hi, '%')}) of the timed step is "
        "outside them (Python, module dispatch, sampling, launches): "
    )
    # the profiled time inside ops against the timed step, each as its interval (the
    # profile's median has no recorded spread: exact); beyond noise when they do not overlap
    b_lo, b_hi = rng(r, "profiled_busy_ms")
    ev["profile_exceeds_step"] = busy > t_hi and not overlap((b_lo, b_hi), (t_lo, t_hi))
    if ev["profile_exceeds_step"]:
        text += (
            f"(the profiled {what} took longer than the timed step: the machine was slower "
            "while profiling, or busy with something else — the two measurements disagree "
            "beyond noise) "
        )
    text += {
        HOLDS: "framework overhead dominates, as the writeup found.",
        FAILS: f"the gap to the bound is inside the {what} themselves (they run below the "
        "memory bandwidth the napkin assumes), not framework overhead as the writeup found.",
        INCONCLUSIVE: f"whether framework overhead dominates is within noise (outside share "
        f"{straddle(100 * s_lo, 100 * s_hi, 100 * OUTSIDE_OPS, '%')}).",
    }[framework]
    return Finding("decode_overhead", title, framework, text, ev, th)


def decode_regimes(decode: pd.DataFrame | None) -> list[dict[str, Any]]:
    """TPOT's elasticity to batch between consecutive measured batches:
    e = log(TPOT ratio) / log(batch ratio), with its range from both batches' p10 / p90.
    e < FLAT: TPOT ~flat (weights streamed once serve the whole batch: memory/overhead-
    bound); e >= PROPORTIONAL: TPOT grows with the batch (compute-bound); in between:
    transition; 'uncertain' when the range crosses a bound."""
    if decode is None:
        return []
    ok = decode[decode["status"] == "ok"].sort_values("batch")
    out = []
    for (_, a), (_, b) in zip(ok.iterrows(), ok.iloc[1:].iterrows(), strict=False):
        lb = math.log(b["batch"] / a["batch"])
        e = math.log(b["tpot_ms_p50"] / a["tpot_ms_p50"]) / lb
        a_lo, a_hi = rng(a, "tpot_ms_p50")
        b_lo, b_hi = rng(b, "tpot_ms_p50")
        e_lo, e_hi = math.log(b_lo / a_hi) / lb, math.log(b_hi / a_lo) / lb

        def name(x: float) -> str:
            return (
                "flat (memory/overhead-bound)"
                if x < FLAT
                else "proportional (compute-bound)"
                if x >= PROPORTIONAL
                else "transition"
            )

        regime = name(e) if name(e_lo) == name(e_hi) else "uncertain"
        out.append({"from": int(a["batch"]), "to": int(b["batch"]), "elasticity": e,
                    "elasticity_range": [e_lo, e_hi], "regime": regime,
                    "regime_at_median": name(e)})  # fmt: skip
    return out


def operating_point(decode: pd.DataFrame | None, min_efficiency: float = MIN_EFFICIENCY):
    """The largest measured batch beyond the smallest whose scaling efficiency is still
    >= ``min_efficiency`` over its whole range (writeup: batch 64, before efficiency
    collapses to ~47% at 128). Efficiencies above SUPERLINEAR are flagged as noise and not
    used; a larger batch whose range straddles the threshold makes the choice noise-limited.
    None without a decode sweep that has batch 1."""
    if decode is None or decode.empty:
        return None
    ok = decode[(decode["status"] == "ok") & decode["scaling_efficiency"].notna()]
    ok = ok.sort_values("batch")
    if ok.empty:
        return None
    b0 = int(ok["batch"].min())
    cand, flagged, unsure = [], [], []
    for _, r in ok.iterrows():
        if int(r["batch"]) == b0:
            continue
        lo, hi = rng(r, "scaling_efficiency")
        e = float(r["scaling_efficiency"])
        if e > SUPERLINEAR:
            flagged.append({"batch": int(r["batch"]), "efficiency": e, "range": [lo, hi]})
            continue
        v = against(lo, hi, min_efficiency)
        if v == HOLDS:
            cand.append(r)
        elif v == INCONCLUSIVE:
            unsure.append(int(r["batch"]))
    base = ok[ok["batch"] == b0].iloc[0]
    out: dict[str, Any] = {
        "min_efficiency": min_efficiency,
        "baseline_batch": b0,
        "flagged": flagged,
        "uncertain_batches": unsure,
    }
    if not cand:
        out.update(batch=None, noise_limited=bool(unsure))
        return out
    r = cand[-1]
    lo, hi = rng(r, "scaling_efficiency")
    t_lo, t_hi = rng(r, "tokens_per_s")
    out.update(
        batch=int(r["batch"]),
        tpot_ms=float(r["tpot_ms_p50"]),
        tokens_per_s=float(r["tokens_per_s"]),
        tokens_per_s_range=[t_lo, t_hi],
        efficiency=float(r["scaling_efficiency"]),
        efficiency_range=[lo, hi],
        throughput_multiple=float(r["tokens_per_s"] / base["tokens_per_s"]),
        noise_limited=any(b > int(r["batch"]) for b in unsure),
    )
    return out
