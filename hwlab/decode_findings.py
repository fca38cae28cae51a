"""Findings from the decode model and graph-mode decode: the section "Where Decode Time
Goes" and its headlines (called by :mod:`hwlab.findings`).

- :func:`decode_overhead_finding` replaces the writeup's asserted attribution (§5: "the gap
  is framework overhead — Python, sampler, kernel launches") with the measured split of the
  step at the smallest batch: matmuls and attention from the profiled steps, everything
  else = the timed TPOT minus both. It holds when that everything-else is at least
  OVERHEAD_SHARE of the gap between the TPOT and the napkin bound; the interval comes from
  the median TPOT's 95% CI.
- :func:`graph_gap_finding`: how much of that gap graph mode (the step compiled; CUDA graphs
  on a GPU) removed, (eager - graph) / (eager - napkin), at the smallest batch measured in
  both modes. The writeup's claim holds if graph mode removes at least GAP_REMOVED of it.
- :func:`model_accuracy_finding`: the decode model's |error| at every measured batch
  against decode_model.goal_pct (interval from the TPOT CI; a batch straddling the goal
  makes it inconclusive).
Every finding can hold, fail, be inconclusive or not evaluable (the data it needs absent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hwlab import headlines as H
from hwlab.decode_model import abs_interval, weights_transition
from hwlab.io import fmt_sig

SECTION = "Where Decode Time Goes"
OVERHEAD_SHARE = 0.5  # everything-but-matmuls-and-attention share of the gap to the napkin
GAP_REMOVED = 0.5  # share of the eager gap to the napkin that graph mode must remove


def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if pd.isna(x) else x


def load_model(folder: str | Path) -> pd.DataFrame | None:
    p = Path(folder) / "tables" / "decode_model.csv"
    return pd.read_csv(p) if p.is_file() else None


def _rows(model: pd.DataFrame | None, mode: str) -> pd.DataFrame:
    if model is None or model.empty:
        return pd.DataFrame()
    d = model[(model["mode"] == mode) & model["tpot_ms"].notna()]
    return d.sort_values("batch")


# ---- the measured split (replaces the asserted attribution) -------------------------------


def gap_split(row: pd.Series) -> dict[str, Any] | None:
    """The measured split of one decode step and of its gap to the napkin bound (ms, and the
    overhead's share of the gap with its interval from the TPOT CI)."""
    t, nap = _num(row.get("tpot_ms")), _num(row.get("napkin_ms"))
    mm, att = _num(row.get("trace_matmul_ms")), _num(row.get("trace_attention_ms"))
    basis = "profiled steps"
    if mm is None or att is None:  # no trace: the model's own terms
        mm, att, basis = _num(row.get("matmul_ms")), _num(row.get("attention_ms")), "model"
    if None in (t, nap, mm, att) or t <= nap:
        return None
    lo, hi = _num(row.get("tpot_ci_lo_ms")) or t, _num(row.get("tpot_ci_hi_ms")) or t

    def share(x: float) -> float | None:
        return (x - mm - att) / (x - nap) if x > nap else None

    return {
        "batch": int(row["batch"]),
        "tpot_ms": t,
        "napkin_ms": nap,
        "gap_ms": t - nap,
        "matmul_ms": mm,
        "attention_ms": att,
        "overhead_ms": t - mm - att,
        "overhead_share": share(t),
        "overhead_share_lo": share(lo),
        "overhead_share_hi": share(hi),
        "basis": basis,
        "gaps_ms": _num(row.get("trace_gaps_ms")),
        "ops_per_step": _num(row.get("ops_per_step")),
        "weights_gbps": _num(row.get("weights_gbps")),
    }


def decode_overhead_finding(model: pd.DataFrame | None, base: H.Finding) -> H.Finding:
    """``base`` (the TPOT vs napkin headline) with its attribution measured: the split of
    the smallest measured batch's step, and whether everything besides matmuls and
    attention is at least OVERHEAD_SHARE of the gap. Without the decode model's table the
    base finding is returned unchanged."""
    rows = _rows(model, "eager")
    split = gap_split(rows.iloc[0]) if not rows.empty else None
    if split is None or base.evidence.get("ratio_verdict") in (H.FAILS, H.INCONCLUSIVE):
        return base  # no decided gap to the napkin: nothing to attribute
    split["bw_gbps"] = _num(rows.iloc[0].get("napkin_bw_gbps"))
    th = {**base.thresholds, "overhead_share_of_gap": OVERHEAD_SHARE}
    verdict = H.against(split["overhead_share_lo"], split["overhead_share_hi"], OVERHEAD_SHARE)
    s = split
    pct = 100 * s["overhead_share"]
    nap = base.evidence.get("napkin_ms") or s["napkin_ms"]
    mm_gap = s["matmul_ms"] - nap
    text = (
        f"At batch {s['batch']} a decode step takes {H._fmt(s['tpot_ms'])} ms against a "
        f"napkin lower bound of {H._fmt(s['napkin_ms'])} ms "
        f"({fmt_sig(s['tpot_ms'] / s['napkin_ms'], 2)}× the bound). Measured split "
        f"({s['basis']}): matmuls {H._fmt(s['matmul_ms'])} ms, attention "
        f"{H._fmt(s['attention_ms'])} ms, everything else (Python, dispatch or launches, "
        f"elementwise ops, cache updates, sampling) {H._fmt(s['overhead_ms'])} ms — "
        f"{pct:.0f}% of the {H._fmt(s['gap_ms'])} ms gap"
    )
    if s["gaps_ms"] is not None:
        text += f" (the trace's gaps between ops: {H._fmt(s['gaps_ms'])} ms)"
    text += ". "
    text += {
        H.HOLDS: "The gap is mostly framework overhead, as the writeup says.",
        H.FAILS: "The gap is not mostly framework overhead: "
        + (
            f"the matmuls alone take {H._fmt(mm_gap)} ms more than the whole napkin bound"
            if mm_gap > 0
            else "the matmuls and attention take "
            f"{H._fmt(s['matmul_ms'] + s['attention_ms'] - nap)} ms more than the napkin "
            f"bound, {100 - pct:.0f}% of the gap"
        )
        + (
            f" (they stream the weights at {H._fmt(s['weights_gbps'])} GB/s, where the "
            f"napkin assumes {H._fmt(s['bw_gbps'])} GB/s)."
            if s.get("weights_gbps") and s.get("bw_gbps")
            else "."
        ),
        H.INCONCLUSIVE: f"Within the TPOT's spread the overhead's share straddles "
        f"{100 * OVERHEAD_SHARE:.0f}% of the gap: the data cannot tell.",
    }.get(verdict, "")
    # the profiled step (time inside ops vs outside them) is a second, independent reading
    # of the same question: two decided readings that disagree leave it inconclusive
    profiled = base.evidence.get("framework_dominates")
    if {verdict, profiled} == {H.HOLDS, H.FAILS}:
        verdict = H.INCONCLUSIVE
        text += (
            " The profiled step reads the other way (time outside the ops: "
            f"{H._fmt(100 * (base.evidence.get('outside_ops_share') or 0))}% of the step): "
            "the two measurements disagree, so the attribution is left open."
        )
    return H.Finding(
        base.key,
        base.title,
        verdict,
        text,
        {**base.evidence, "split": split, "model_verdict": verdict},
        th,
    )


# ---- graph mode ----------------------------------------------------------------------------


def graph_pairs(model: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Per batch measured in both modes: eager and graph TPOT with their CIs, the napkin
    and the share of the eager gap that graph mode removed (with its interval)."""
    e, g = _rows(model, "eager"), _rows(model, "graph")
    if e.empty or g.empty:
        return []
    gb = {int(r["batch"]): r for _, r in g.iterrows()}
    out = []
    for _, r in e.iterrows():
        b = int(r["batch"])
        if b not in gb:
            continue
        q = gb[b]
        et, gt, nap = _num(r["tpot_ms"]), _num(q["tpot_ms"]), _num(r.get("napkin_ms"))
        e_lo, e_hi = _num(r.get("tpot_ci_lo_ms")) or et, _num(r.get("tpot_ci_hi_ms")) or et
        g_lo, g_hi = _num(q.get("tpot_ci_lo_ms")) or gt, _num(q.get("tpot_ci_hi_ms")) or gt

        def removed(eager: float, graph: float, nap=nap) -> float | None:
            return (eager - graph) / (eager - nap) if nap is not None and eager > nap else None

        out.append(
            {
                "batch": b,
                "eager_ms": et,
                "graph_ms": gt,
                "napkin_ms": nap,
                "speedup": et / gt if gt else None,
                "removed": removed(et, gt),
                "removed_lo": removed(e_lo, g_hi),
                "removed_hi": removed(e_hi, g_lo),
                "graph_over_napkin": gt / nap if nap else None,
                "graph_matmul_ms": _num(q.get("matmul_ms")),
                "graph_overhead_ms": _num(q.get("overhead_ms")),
            }
        )
    return out


def graph_records(folder: str | Path, model: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The graph-mode decode records the decode model was built from (its ``graph`` rows:
    the batches the configuration decoded in graph mode), validated
    (:func:`hwlab.records.read_all`); a record left in the folder by a batch no longer in
    the configuration is not read. No decode model: none."""
    from hwlab import records as R

    if model is None or model.empty:
        return []
    batches = sorted({int(b) for b in model.loc[model["mode"] == "graph", "batch"]})
    return R.read_all([Path(folder) / "decode" / "graph" / f"b{b}.json" for b in batches], "decode")


def graph_gap_finding(
    model: pd.DataFrame | None, records: list[dict[str, Any]] | None = None
) -> H.Finding:
    """How much of the eager step's gap to the napkin graph mode removed (smallest batch
    measured in both modes); holds at >= GAP_REMOVED."""
    key, title = "graph_gap", "Graph mode vs the framework-overhead gap"
    th = {"gap_removed": GAP_REMOVED}
    pairs = graph_pairs(model)
    if not pairs:
        why = "; ".join(
            f"batch {r.get('batch')}: {r.get('status')}: {r.get('reason')}"
            for r in records or []
            if r.get("status") != "ok"
        )
        return H.Finding(
            key,
            title,
            H.NOT_EVALUABLE,
            "No batch was decoded in both eager and graph mode"
            + (f" ({why})" if why else " (decode.mode lists no graph, or no decode model)")
            + ".",
            thresholds=th,
        )
    p = pairs[0]
    verdict = H.against(p["removed_lo"], p["removed_hi"], GAP_REMOVED)
    compile_s = next(
        (r.get("compile_s") for r in records or [] if r.get("batch") == p["batch"]), None
    )
    text = (
        f"At batch {p['batch']} graph mode takes {H._fmt(p['graph_ms'])} ms per step against "
        f"{H._fmt(p['eager_ms'])} ms eager ({H._fmt(p['speedup'])}×) and a napkin bound of "
        f"{H._fmt(p['napkin_ms'])} ms"
        + (
            " (no gap to the bound to remove)"
            if p["removed"] is None
            else f": it removes {100 * p['removed']:.0f}% of the eager gap to the bound"
            if p["removed"] >= 0
            else f": it removes none of the eager gap (graph mode is "
            f"{H._fmt(p['graph_ms'] - p['eager_ms'])} ms slower)"
        )
        + (
            f" and stays at {H._fmt(p['graph_over_napkin'])}× the bound"
            if p["graph_over_napkin"]
            else ""
        )
    )
    if compile_s is not None:
        text += f" (compiling took {fmt_sig(compile_s)} s, not counted in TPOT)"
    text += ". "
    text += {
        H.HOLDS: "Most of the gap was framework overhead (Python, dispatch, launches), as "
        "the writeup says.",
        H.FAILS: "Most of the gap is not framework overhead: what remains in graph mode is "
        f"the step's own work (the model puts {H._fmt(p['graph_matmul_ms'])} ms of it in "
        "matmuls).",
        H.INCONCLUSIVE: "Within the TPOTs' spread the removed share straddles "
        f"{100 * GAP_REMOVED:.0f}%: the data cannot tell.",
    }.get(verdict, "")
    return H.Finding(key, title, verdict, text, {"pairs": pairs, "compile_s": compile_s}, th)


# ---- the model's accuracy --------------------------------------------------------------------


def model_accuracy_finding(model: pd.DataFrame | None, goal_pct: float | None = None) -> H.Finding:
    """Whether the decode model predicts every measured batch within its goal."""
    key, title = "decode_model", "Decode model accuracy"
    d = model[model["error_pct"].notna()] if model is not None and not model.empty else None
    if d is None or d.empty:
        return H.Finding(
            key,
            title,
            H.NOT_EVALUABLE,
            "No decode batch has both a measured TPOT and a prediction (the isolated "
            "measurements or the decode sweep are missing).",
        )
    if goal_pct is None:
        # the table writes the goal beside every error (decode_model._measured_columns)
        goal_pct = float(d["goal_pct"].dropna().iloc[0])
    th = {"goal_pct": goal_pct}
    verdicts, parts, misses = [], {"held out": [], "fit": []}, []
    for _, r in d.sort_values(["mode", "batch"]).iterrows():
        lo, hi = abs_interval(_num(r.get("error_lo_pct")), _num(r.get("error_hi_pct")))
        if lo is None:
            lo = hi = abs(float(r["error_pct"]))
        v = H.against(lo, hi, goal_pct, above=False)
        verdicts.append(v)
        parts["fit" if r["role"] == "fit" else "held out"].append(
            f"{r['mode']} {int(r['batch'])} {float(r['error_pct']):+.1f}%"
        )
        if v != H.HOLDS and isinstance(r.get("worst_term"), str):
            term = r["worst_term"]
            pred, seen = _num(r.get(f"{term}_ms")), _num(r.get(f"trace_{term}_ms"))
            misses.append(
                f"batch {int(r['batch'])} ({r['mode']}): the {term} term is furthest from "
                f"the trace (predicted {H._fmt(pred)} ms, profiled {H._fmt(seen)} ms)"
            )
    verdict = H.all_of(*verdicts)
    held = d[d["role"] == "held out"]
    text = (
        f"Predicted TPOT against measured, goal |error| ≤ {goal_pct:g}%: held out "
        + (", ".join(parts["held out"]) or "none")
        + "; fit batches (the overhead's two coefficients come from them) "
        + (", ".join(parts["fit"]) or "none")
        + ". "
        + (
            f"Worst held-out batch: {held['error_pct'].abs().max():.1f}%. "
            if not held.empty
            else "No batch was held out (one decode batch per mode). "
        )
    )
    text += {
        H.HOLDS: "Every batch is within the goal, held-out ones included.",
        H.FAILS: "Not every batch is within the goal"
        + (": " + "; ".join(misses) if misses else "")
        + ".",
        H.INCONCLUSIVE: "Some batch straddles the goal within its TPOT's CI"
        + (": " + "; ".join(misses) if misses else "")
        + ".",
    }[verdict]
    ev = {
        "errors_pct": {
            f"{r['mode']}:{int(r['batch'])}": float(r["error_pct"]) for _, r in d.iterrows()
        },
        "roles": {f"{r['mode']}:{int(r['batch'])}": r["role"] for _, r in d.iterrows()},
    }
    return H.Finding(key, title, verdict, text, ev, th)


# ---- the section -----------------------------------------------------------------------------


def headlines(folder: str | Path, goal_pct: float | None = None) -> list[H.Finding]:
    model = load_model(folder)
    return [
        graph_gap_finding(model, graph_records(folder, model)),
        model_accuracy_finding(model, goal_pct),
    ]


def _split_sentence(r: pd.Series) -> str:
    total = sum(
        _num(r.get(f"{t}_ms")) or 0.0 for t in ("weights", "compute", "attention", "overhead")
    )
    if not total:
        return ""
    parts = [
        f"{t} {H._fmt(_num(r[f'{t}_ms']))} ms ({100 * (_num(r[f'{t}_ms']) or 0) / total:.0f}%)"
        for t in ("weights", "compute", "attention", "overhead")
    ]
    return f"batch {int(r['batch'])}: " + ", ".join(parts) + f" → {r['bound']}-bound"


def transition_sentence(model: pd.DataFrame | None, mode: str = "eager") -> str:
    """Where the step stops being bound by weights, from the model's terms."""
    if model is None or model.empty:
        return ""
    d = model[(model["mode"] == mode) & model["bound"].notna()]
    if d.empty:
        return ""
    tr = weights_transition(d)
    seq = " → ".join(
        f"{s['bound']} ({s['batches'][0]}"
        + (f"–{s['batches'][-1]}" if len(s["batches"]) > 1 else "")
        + ")"
        for s in tr["sequence"]
    )
    if tr["first_after"] is not None:
        return (
            f"Largest term as the batch grows: {seq}. The step stops being bound by weights "
            f"after batch {tr['last_weights']} and is bound by {tr['to']} from batch "
            f"{tr['first_after']}."
        )
    if tr["last_weights"] is not None:
        return (
            f"Largest term as the batch grows: {seq}. The step is bound by weights at every "
            "batch modelled."
        )
    return f"Largest term as the batch grows: {seq}. No batch is bound by weights."


def section_lines(folder: str | Path, by_key: dict[str, H.Finding]) -> list[str]:
    """The "Where Decode Time Goes" section: the model's table and figure, the split per
    batch, the weights → compute / overhead transition, graph mode and the model's errors."""
    folder = Path(folder)
    model = load_model(folder)
    out = [f"## {SECTION}", ""]
    if model is None:
        out.append(
            "_The decode model did not run here (no tables/decode_model.csv: it needs the "
            "decode sweep and the isolated linear / SDPA measurements of decode_ops)._"
        )
        return out
    md = folder / "tables" / "decode_model.md"
    if md.is_file():
        out += [md.read_text().rstrip(), ""]
    if (folder / "figures" / "decode_model.png").is_file():
        out += ["![where decode time goes](figures/decode_model.png)", ""]
    eager = model[(model["mode"] == "eager") & model["predicted_ms"].notna()].sort_values("batch")
    lines = [s for s in (_split_sentence(r) for _, r in eager.iterrows()) if s]
    if lines:
        out.append("- Predicted split per step: " + "; ".join(lines) + ".")
    t = transition_sentence(model)
    if t:
        out.append(f"- {t}")
    for k in ("decode_overhead", "graph_gap", "decode_model"):
        if k in by_key:
            out.append(f"- **{by_key[k].title}** — _{by_key[k].verdict}_. {by_key[k].text}")
    return out
