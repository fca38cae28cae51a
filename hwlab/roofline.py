"""Lab 2 aggregation: the roofline table (CSV + Markdown) and figure from the sweep points.

Each point's record holds its own time and derived numbers (:mod:`hwlab.gemm`); this step
adds the percentages of the ceilings (:func:`hwlab.peaks.ceilings`: the spec where the
catalog knows the device, else the run's measured peaks) and draws both sets of ceilings.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from hwlab import formulas as F
from hwlab.io import write_table
from hwlab.peaks import ceilings

COLUMNS = [
    "shape",
    "dtype",
    "l2",
    "M",
    "N",
    "K",
    "status",
    "reason",
    "gpu_time_us",
    "wall_time_us",
    "rel_spread",
    "tflops",
    "pct_dense_peak",
    "pct_measured_peak",
    "eff_gbps",
    "pct_mem_peak",
    "ai",
    "peak_basis",
]


def timer_label(device_kind: str) -> str:
    """What the ``gpu_time_us`` column really is on this device."""
    if device_kind == "cuda":
        return "GPU time (µs, CUDA events)"
    return "Device time (µs, perf_counter_ns; CPU: same clock as wall)"


def sweep_best(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Best achieved TFLOP/s per dtype over the sweep's ok points."""
    best: dict[str, float] = {}
    for r in records:
        if r.get("status") == "ok":
            best[r["dtype"]] = max(best.get(r["dtype"], 0.0), r["tflops"])
    return best


def run_ceilings(peaks: dict[str, Any], best: dict[str, float], dtype: str) -> dict[str, Any]:
    return ceilings(peaks, peaks.get("spec"), dtype, best.get(dtype))


def build_table(records: Iterable[dict[str, Any]], peaks: dict[str, Any]) -> pd.DataFrame:
    records = list(records)
    best = sweep_best(records)
    rows = []
    for r in records:
        c = run_ceilings(peaks, best, r["dtype"])
        row = {k: r.get(k) for k in COLUMNS}
        row.update(
            pct_dense_peak=F.pct(r.get("tflops"), c["peak_tflops"]),
            pct_measured_peak=F.pct(r.get("tflops"), c["measured_tflops"]),
            pct_mem_peak=F.pct(r.get("eff_gbps"), c["bw_gbps"]),
            peak_basis=c["basis"],
        )
        if r.get("ai") is None:  # skipped points still get their intensity
            from hwlab.gemm import derived

            row["ai"] = derived(r["M"], r["N"], r["K"], r["dtype"], 1.0)["ai"]
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["shape", "dtype", "l2", "M"], kind="stable").reset_index(drop=True)


def best_from_table(df: pd.DataFrame) -> dict[str, float]:
    ok = df[df["status"] == "ok"]
    return {str(k): float(v) for k, v in ok.groupby("dtype")["tflops"].max().items()}


def markdown_notes(df: pd.DataFrame, peaks: dict[str, Any], device_kind: str) -> list[str]:
    notes = [
        f"`gpu_time_us` = {timer_label(device_kind)}: median over repeats of the time per call.",
        "Effective GB/s counts A, B and C once (analytic bytes, not DRAM counters); above "
        "100% of the memory peak means caches served part of the traffic.",
    ]
    best = best_from_table(df)
    for dtype in sorted(df["dtype"].unique()):
        c = run_ceilings(peaks, best, dtype)
        if c["basis"] == "spec":
            notes.append(
                f"{dtype}: % of peak vs the spec of {peaks.get('spec_key')}: "
                f"{c['spec_tflops']:g} TFLOP/s dense, {c['spec_bw_gbps']:g} GB/s "
                f"(ridge {F.ridge_point(c['spec_tflops'], c['spec_bw_gbps']):.0f} FLOP/B)."
            )
        elif c["peak_tflops"] and c["bw_gbps"]:
            notes.append(
                f"{dtype}: % of peak vs this run's measured ceilings (no catalog entry): "
                f"{c['measured_tflops']:.3g} TFLOP/s ({c['measured_tflops_source']}), "
                f"{c['measured_bw_gbps']:.3g} GB/s (STREAM-like) "
                f"(ridge {F.ridge_point(c['peak_tflops'], c['bw_gbps']):.1f} FLOP/B)."
            )
    skipped = df[df["status"] != "ok"]
    for _, r in skipped.drop_duplicates(["dtype", "status", "reason"]).iterrows():
        notes.append(f"{r['dtype']} {r['status']}: {r['reason']}")
    return notes


def write_markdown_table(
    df: pd.DataFrame, peaks: dict[str, Any], device_kind: str, csv_path: str, md_path: str
) -> None:
    md_cols = {
        "shape": "shape",
        "dtype": "dtype",
        "l2": "L2",
        "M": "M",
        "gpu_time_us": timer_label(device_kind),
        "wall_time_us": "Wall time (µs)",
        "tflops": "TFLOPS",
        "pct_dense_peak": "%dense peak",
        "eff_gbps": "Effective GB/s",
        "pct_mem_peak": "%mem peak",
        "ai": "AI (FLOP/byte)",
        "status": "status",
    }
    write_table(
        df,
        csv_path,
        md_path,
        md_columns=md_cols,
        title="Lab 2 — Roofline",
        notes=markdown_notes(df, peaks, device_kind),
    )


def plot(
    df: pd.DataFrame,
    peaks: dict[str, Any],
    png: str,
    svg: str,
    overlay: pd.DataFrame | None = None,
    overlay_label: str = "",
) -> None:
    """Achieved TFLOP/s vs AI (log-log), one panel per dtype, spec and measured ceilings."""
    import numpy as np

    from hwlab import figures

    ok = df[df["status"] == "ok"]
    best = best_from_table(df)
    dtypes = sorted(df["dtype"].unique())
    fig, axes = figures.new(1, len(dtypes))
    for ax, dtype in zip(axes[0], dtypes, strict=True):
        d = ok[ok["dtype"] == dtype]
        c = run_ceilings(peaks, best, dtype)
        ais = list(d["ai"]) or [1.0]
        lo, hi = min(ais) / 2, max(ais) * 2
        for tf, bw in (
            (c["spec_tflops"], c["spec_bw_gbps"]),
            (c["measured_tflops"], c["measured_bw_gbps"]),
        ):
            if tf and bw:
                ridge = F.ridge_point(tf, bw)
                lo, hi = min(lo, ridge / 4), max(hi, ridge * 4)
        xs = np.logspace(np.log10(lo), np.log10(hi), 200)
        for label, tf, bw, style in (
            (f"spec ({peaks.get('spec_key')})", c["spec_tflops"], c["spec_bw_gbps"], "--"),
            ("measured (this run)", c["measured_tflops"], c["measured_bw_gbps"], "-"),
        ):
            if not (tf and bw):
                continue
            ridge = F.ridge_point(tf, bw)
            ax.plot(
                xs,
                [F.roofline_tflops(x, tf, bw) for x in xs],
                style,
                color="0.35",
                lw=1.2,
                label=f"{label}: {tf:.3g} TFLOP/s, {bw:.3g} GB/s",
            )
            ax.plot([ridge], [tf], "v", color="0.2", ms=6)
            ax.annotate(
                f"ridge {ridge:.3g}",
                (ridge, tf),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=7,
                color="0.2",
            )
        for l2, marker in (("warm", "o"), ("cold", "s")):
            s = d[d["l2"] == l2]
            if s.empty:
                continue
            ax.plot(s["ai"], s["tflops"], marker, ls=":", ms=5, label=f"{l2} L2")
            for _, r in s.iterrows():
                ax.annotate(
                    f"M={r['M']}",
                    (r["ai"], r["tflops"]),
                    textcoords="offset points",
                    xytext=(3, -9 if l2 == "cold" else 4),
                    fontsize=6,
                )
        if overlay is not None and not overlay.empty:
            o = overlay[overlay["status"] == "ok"]
            same = o[o["dtype"] == dtype]
            o = same if not same.empty else o  # another dtype still shows where it lands
            for odt, g in o.groupby("dtype"):
                g = g.sort_values("ai")
                ax.plot(
                    g["ai"],
                    g["tflops"],
                    "x--",
                    color="tab:red",
                    ms=5,
                    lw=0.8,
                    label=f"{overlay_label or 'compare'} ({odt})",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP/byte)")
        ax.set_ylabel("achieved TFLOP/s")
        ax.set_title(f"{dtype} — {', '.join(sorted(d['shape'].unique())) or 'no points'}")
        ax.legend(fontsize=7, loc="lower right")
    figures.save(fig, png, svg)


def write_roofline(
    points: list[str],
    *,
    peaks_json: str,
    device_json: str,
    csv: str,
    md: str,
    png: str,
    svg: str,
    hardware_json: str | None = None,
) -> pd.DataFrame:
    from hwlab import records

    peaks = records.read_peaks(peaks_json, hardware_json)
    device = records.read_device(device_json, hardware_json)
    df = build_table(records.read_all(points, "gemm_point"), peaks)
    write_markdown_table(df, peaks, device["kind"], csv, md)
    plot(df, peaks, png, svg)
    return df
