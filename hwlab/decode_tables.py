"""Decode aggregation: the batch-sweep table, the kernel inventory tables, the Lab 1a summary
and the figures, from the decode jobs' cached files (no torch: this step only reads).

- ``decode.csv``: one row per batch. Scaling efficiency = tok/s(b) / (b x tok/s(1))
  (needs batch 1 in the sweep). Napkin = (weight bytes + K/V bytes read per step) /
  memory bandwidth: the catalog's spec bandwidth when the device has an entry, else the
  bandwidth this run measured (``peaks.json``, STREAM-like); the ``bw_basis`` column says
  which. overhead_ratio = median TPOT / napkin (the writeup: 12 ms vs 1.79 ms on an H100).
- ``kernel_inventory.csv`` / ``kernel_classes.csv``: every kernel (op on a CPU) per batch
  and phase with its class from ``config/kernel_classes.yaml`` (classified here, so editing
  the rules reruns only this step); shares are of the phase's device time.
- ``lab1a.md``: the writeup's Lab 1a table at two batches.

Spread: TPOT carries p10 / p90 and ``tpot_rel_iqr`` = (p75 - p25) / median over the
``timed_steps`` kept steps; tokens/s, the scaling efficiency and measured / napkin carry
``*_lo`` / ``*_hi`` from the p90 / p10 steps (and, for the napkin, from the measured
bandwidth's slowest / fastest repeat). The profiled decode steps (traces) give each step's
wall time under the profiler, the time inside ops / kernels, and per class the share's
min / max over the steps (``share_lo`` / ``share_hi`` in kernel_classes.csv).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from hwlab import formulas as F
from hwlab.inventory import (
    CLASSES,
    class_shares,
    classify_rows,
    load_rules,
    short_name,
)
from hwlab.io import fmt_sig, read_json, write_table, write_text

DECODE_COLUMNS = [
    "batch",
    "status",
    "reason",
    "dtype",
    "prompt_len",
    "timed_steps",
    "prefill_ms",
    "tpot_ms_p50",
    "tpot_ms_p10",
    "tpot_ms_p90",
    "tpot_rel_iqr",
    "tokens_per_s",
    "tokens_per_s_lo",
    "tokens_per_s_hi",
    "scaling_efficiency",
    "scaling_efficiency_lo",
    "scaling_efficiency_hi",
    "peak_mem_mb",
    "napkin_ms",
    "napkin_ms_lo",
    "napkin_ms_hi",
    "overhead_ratio",
    "overhead_ratio_lo",
    "overhead_ratio_hi",
    "profiled_steps",
    "profiled_step_ms",
    "profiled_busy_ms",
    "bw_gbps",
    "bw_basis",
    "weight_mb",
    "kv_mb_per_step",
    "gpu_util_pct",
    "gpu_util_p10_pct",
    "gpu_util_p90_pct",
    "gpu_util_max_pct",
    "gpu_util_reason",
    "sdpa_backend",
    "attention_op",
    "attention_kernels",
    "cudnn_version",
]
INVENTORY_COLUMNS = ["batch", "phase", "kernel", "rows", "class", "calls", "time_us", "share"]
CLASS_COLUMNS = ["batch", "phase", "class", "time_us", "share", "share_lo", "share_hi", "n_steps",
                 "itemised"]  # fmt: skip
# a phase whose kernels' recorded shares add up to less than this is not itemised (a
# reference that gives only one kernel's share of a phase, e.g. the writeup's prefill
# FlashAttention share): its class shares would read 100% of that one kernel, so they are
# neither drawn nor quoted
ITEMISED = 0.9
CLASS_COLORS = {
    "gemv": "tab:orange",
    "tc_gemm": "tab:green",
    "gemm": "tab:blue",
    "attention": "tab:red",
    "comm": "tab:cyan",
    "elementwise": "tab:purple",
    "reduction": "tab:brown",
    "memcpy": "tab:pink",
    "other": "tab:gray",
}


# ---- decode.csv -----------------------------------------------------------------------------


def bandwidth(peaks: dict[str, Any]) -> tuple[float | None, str]:
    """Memory bandwidth for the napkin: the catalog spec if the device has one, else measured."""
    spec = peaks.get("spec") or {}
    if spec.get("mem_bw_gbps"):
        return float(spec["mem_bw_gbps"]), f"spec ({peaks.get('spec_key')})"
    measured = (peaks.get("measured") or {}).get("mem_bw_gbps")
    if measured:
        return float(measured), "measured (peaks.json, STREAM-like)"
    return None, "unknown (no spec, no measured bandwidth)"


def bandwidth_range(peaks: dict[str, Any]) -> tuple[float | None, float | None]:
    """(lo, hi) of the napkin's bandwidth: exact for a spec, the measured repeats' range."""
    bw, basis = bandwidth(peaks)
    if bw is None or basis.startswith("spec"):
        return bw, bw
    rng = (peaks.get("measured") or {}).get("mem_bw_gbps_range")
    try:
        lo, hi = (float(x) for x in rng)
        return min(lo, bw), max(hi, bw)
    except (TypeError, ValueError):
        return bw, bw


def napkin_ms(weight_bytes: float, kv_bytes: float, bw_gbps: float | None) -> float | None:
    if not bw_gbps:
        return None
    return F.decode_step_napkin_s(weight_bytes, kv_bytes, bw_gbps) * 1e3


def overhead_ratio(tpot_ms: float | None, napkin: float | None) -> float | None:
    """Measured step time over its napkin lower bound (1.0 = at the bandwidth limit)."""
    if tpot_ms is None or not napkin:
        return None
    return tpot_ms / napkin


def _ratio(a: Any, b: Any) -> float | None:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return None
    return a / b if b and a == a and b == b else None


def rel_iqr(values: list[float]) -> float | None:
    """(p75 - p25) / median: the spread of the kept decode steps."""
    if not values:
        return None
    med = F.median(values)
    return (F.quantile(values, 0.75) - F.quantile(values, 0.25)) / med if med else None


def step_summary(steps: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Median wall and busy time (ms) of the profiled decode steps (see step_profile)."""
    if not steps:
        return {"profiled_steps": None, "profiled_step_ms": None, "profiled_busy_ms": None}
    return {
        "profiled_steps": len(steps),
        "profiled_step_ms": F.median([s["wall_us"] for s in steps]) / 1e3,
        "profiled_busy_ms": F.median([s["busy_us"] for s in steps]) / 1e3,
    }


def decode_table(
    records: list[dict[str, Any]],
    peaks: dict[str, Any],
    steps: dict[int, list[dict[str, Any]]] | None = None,
) -> pd.DataFrame:
    """One row per batch (see the module docstring); ``steps``: each batch's profiled
    decode steps (:func:`hwlab.inventory.step_profile`), when the traces are at hand."""
    bw, basis = bandwidth(peaks)
    bw_lo, bw_hi = bandwidth_range(peaks)
    ok = {r["batch"]: r for r in records if r["status"] == "ok"}
    base = ok.get(1)
    tok1 = base["tokens_per_s"] if base else None
    rows = []
    for r in sorted(records, key=lambda r: r["batch"]):
        nap = napkin_ms(r["weight_bytes"], r["kv_bytes_per_step"], bw)
        nap_lo = napkin_ms(r["weight_bytes"], r["kv_bytes_per_step"], bw_hi)
        nap_hi = napkin_ms(r["weight_bytes"], r["kv_bytes_per_step"], bw_lo)
        is_ok = r["status"] == "ok"
        tok = r.get("tokens_per_s") if is_ok else None
        p10, p90 = r.get("tpot_ms_p10"), r.get("tpot_ms_p90")
        kept = (r.get("tpot_ms_steps") or [])[r.get("warmup_steps") or 0 :] if is_ok else []
        eff = eff_lo = eff_hi = None
        if tok and tok1:
            eff = F.scaling_efficiency(tok, r["batch"], tok1)
            # efficiency = TPOT(1) / TPOT(b): its range from the p10 / p90 steps of both
            eff_lo = _ratio(base.get("tpot_ms_p10"), p90)
            eff_hi = _ratio(base.get("tpot_ms_p90"), p10)
        rows.append(
            {
                "batch": r["batch"],
                "status": r["status"],
                "reason": r.get("reason"),
                "dtype": r["dtype"],
                "prompt_len": r["prompt_len"],
                "timed_steps": r.get("timed_steps"),
                "prefill_ms": r.get("prefill_ms"),
                "tpot_ms_p50": r.get("tpot_ms_p50"),
                "tpot_ms_p10": p10,
                "tpot_ms_p90": p90,
                "tpot_rel_iqr": rel_iqr(kept) if kept else None,
                "tokens_per_s": tok,
                "tokens_per_s_lo": _ratio(r["batch"] * 1e3, p90) if is_ok else None,
                "tokens_per_s_hi": _ratio(r["batch"] * 1e3, p10) if is_ok else None,
                "scaling_efficiency": eff,
                "scaling_efficiency_lo": eff_lo,
                "scaling_efficiency_hi": eff_hi,
                "peak_mem_mb": r.get("peak_mem_mb"),
                "napkin_ms": nap,
                "napkin_ms_lo": nap_lo,
                "napkin_ms_hi": nap_hi,
                "overhead_ratio": overhead_ratio(r.get("tpot_ms_p50"), nap) if is_ok else None,
                "overhead_ratio_lo": _ratio(p10, nap_hi) if is_ok else None,
                "overhead_ratio_hi": _ratio(p90, nap_lo) if is_ok else None,
                **step_summary((steps or {}).get(r["batch"]) if is_ok else None),
                "bw_gbps": bw,
                "bw_basis": basis,
                "weight_mb": r["weight_bytes"] / 1e6,
                "kv_mb_per_step": r["kv_bytes_per_step"] / 1e6,
                "gpu_util_pct": r.get("gpu_util_mean_pct"),
                "gpu_util_p10_pct": _quantile(r.get("gpu_util_raw"), 0.1),
                "gpu_util_p90_pct": _quantile(r.get("gpu_util_raw"), 0.9),
                "gpu_util_max_pct": r.get("gpu_util_max_pct"),
                "gpu_util_reason": r.get("gpu_util_reason"),
                "sdpa_backend": r.get("sdpa_backend"),
                "attention_op": "; ".join(r.get("attention_ops") or []) or None,
                "attention_kernels": "; ".join(
                    f"{k} x{n}" for k, n in (r.get("attention_kernels_short") or {}).items()
                )
                or None,
                "cudnn_version": r.get("cudnn_version"),
            }
        )
    return pd.DataFrame(rows, columns=DECODE_COLUMNS)


def _quantile(values: Any, q: float) -> float | None:
    try:
        vals = [float(v) for v in values or []]
    except (TypeError, ValueError):
        return None
    return F.quantile(vals, q) if vals else None


GRAPH_COLUMNS = [
    "graph_status",
    "graph_reason",
    "graph_tpot_ms_p50",
    "graph_tpot_ms_p10",
    "graph_tpot_ms_p90",
    "graph_speedup",
    "graph_overhead_ratio",
    "gap_removed",
    "graph_compile_s",
    "graph_fxgraph_cache",
]


def gap_removed(eager_ms: float | None, graph_ms: float | None, napkin: float | None):
    """Share of the eager step's gap to the napkin bound that graph mode removed:
    (eager - graph) / (eager - napkin); None without a gap to remove."""
    if eager_ms is None or graph_ms is None or napkin is None or eager_ms <= napkin:
        return None
    return (eager_ms - graph_ms) / (eager_ms - napkin)


def graph_columns(df: pd.DataFrame, graph_records: list[dict[str, Any]]) -> pd.DataFrame:
    """The decode table with the graph-mode record of each batch beside the eager one
    (speed-up = eager / graph TPOT; graph / napkin; the share of the eager gap to the
    napkin that graph mode removed; compile time, never part of TPOT). Batches without a
    graph record keep empty graph columns."""
    by = {int(r["batch"]): r for r in graph_records}
    out = df.copy()
    cols: dict[str, list[Any]] = {c: [] for c in GRAPH_COLUMNS}
    for _, row in df.iterrows():
        g = by.get(int(row["batch"]))
        ok = g is not None and g.get("status") == "ok"
        eager = row["tpot_ms_p50"] if row["status"] == "ok" else None
        eager = None if eager is None or pd.isna(eager) else float(eager)
        nap = None if pd.isna(row["napkin_ms"]) else row["napkin_ms"]
        gt = g.get("tpot_ms_p50") if ok else None
        hits, misses = (g or {}).get("fxgraph_cache_hit"), (g or {}).get("fxgraph_cache_miss")
        cols["graph_status"].append(g.get("status") if g else None)
        cols["graph_reason"].append(g.get("reason") if g else None)
        cols["graph_tpot_ms_p50"].append(gt)
        cols["graph_tpot_ms_p10"].append(g.get("tpot_ms_p10") if ok else None)
        cols["graph_tpot_ms_p90"].append(g.get("tpot_ms_p90") if ok else None)
        cols["graph_speedup"].append(eager / gt if eager and gt else None)
        cols["graph_overhead_ratio"].append(overhead_ratio(gt, nap))
        cols["gap_removed"].append(gap_removed(eager, gt, nap))
        cols["graph_compile_s"].append(g.get("compile_s") if ok else None)
        cols["graph_fxgraph_cache"].append(
            None if not ok or hits is None else ("hit" if hits and not misses else "miss")
        )
    for c, v in cols.items():
        out[c] = pd.Series(v, index=df.index, dtype=object)
    return out


def graph_notes(graph_records: list[dict[str, Any]]) -> list[str]:
    if not graph_records:
        return []
    ok = [r for r in graph_records if r.get("status") == "ok"]
    notes = []
    if ok:
        r = ok[0]
        calls = len(r.get("warm_calls_s") or [])
        notes.append(
            f"Graph mode: {r['compile_backend']} over a {r['cache']} of "
            f"{r['max_cache_len']} positions; TPOT timed as in eager mode, compile time "
            f"(the sum of the {calls} compiled call{'s' if calls != 1 else ''} before timing: "
            "compiling, warming and any graph capture) recorded apart, never in TPOT; "
            "speed-up = eager / graph TPOT; gap removed = (eager - graph) / (eager - napkin)."
        )
    for r in graph_records:
        if r.get("status") != "ok":
            notes.append(f"graph batch {r['batch']}: {r['status']}: {r['reason']}")
        elif r.get("recompiles"):
            notes.append(
                f"graph batch {r['batch']}: {r['recompiles']} recompilation(s) while timed"
            )
        if r.get("status") == "ok" and r.get("cuda_graphs") is False:
            notes.append(
                f"graph batch {r['batch']}: compiled, but inductor skipped CUDA graph capture "
                f"({r['cudagraph_skips']} skip(s); the job's log says why)"
            )
    return notes


def decode_notes(df: pd.DataFrame, records: list[dict[str, Any]]) -> list[str]:
    first = records[0]
    cuda = first["device_kind"] == "cuda"
    # the record's timer (hwlab.device.Device.timer_name; older records: the same rule)
    timer = first.get("timer") or ("cuda_events" if cuda else "perf_counter_ns")
    if timer == "cuda_events":
        timer += ", no synchronize between steps"
    backend = first.get("sdpa_backend")
    sdpa = {None: "SDPA", "auto": "SDPA (torch's own backend choice)"}.get(
        backend, f"SDPA ({backend} backend)"
    )
    notes = [
        f"Model {first['model']} ({first['model_source']}, {fmt_sig(first['param_count'] / 1e9)} B "
        f"parameters, {first['dtype']}), prompt {first['prompt_len']} random tokens, greedy "
        f"decode with KV cache, {sdpa} attention; device {first.get('device_name')}.",
        f"TPOT: per decode step ({timer}), first {first['warmup_steps']} of "
        f"{first['new_tokens']} steps dropped; p50 [p10, p90] of the rest (n = timed steps), "
        "spread = (p75 − p25) / p50. tokens/s = batch / median TPOT; its range and the "
        "scaling efficiency's (TPOT(1) / TPOT(b)) come from the p10 / p90 steps "
        "(tables/decode.csv `*_lo`, `*_hi`).",
        "Napkin = (weight bytes + K/V bytes of the context) / bandwidth, "
        f"bandwidth = {fmt_sig(df['bw_gbps'].iloc[0], 4)} GB/s, {df['bw_basis'].iloc[0]}; "
        "overhead = measured TPOT / napkin.",
        f"Peak memory: {first['peak_mem_kind']}"
        + (
            f" (the process held {first['baseline_rss_mb']:.0f} MB before the model was built)."
            if "baseline_rss_mb" in first
            else "."
        ),
    ]
    if df["profiled_busy_ms"].notna().any():
        what = "kernels launched in it" if cuda else "aten op self time in it"
        notes.append(
            f"in ops (ms/step): median over the {int(df['profiled_steps'].max())} profiled decode "
            f"steps of the device time inside each step ({what}); the profiled steps run after "
            "the timed ones, under the profiler (their wall time, tables/decode.csv "
            "`profiled_step_ms`, includes its overhead). TPOT − in ops is time outside ops: "
            "Python, module dispatch, sampling, launches."
        )
    if 1 not in set(df.loc[df.status == "ok", "batch"]):
        notes.append("Scaling efficiency needs a completed batch 1 in decode.batches.")
    reasons = df["gpu_util_reason"].dropna().unique()
    if len(reasons):
        notes.append(f"GPU-Util: {'; '.join(reasons)}.")
    for _, r in df[df.status != "ok"].iterrows():
        notes.append(f"batch {r['batch']}: {r['status']}: {r['reason']}")
    return notes


def add_prefill_mfu(
    df: pd.DataFrame,
    records: list[dict[str, Any]],
    peaks: dict[str, Any],
    manifest_json: str | None = None,
) -> pd.DataFrame:
    """§5: the prefill MFU columns (hwlab.questions.prefill_mfu_columns); the model's
    architecture from its manifest, where given, for the attention and embedding terms."""
    from hwlab.questions import prefill_mfu_columns

    arch = read_json(manifest_json).get("arch") if manifest_json else None
    return prefill_mfu_columns(df, records, peaks, arch)


# ---- kernel inventory ---------------------------------------------------------------------


def inventory_tables(
    per_batch: dict[int, list[dict[str, Any]]],
    rules,
    steps: dict[int, list[dict[str, Any]]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kernel_inventory, kernel_classes) for every batch's inventory rows; ``steps`` (each
    batch's profiled decode steps) adds each decode class share's min / max over the steps."""
    inv, cls = [], []
    for batch in sorted(per_batch):
        rows = classify_rows(per_batch[batch], rules)
        inv += [{"batch": batch, **r} for r in rows]
        per_step = (steps or {}).get(batch) or []
        itemised: dict[str, float] = {}
        for r in rows:
            itemised[r["phase"]] = itemised.get(r["phase"], 0.0) + float(r.get("share") or 0)
        for sh in class_shares(rows):
            extra: dict[str, Any] = {"share_lo": sh["share"], "share_hi": sh["share"],
                                     "n_steps": None}  # fmt: skip
            if sh["phase"] == "decode" and per_step:
                vals = [
                    st["by_class"].get(sh["class"], 0.0) / st["busy_us"]
                    for st in per_step
                    if st["busy_us"]
                ]
                if vals:
                    extra = {"share_lo": min(vals), "share_hi": max(vals), "n_steps": len(vals)}
            cls.append({"batch": batch, **sh, **extra, "itemised": itemised.get(sh["phase"])})
    inv_df = pd.DataFrame(inv, columns=INVENTORY_COLUMNS)
    inv_df["rows"] = inv_df["rows"].astype("Int64")
    return inv_df, pd.DataFrame(cls, columns=CLASS_COLUMNS)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _kernel_cell(r: pd.Series) -> str:
    m = "" if pd.isna(r["rows"]) else f" M={int(r['rows'])}"
    return (
        f"`{short_name(r['kernel'], 60)}`{m} {r['class']} ({_pct(r['share'])}, {r['calls']} calls)"
    )


def lab1a_cells(
    batch: int, inv: pd.DataFrame, cls: pd.DataFrame, device_kind: str
) -> dict[str, str]:
    """The Lab 1a column of one batch: top 3 decode kernels and the class shares."""
    dec = inv[(inv.batch == batch) & (inv.phase == "decode")].sort_values(
        "time_us", ascending=False
    )
    cells = {}
    for i, label in enumerate(("Top kernel", "#2", "#3")):
        cells[label] = _kernel_cell(dec.iloc[i]) if len(dec) > i else "—"

    def share(phase: str, name: str) -> float | None:
        s = cls[(cls.batch == batch) & (cls.phase == phase) & (cls["class"] == name)]
        return float(s.share.iloc[0]) if len(s) else None

    tc = share("decode", "tc_gemm")
    cells["Tensor-core share"] = (
        "— (CPU: no tensor cores)"
        if device_kind != "cuda"
        else (_pct(tc) if tc is not None else "—")
    )
    gemv = share("decode", "gemv")
    cells["GEMV share"] = _pct(gemv) if gemv is not None else "—"
    att_d, att_p = share("decode", "attention"), share("prefill", "attention")

    def itemised(phase: str) -> bool:
        s = cls[(cls.batch == batch) & (cls.phase == phase)]
        return "itemised" not in s or s.itemised.isna().all() or s.itemised.max() >= ITEMISED

    parts = []
    if att_d is not None:
        parts.append(f"{_pct(att_d)} of decode" if itemised("decode") else "decode not itemised")
    if att_p is not None:
        parts.append(f"{_pct(att_p)} of prefill" if itemised("prefill") else "prefill not itemised")
    cells["Attention share"] = "; ".join(parts) or "—"
    # the writeup's form: both phases as parts of the whole profiled time
    t = cls[(cls.batch == batch) & (cls.phase.isin(["decode", "prefill"]))]
    total = t.time_us.sum()
    if total > 0 and att_d is not None and att_p is not None:
        a = t[t["class"] == "attention"].set_index("phase").time_us
        cells["Attention, of all profiled time"] = (
            f"{_pct(a.get('decode', 0) / total)} (decode) + {_pct(a.get('prefill', 0) / total)} "
            "(prefill)"
        )
    else:
        cells["Attention, of all profiled time"] = "—"
    return cells


def lab1a_markdown(
    batches: list[int],
    inv: pd.DataFrame,
    cls: pd.DataFrame,
    records: dict[int, dict[str, Any]],
    device_kind: str,
) -> str:
    cols = {}
    for b in batches:
        r = records.get(b)
        if r is None or r["status"] != "ok":
            why = f"{r['status']}: {r['reason']}" if r else "not in the sweep"
            why = why.replace("|", "\\|")
            cols[b] = {k: why for k in ROWS}
        else:
            cols[b] = lab1a_cells(b, inv, cls, device_kind)
    what = (
        "CUDA time of kernels"
        if device_kind == "cuda"
        else "self time of aten ops (CPU; a matmul with M = 1 row counts as GEMV)"
    )
    first = next((r for r in records.values() if r["status"] == "ok"), None)
    steps = first["profile_steps"] if first else "?"
    lines = [
        f"### Lab 1a — Kernel inventory, batch {batches[0]} vs {batches[1]}",
        "",
        f"Shares of {what} from torch.profiler over {steps} decode steps after warmup "
        "(top kernels, tensor-core and GEMV shares: decode steps only); the prefill before "
        "them is profiled as its own phase.",
        "",
        "| | " + " | ".join(f"Batch={b}" for b in batches) + " |",
        "|---|" + "---|" * len(batches),
    ]
    for row in ROWS:
        lines.append(f"| {row} | " + " | ".join(cols[b][row] for b in batches) + " |")
    lines += [
        "",
        "- Classes from config/kernel_classes.yaml (ordered regexes); all kernels: "
        "tables/kernel_inventory.csv, class shares: tables/kernel_classes.csv.",
    ]
    return "\n".join(lines) + "\n"


ROWS = (
    "Top kernel",
    "#2",
    "#3",
    "Tensor-core share",
    "GEMV share",
    "Attention share",
    "Attention, of all profiled time",
)


# ---- figures --------------------------------------------------------------------------------


def plot_sweep(
    df: pd.DataFrame,
    png: str,
    svg: str,
    overlay: pd.DataFrame | None = None,
    overlay_label: str = "",
) -> None:
    """TPOT (p50 with p10-p90) and napkin vs batch; tokens/s vs batch with ideal scaling.
    ``overlay``: another run's decode table, drawn dashed for comparison."""
    from hwlab import figures

    fig, axes = figures.new(1, 2, width=5.4, height=4.0)
    ax1, ax2 = axes[0]
    ok = df[df.status == "ok"]
    if not ok.empty:
        yerr = [ok.tpot_ms_p50 - ok.tpot_ms_p10, ok.tpot_ms_p90 - ok.tpot_ms_p50]
        ax1.errorbar(
            ok.batch, ok.tpot_ms_p50, yerr=yerr, fmt="o-", capsize=3, label="TPOT p50 [p10, p90]"
        )
        nap = df[df.napkin_ms.notna()]
        if not nap.empty:
            ax1.plot(
                nap.batch, nap.napkin_ms, "--", color="0.4", label=f"napkin ({df.bw_basis.iloc[0]})"
            )
        if "tokens_per_s_lo" in ok and ok.tokens_per_s_lo.notna().any():
            tl = (ok.tokens_per_s - ok.tokens_per_s_lo.fillna(ok.tokens_per_s)).clip(lower=0)
            th = (ok.tokens_per_s_hi.fillna(ok.tokens_per_s) - ok.tokens_per_s).clip(lower=0)
            ax2.errorbar(
                ok.batch, ok.tokens_per_s, yerr=[tl, th], fmt="o-", capsize=3,
                label="measured (from TPOT p50 [p90, p10])",
            )  # fmt: skip
        else:
            ax2.plot(ok.batch, ok.tokens_per_s, "o-", label="measured")
        if 1 in set(ok.batch):
            t1 = float(ok.loc[ok.batch == 1, "tokens_per_s"].iloc[0])
            ax2.plot(ok.batch, t1 * ok.batch, ":", color="0.4", label="b × tok/s(1) (ideal)")
            for _, r in ok.iterrows():
                if r.scaling_efficiency is not None and not pd.isna(r.scaling_efficiency):
                    ax2.annotate(
                        f"{100 * r.scaling_efficiency:.0f}%",
                        (r.batch, r.tokens_per_s),
                        textcoords="offset points",
                        xytext=(4, -10),
                        fontsize=7,
                    )
    if overlay is not None:
        o = overlay[overlay.status == "ok"]
        if not o.empty:
            ax1.plot(o.batch, o.tpot_ms_p50, "x--", color="tab:red", label=overlay_label)
            ax2.plot(o.batch, o.tokens_per_s, "x--", color="tab:red", label=overlay_label)
    for _, r in df[df.status != "ok"].iterrows():
        for ax in (ax1, ax2):
            ax.axvline(r.batch, color="tab:red", lw=0.8, ls=":")
            ax.annotate(
                r.status,
                (r.batch, 0.02),
                xycoords=("data", "axes fraction"),
                color="tab:red",
                fontsize=7,
            )
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.legend(fontsize=7)
    ax1.set_ylabel("ms per decode step")
    ax1.set_title("TPOT vs batch")
    ax2.set_ylabel("tokens/s")
    ax2.set_title("decode throughput vs batch")
    figures.save(fig, png, svg)


def plot_classes(
    cls: pd.DataFrame,
    png: str,
    svg: str,
    overlay: pd.DataFrame | None = None,
    overlay_label: str = "",
) -> None:
    """Stacked class shares per batch, decode phase (and prefill when profiled).
    ``overlay``: another run's class shares, drawn as a second row of panels."""
    from hwlab import figures

    phases = [p for p in ("decode", "prefill", "all") if p in set(cls.phase)] or ["decode"]
    runs = [("", cls)] + ([(overlay_label or "compare", overlay)] if overlay is not None else [])
    fig, axes = figures.new(len(runs), len(phases), width=5.0, height=4.0)
    for row, (label, data) in enumerate(runs):
        for ax, phase in zip(axes[row], phases, strict=True):
            _class_panel(ax, data, phase, label)
    figures.save(fig, png, svg)


def _class_panel(ax, cls: pd.DataFrame, phase: str, label: str) -> None:
    """One panel: stacked class shares per batch for one phase of one run."""
    c = cls[cls.phase == phase]
    d = c.pivot_table(index="batch", columns="class", values="share")
    d = d.reindex(columns=list(CLASSES)).fillna(0.0)
    partial = set()
    if "itemised" in c and c["itemised"].notna().any():
        partial = set(c.loc[c["itemised"] < ITEMISED, "batch"])
        d.loc[d.index.isin(partial)] = 0.0  # not itemised: no shares to draw
    xs = list(range(len(d.index)))  # one bar per batch, evenly spaced
    bottom = [0.0] * len(xs)
    for c in CLASSES:
        vals = list(d[c]) if len(d) else []
        if not any(vals):
            continue
        ax.bar(xs, vals, bottom=bottom, color=CLASS_COLORS[c], label=c)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    for x, b in zip(xs, d.index, strict=True):
        if b in partial:
            ax.text(x, 0.5, "not itemised\nin this run", ha="center", va="center", fontsize=7)
        elif "share_lo" in c and phase == "decode":
            # whiskers: the largest class's min-max over the profiled steps
            row = c[(c.batch == b)].sort_values("share").iloc[-1]
            if pd.notna(row.get("share_lo")) and row["share_hi"] > row["share_lo"]:
                cum = sum(d.loc[b, k] for k in CLASSES[: CLASSES.index(row["class"])])
                ax.errorbar([x], [cum + row["share"]], yerr=[[row["share"] - row["share_lo"]],
                            [row["share_hi"] - row["share"]]], fmt="none", ecolor="k",
                            capsize=3, lw=0.8)  # fmt: skip
    ax.set_xticks(xs, [str(b) for b in d.index])
    ax.set_xlim(-0.6, max(len(xs), 1) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_xlabel("batch")
    ax.set_ylabel("share of device time")
    ax.set_title(f"{label + ': ' if label else ''}kernel classes — {phase}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


# ---- the aggregation job ----------------------------------------------------------------------


def read_step_profiles(
    traces: list[str] | None, records: list[dict[str, Any]], rules
) -> dict[int, list[dict[str, Any]]]:
    """Each ok batch's profiled decode steps from its trace (empty where none)."""
    from hwlab.inventory import load_trace, step_profile

    out: dict[int, list[dict[str, Any]]] = {}
    for rec, path in zip(records, traces or [], strict=False):
        if rec.get("status") != "ok":
            continue
        try:
            out[rec["batch"]] = step_profile(load_trace(path), rules)
        except (OSError, ValueError):  # a missing or unreadable trace: no per-step spread
            out[rec["batch"]] = []
    return out


def write_decode_tables(
    records: list[str],
    kernels: list[str],
    *,
    peaks_json: str,
    device_json: str,
    classes_yaml: str,
    lab1a_batches: list[int],
    out: dict[str, str],
    manifest_json: str | None = None,
    traces: list[str] | None = None,
    graph_records: list[str] = (),
    hardware_json: str | None = None,
) -> pd.DataFrame:
    """Every decode table and figure; ``out`` maps output names to paths; ``traces``: the
    batches' chrome traces (same order as ``records``) for the per-step spread;
    ``graph_records``: graph-mode decode records, paired with the eager row of their batch.
    Records are read validated (hwlab/records.py)."""
    from hwlab import records as R

    recs = R.read_all(records, "decode")
    graph = R.read_all(graph_records, "decode")
    peaks = R.read_peaks(peaks_json, hardware_json)
    device_kind = R.read_device(device_json)["kind"]
    rules = load_rules(classes_yaml)
    steps = read_step_profiles(traces, recs, rules)
    df = decode_table(recs, peaks, steps)
    df = add_prefill_mfu(df, recs, peaks, manifest_json)
    if graph:
        df = graph_columns(df, graph)
    view = df.copy()
    view["spread_pct"] = 100 * pd.to_numeric(view["tpot_rel_iqr"], errors="coerce")
    write_table(df, out["decode_csv"])
    write_table(
        view,
        None,
        out["decode_md"],
        md_columns={
            "batch": "batch",
            "status": "status",
            "prefill_ms": "prefill (ms)",
            "tpot_ms_p50": "TPOT p50 (ms)",
            "tpot_ms_p10": "p10",
            "tpot_ms_p90": "p90",
            "spread_pct": "spread (%)",
            "timed_steps": "n",
            "tokens_per_s": "tok/s",
            "scaling_efficiency": "scaling eff.",
            "profiled_busy_ms": "in ops (ms/step)",
            "peak_mem_mb": "peak mem (MB)",
            "napkin_ms": "napkin (ms)",
            "overhead_ratio": "measured / napkin",
            "gpu_util_pct": "GPU-Util mean (%)",
            "prefill_mfu_pct": "prefill MFU (%)",
            "graph_tpot_ms_p50": "graph TPOT p50 (ms)",
            "graph_speedup": "graph speed-up",
            "graph_overhead_ratio": "graph / napkin",
            "gap_removed": "gap removed",
            "graph_compile_s": "compile (s)",
        },
        title="Decode batch sweep (§5)",
        notes=decode_notes(df, recs) + graph_notes(graph),
    )
    by_batch = {r["batch"]: r for r in recs}
    per_batch = {}
    for k_path in kernels:
        per_batch[R.kind_of(k_path)[1]["batch"]] = R.read(k_path, "decode_kernels")
    inv, cls = inventory_tables(per_batch, rules, steps)
    write_table(inv, out["inventory_csv"])
    write_table(cls, out["classes_csv"])
    write_text(out["lab1a_md"], lab1a_markdown(lab1a_batches, inv, cls, by_batch, device_kind))
    plot_sweep(df, out["sweep_png"], out["sweep_svg"])
    plot_classes(cls, out["classes_png"], out["classes_svg"])
    return df
