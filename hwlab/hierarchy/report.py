"""The findings' "§1 — Memory hierarchy" section and its two headlines (pure on tables).

- :func:`principle_finding` — the writeup's mental model, "every order-of-magnitude drop
  in bandwidth is also an order-of-magnitude jump in latency", evaluated on each step
  between neighbouring measured levels: bandwidth drop D = B(faster) / B(slower), latency
  jump J = L(slower) / L(faster). The step follows the principle when the two agree in
  orders of magnitude: |log10 J − log10 D| <= TOLERANCE_DECADES (half a decade). The
  interval of that difference comes from each level's plateau spread, so a step whose
  interval straddles the tolerance is inconclusive. The headline holds when every step
  does (H.all_of).
- :func:`knees_finding` — the detected capacities against what the machine reports:
  |detected / reported − 1| <= KNEE_TOLERANCE (15%) per level, the interval from the grid
  points bracketing each knee; a reported level without a knee does not hold.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from hwlab import headlines as H
from hwlab.hierarchy.table import fmt_bw, fmt_bytes

TOLERANCE_DECADES = 0.5
KNEE_TOLERANCE = 0.15
SECTION = "§1 — Memory hierarchy"
MEMORY_LEVELS = ("DRAM", "HBM")


def load(folder: str | Path) -> pd.DataFrame | None:
    p = Path(folder) / "tables" / "hierarchy.csv"
    return pd.read_csv(p) if p.is_file() else None


def _num(v: Any) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def measured_levels(table: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Levels with both a bandwidth and a latency, in hierarchy order (fastest first)."""
    if table is None or table.empty:
        return []
    out = []
    for _, r in table.iterrows():
        if r.get("status") != "ok":
            continue
        b, lat = _num(r.get("read_gbps")), _num(r.get("latency_ns"))
        if b is None or lat is None:
            continue
        out.append(
            {
                "level": r["level"],
                "bw": b,
                "bw_lo": _num(r.get("read_gbps_lo")) or b,
                "bw_hi": _num(r.get("read_gbps_hi")) or b,
                "lat": lat,
                "lat_lo": _num(r.get("latency_ns_lo")) or lat,
                "lat_hi": _num(r.get("latency_ns_hi")) or lat,
            }
        )
    return out


def step(a: dict[str, Any], b: dict[str, Any], tol: float = TOLERANCE_DECADES) -> dict[str, Any]:
    """One step a (faster) → b (slower): the drop, the jump, their difference in decades
    with its interval, and the verdict of |difference| <= ``tol``."""
    d = a["bw"] / b["bw"]
    j = b["lat"] / a["lat"]
    d_lo, d_hi = a["bw_lo"] / b["bw_hi"], a["bw_hi"] / b["bw_lo"]
    j_lo, j_hi = b["lat_lo"] / a["lat_hi"], b["lat_hi"] / a["lat_lo"]
    diff = math.log10(j) - math.log10(d)
    lo, hi = math.log10(j_lo) - math.log10(d_hi), math.log10(j_hi) - math.log10(d_lo)
    # |diff| over its interval
    abs_lo = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
    abs_hi = max(abs(lo), abs(hi))
    return {
        "from": a["level"],
        "to": b["level"],
        "bandwidth_drop": d,
        "latency_jump": j,
        "decades_apart": diff,
        "decades_apart_interval": [lo, hi],
        "verdict": H.against(abs_lo, abs_hi, tol, above=False),
    }


def principle_finding(table: pd.DataFrame | None, reason: str | None = None) -> H.Finding:
    """The order-of-magnitude principle on this run's levels (see the module docstring)."""
    key, title = "hierarchy_principle", "Bandwidth drop ↔ latency jump (§1 mental model)"
    th = {"tolerance_decades": TOLERANCE_DECADES}
    lv = measured_levels(table)
    if len(lv) < 2:
        why = reason or (
            "the hierarchy stage measured fewer than two levels with both a bandwidth and a latency"
        )
        return H.Finding(key, title, H.NOT_EVALUABLE, f"Not evaluable here: {why}.", {}, th)
    steps = [step(a, b) for a, b in zip(lv, lv[1:], strict=False)]
    first, last = lv[0], lv[-1]
    whole = step(first, last)
    verdict = H.all_of(*(s["verdict"] for s in steps))
    parts = [
        f"{s['from']} → {s['to']}: bandwidth ÷{s['bandwidth_drop']:.3g}, latency "
        f"×{s['latency_jump']:.3g} ({s['decades_apart']:+.2f} decades apart: {s['verdict']})"
        for s in steps
    ]
    text = (
        "Each step down the measured hierarchy, bandwidth drop against latency jump: "
        + "; ".join(parts)
        + f". Across the whole hierarchy ({first['level']} → {last['level']}) bandwidth falls "
        f"{whole['bandwidth_drop']:.3g}× while latency rises {whole['latency_jump']:.3g}×. "
    )
    held = [f"{s['from']}→{s['to']}" for s in steps if s["verdict"] == H.HOLDS]
    failed = [f"{s['from']}→{s['to']}" for s in steps if s["verdict"] == H.FAILS]
    if verdict == H.HOLDS:
        text += "Every drop comes with a latency jump of the same order of magnitude."
    elif verdict == H.FAILS:
        text += (
            f"The drops {', '.join(failed)} do not move latency and bandwidth by the same "
            "order of magnitude" + (f" (those that do: {', '.join(held)})" if held else "") + "."
        )
    else:
        text += "The measured spread straddles the tolerance on some step: too noisy to judge."
    return H.Finding(
        key,
        title,
        verdict,
        text,
        {"steps": steps, "whole": whole, "levels": lv},
        th,
    )


def knee_checks(table: pd.DataFrame | None, tol: float = KNEE_TOLERANCE) -> list[dict[str, Any]]:
    """Per cache level: the knee used for the goal, its error interval and verdict.

    CPU: the latency knee (one thread) against one instance; GPU: the L2 knee of the
    bandwidth sweep against torch's L2_cache_size (the issue's goals), the L1/shared knee
    of the chase for information (``goal`` False)."""
    out = []
    if table is None:
        return out
    for _, r in table.iterrows():
        if r.get("status") != "ok" or r["level"] in MEMORY_LEVELS:
            continue
        rep = _num(r.get("reported_bytes"))
        if rep is None:
            continue
        gpu_l2 = r["level"] == "L2" and str(r.get("method", "")).startswith("Triton")
        src = "bandwidth" if gpu_l2 else "latency"
        rep_used = _num(r.get("bandwidth_reported_bytes")) if gpu_l2 else rep
        kn, lo, hi = (
            _num(r.get(f"{src}_knee_bytes")),
            _num(r.get(f"{src}_knee_lo")),
            _num(r.get(f"{src}_knee_hi")),
        )
        goal = not str(r["level"]).startswith("L1/")
        if kn is None or not rep_used:
            out.append(
                {
                    "level": r["level"],
                    "source": src,
                    "reported": rep_used,
                    "detected": None,
                    "error": None,
                    "verdict": H.FAILS,
                    "goal": goal,
                }
            )
            continue
        e_lo, e_hi = lo / rep_used - 1, hi / rep_used - 1
        a_lo = 0.0 if e_lo <= 0 <= e_hi else min(abs(e_lo), abs(e_hi))
        a_hi = max(abs(e_lo), abs(e_hi))
        out.append(
            {
                "level": r["level"],
                "source": src,
                "reported": rep_used,
                "detected": kn,
                "error": kn / rep_used - 1,
                "error_interval": [e_lo, e_hi],
                "verdict": H.against(a_lo, a_hi, tol, above=False),
                "goal": goal,
            }
        )
    return out


def knees_finding(table: pd.DataFrame | None, reason: str | None = None) -> H.Finding:
    key, title = "hierarchy_knees", "Cache knees where the machine says its caches end"
    th = {"knee_tolerance": KNEE_TOLERANCE}
    checks = knee_checks(table)
    goals = [c for c in checks if c["goal"]]
    if not goals:
        why = reason or "no cache level with a reported size was measured"
        return H.Finding(key, title, H.NOT_EVALUABLE, f"Not evaluable here: {why}.", {}, th)
    verdict = H.all_of(*(c["verdict"] for c in goals))
    parts = []
    for c in checks:
        if c["detected"] is None:
            parts.append(f"{c['level']}: no knee near {fmt_bytes(c['reported'])} ({c['verdict']})")
        else:
            parts.append(
                f"{c['level']}: {fmt_bytes(c['detected'])} by the {c['source']} sweep vs "
                f"{fmt_bytes(c['reported'])} reported ({100 * c['error']:+.0f}%, "
                f"{c['verdict']}{'' if c['goal'] else ', not a goal'})"
            )
    text = (
        f"Knees within ±{100 * KNEE_TOLERANCE:.0f}% of the reported sizes? "
        + "; ".join(parts)
        + "."
    )
    if verdict == H.FAILS:
        text += (
            " A knee far below the reported size means this process effectively gets less of "
            "that cache (shared with other cores or tenants, partitioned, or — for a random "
            "chase — limited by TLB reach when the host backs memory with small pages)."
        )
    return H.Finding(key, title, verdict, text, {"checks": checks}, th)


def memory_reason(folder: str | Path) -> str | None:
    """Why the hierarchy stage has no levels (the record's reason), if it says."""
    from hwlab.io import read_json

    p = Path(folder) / "hierarchy" / "memory.json"
    if not p.is_file():
        return "no hierarchy stage in this run"
    rec = read_json(p)
    return None if rec.get("status") == "ok" else f"{rec.get('status')}: {rec.get('reason')}"


def headlines(folder: str | Path) -> list[H.Finding]:
    """The hierarchy headlines of a run folder."""
    table, why = load(folder), memory_reason(folder)
    return [principle_finding(table, why), knees_finding(table, why)]


def section(folder: str | Path, by_key: dict[str, H.Finding]) -> list[str]:
    """Markdown lines of the "§1 — Memory hierarchy" section."""
    folder = Path(folder)
    lines = ["", f"## {SECTION}", ""]
    md = folder / "tables" / "hierarchy.md"
    if not md.is_file():
        lines.append(f"_{memory_reason(folder) or 'No hierarchy table in this run.'}_")
        return lines
    lines.append(md.read_text())
    if (folder / "figures" / "hierarchy.png").is_file():
        lines.append("![bandwidth and latency by working set](figures/hierarchy.png)\n")
    lines.append("Readings:")
    lines.append("")
    for k in ("hierarchy_knees", "hierarchy_principle"):
        f = by_key.get(k)
        if f is not None:
            lines.append(f"- **{f.title}** — _{f.verdict}_. {f.text}")
    table = load(folder)
    if table is not None:
        lv = {r["level"]: r for _, r in table.iterrows()}
        mem = next((lv[m] for m in MEMORY_LEVELS if m in lv), None)
        first = next(iter(lv.values()), None)
        if mem is not None and first is not None and _num(mem.get("read_gbps")):
            lines.append(
                f"- Fastest to slowest measured: {first['level']} reads at "
                f"{fmt_bw(_num(first.get('read_gbps')))}, {mem['level']} at "
                f"{fmt_bw(_num(mem.get('read_gbps')))}; the writeup's H100 row gives "
                f"{first.get('writeup_bandwidth')} and {mem.get('writeup_bandwidth')}."
            )
    return lines
