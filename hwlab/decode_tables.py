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
from hwlab.io import write_table, write_text

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
    "tokens_per_s",
    "scaling_efficiency",
    "peak_mem_mb",
    "napkin_ms",
    "overhead_ratio",
    "bw_gbps",
    "bw_basis",
    "weight_mb",
    "kv_mb_per_step",
    "gpu_util_pct",
    "gpu_util_max_pct",
    "gpu_util_reason",
]
INVENTORY_COLUMNS = ["batch", "phase", "kernel", "rows", "class", "calls", "time_us", "share"]
CLASS_COLUMNS = ["batch", "phase", "class", "time_us", "share"]
CLASS_COLORS = {
    "gemv": "tab:orange",
    "tc_gemm": "tab:green",
    "gemm": "tab:blue",
    "attention": "tab:red",
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


def napkin_ms(weight_bytes: float, kv_bytes: float, bw_gbps: float | None) -> float | None:
    if not bw_gbps:
        return None
    return F.decode_step_napkin_s(weight_bytes, kv_bytes, bw_gbps) * 1e3


def overhead_ratio(tpot_ms: float | None, napkin: float | None) -> float | None:
    """Measured step time over its napkin lower bound (1.0 = at the bandwidth limit)."""
    if tpot_ms is None or not napkin:
        return None
    return tpot_ms / napkin


def decode_table(records: list[dict[str, Any]], peaks: dict[str, Any]) -> pd.DataFrame:
    bw, basis = bandwidth(peaks)
    ok = {r["batch"]: r for r in records if r["status"] == "ok"}
    tok1 = ok[1]["tokens_per_s"] if 1 in ok else None
    rows = []
    for r in sorted(records, key=lambda r: r["batch"]):
        nap = napkin_ms(r["weight_bytes"], r["kv_bytes_per_step"], bw)
        is_ok = r["status"] == "ok"
        tok = r.get("tokens_per_s") if is_ok else None
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
                "tpot_ms_p10": r.get("tpot_ms_p10"),
                "tpot_ms_p90": r.get("tpot_ms_p90"),
                "tokens_per_s": tok,
                "scaling_efficiency": F.scaling_efficiency(tok, r["batch"], tok1)
                if tok and tok1
                else None,
                "peak_mem_mb": r.get("peak_mem_mb"),
                "napkin_ms": nap,
                "overhead_ratio": overhead_ratio(r.get("tpot_ms_p50"), nap) if is_ok else None,
                "bw_gbps": bw,
                "bw_basis": basis,
                "weight_mb": r["weight_bytes"] / 1e6,
                "kv_mb_per_step": r["kv_bytes_per_step"] / 1e6,
                "gpu_util_pct": r.get("gpu_util_mean_pct"),
                "gpu_util_max_pct": r.get("gpu_util_max_pct"),
                "gpu_util_reason": r.get("gpu_util_reason"),
            }
        )
    return pd.DataFrame(rows, columns=DECODE_COLUMNS)


def decode_notes(df: pd.DataFrame, records: list[dict[str, Any]]) -> list[str]:
    first = records[0]
    cuda = first["device_kind"] == "cuda"
    timer = "CUDA events, no synchronize between steps" if cuda else "perf_counter_ns"
    notes = [
        f"Model {first['model']} ({first['model_source']}, {first['param_count'] / 1e9:.3g} B "
        f"parameters, {first['dtype']}), prompt {first['prompt_len']} random tokens, greedy "
        f"decode with KV cache, sdpa attention; device {first.get('device_name')}.",
        f"TPOT: per decode step ({timer}), first {first['warmup_steps']} of "
        f"{first['new_tokens']} steps dropped; p50 [p10, p90] of the rest. "
        "tokens/s = batch / median TPOT.",
        "Napkin = (weight bytes + K/V bytes of the context) / bandwidth, "
        f"bandwidth = {df['bw_gbps'].iloc[0]:.4g} GB/s, {df['bw_basis'].iloc[0]}; "
        "overhead = measured TPOT / napkin.",
        f"Peak memory: {first['peak_mem_kind']}"
        + (
            f" (the process held {first['baseline_rss_mb']:.0f} MB before the model was built)."
            if "baseline_rss_mb" in first
            else "."
        ),
    ]
    if 1 not in set(df.loc[df.status == "ok", "batch"]):
        notes.append("Scaling efficiency needs a completed batch 1 in decode.batches.")
    reasons = df["gpu_util_reason"].dropna().unique()
    if len(reasons):
        notes.append(f"GPU-Util: {'; '.join(reasons)}.")
    for _, r in df[df.status != "ok"].iterrows():
        notes.append(f"batch {r['batch']}: {r['status']}: {r['reason']}")
    return notes


# ---- kernel inventory ---------------------------------------------------------------------


def inventory_tables(
    per_batch: dict[int, list[dict[str, Any]]], rules
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kernel_inventory, kernel_classes) for every batch's inventory rows."""
    inv, cls = [], []
    for batch in sorted(per_batch):
        rows = classify_rows(per_batch[batch], rules)
        inv += [{"batch": batch, **r} for r in rows]
        cls += [{"batch": batch, **s} for s in class_shares(rows)]
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
    parts = []
    if att_d is not None:
        parts.append(f"{_pct(att_d)} of decode")
    if att_p is not None:
        parts.append(f"{_pct(att_p)} of prefill")
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
    d = cls[cls.phase == phase].pivot_table(index="batch", columns="class", values="share")
    d = d.reindex(columns=list(CLASSES)).fillna(0.0)
    xs = list(range(len(d.index)))  # one bar per batch, evenly spaced
    bottom = [0.0] * len(xs)
    for c in CLASSES:
        vals = list(d[c]) if len(d) else []
        if not any(vals):
            continue
        ax.bar(xs, vals, bottom=bottom, color=CLASS_COLORS[c], label=c)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(xs, [str(b) for b in d.index])
    ax.set_ylim(0, 1)
    ax.set_xlabel("batch")
    ax.set_ylabel("share of device time")
    ax.set_title(f"{label + ': ' if label else ''}kernel classes — {phase}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


# ---- the aggregation job ----------------------------------------------------------------------


def write_decode_tables(
    records: list[str],
    kernels: list[str],
    *,
    peaks_json: str,
    device_json: str,
    classes_yaml: str,
    lab1a_batches: list[int],
    out: dict[str, str],
    hardware_json: str | None = None,
) -> pd.DataFrame:
    """Every decode table and figure; ``out`` maps output names to paths."""
    from hwlab import records as R

    recs = R.read_all(records, "decode")
    peaks = R.read_peaks(peaks_json, hardware_json)
    device_kind = R.read_device(device_json)["kind"]
    df = decode_table(recs, peaks)
    write_table(
        df,
        out["decode_csv"],
        out["decode_md"],
        md_columns={
            "batch": "batch",
            "status": "status",
            "prefill_ms": "prefill (ms)",
            "tpot_ms_p50": "TPOT p50 (ms)",
            "tpot_ms_p10": "p10",
            "tpot_ms_p90": "p90",
            "tokens_per_s": "tok/s",
            "scaling_efficiency": "scaling eff.",
            "peak_mem_mb": "peak mem (MB)",
            "napkin_ms": "napkin (ms)",
            "overhead_ratio": "measured / napkin",
            "gpu_util_pct": "GPU-Util mean (%)",
        },
        title="Decode batch sweep (§5)",
        notes=decode_notes(df, recs),
    )
    rules = load_rules(classes_yaml)
    by_batch = {r["batch"]: r for r in recs}
    per_batch = {}
    for k_path in kernels:
        per_batch[R.kind_of(k_path)[1]["batch"]] = R.read(k_path, "decode_kernels")
    inv, cls = inventory_tables(per_batch, rules)
    write_table(inv, out["inventory_csv"])
    write_table(cls, out["classes_csv"])
    write_text(out["lab1a_md"], lab1a_markdown(lab1a_batches, inv, cls, by_batch, device_kind))
    plot_sweep(df, out["sweep_png"], out["sweep_svg"])
    plot_classes(cls, out["classes_png"], out["classes_svg"])
    return df
