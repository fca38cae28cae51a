"""Lab 2 aggregation: the roofline table (CSV + Markdown) and figure from the sweep points.

Each point's record holds its own time and derived numbers (:mod:`hwlab.gemm`); this step
adds the percentages of the ceilings (:func:`hwlab.peaks.ceilings`: the spec where the
catalog knows the device, else the run's measured peaks) and draws both sets of ceilings.

Spread: every point carries its repeats' range into the table. ``*_lo`` / ``*_hi`` are the
quantity at the slowest / fastest repeat (``time_max_us`` / ``time_min_us``); percentages of
a measured ceiling also take the ceiling's own range (lo = point lo / ceiling hi, hi = point
hi / ceiling lo), so a verdict never reads more precision than the data has. ``rel_spread``
is (max - min) / median of the repeats, ``n_repeats`` their count; ``target_spread`` /
``target_reached`` are copied when the sweep recorded them (adaptive repetition). Points
without a recorded spread (a reference run) have lo = hi = the value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from hwlab import formulas as F
from hwlab.io import finite, fmt_sig, write_table
from hwlab.peaks import ceilings

point_range = F.point_range  # the rate's (lo, hi) from its repeats (hwlab.formulas)

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
    "dispatch_us",
    "dispatch_ratio",
    "dispatch_bound",
    "timing_mode",
    "time_min_us",
    "time_max_us",
    "rel_spread",
    "rel_ci",
    "n_repeats",
    "target_spread",
    "target_reached",
    "tflops",
    "tflops_lo",
    "tflops_hi",
    "pct_dense_peak",
    "pct_measured_peak",
    "pct_dense_lo",
    "pct_dense_hi",
    "eff_gbps",
    "eff_gbps_lo",
    "eff_gbps_hi",
    "pct_mem_peak",
    "pct_mem_lo",
    "pct_mem_hi",
    "ai",
    "peak_basis",
]


def timer_label(device_kind: str) -> str:
    """What the device-time column really is on this device."""
    if device_kind == "cuda":
        return "GPU time (µs, CUDA events)"
    return "Device time (µs, perf_counter_ns; CPU: same clock as wall)"


def dispatch_note(df: pd.DataFrame, device_kind: str) -> str:
    """What the dispatch columns mean here, and which points are dispatch-bound."""
    from hwlab.gemm import DISPATCH_BOUND_RATIO

    if device_kind != "cuda":
        return (
            "Dispatch (µs/call) = host time issuing each call; on a CPU it is the call "
            "itself (one clock), so dispatch-bound is not applicable (—)."
        )
    flagged = df[df["dispatch_bound"].astype("boolean").fillna(False)]
    text = (
        "Dispatch (µs/call) = host time issuing each call (no synchronize). A warm "
        f"`loop` point is dispatch-bound when it is >= {DISPATCH_BOUND_RATIO:g} x its GPU "
        "time: the GPU waited for Python between calls, so its time is the host's "
        "(gemm.timing: graph removes the per-call launch)"
    )
    if flagged.empty:
        return text + "; none here."
    pts = ", ".join(f"{r.dtype} {r.l2} M={r.M}" for r in flagged.itertuples())
    return text + f"; dispatch-bound here: {pts}."


def pct_range(lo: Any, hi: Any, peak_range: tuple[Any, Any]) -> tuple[Any, Any]:
    """(lo, hi) % of a ceiling that has its own (lo, hi) range."""
    plo, phi = peak_range
    return F.pct(lo, phi), F.pct(hi, plo)


def _best_points(rows: Iterable[Any]) -> dict[str, Any]:
    """The ok point (record or table row) of highest TFLOP/s per dtype: the one scan
    sweep_best / sweep_best_ranges and best_from_table / best_range_from_table read."""
    best: dict[str, Any] = {}
    for r in rows:
        if r.get("status") != "ok":
            continue
        tf = finite(r.get("tflops"))
        dt = str(r["dtype"])
        if tf is not None and (dt not in best or tf > float(best[dt]["tflops"])):
            best[dt] = r
    return best


def sweep_best(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Best achieved TFLOP/s per dtype over the sweep's ok points."""
    return {dt: float(r["tflops"]) for dt, r in _best_points(records).items()}


def sweep_best_ranges(records: Iterable[dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """(lo, hi) TFLOP/s of the best point per dtype (its slowest / fastest repeat)."""
    return {
        dt: point_range(r["tflops"], r.get("gpu_time_us"), r.get("time_min_us"),
                        r.get("time_max_us"))
        for dt, r in _best_points(records).items()
    }  # fmt: skip


def run_ceilings(
    peaks: dict[str, Any],
    best: dict[str, float],
    dtype: str,
    best_range: dict[str, tuple[Any, Any]] | None = None,
) -> dict[str, Any]:
    return ceilings(peaks, peaks.get("spec"), dtype, best.get(dtype), (best_range or {}).get(dtype))


def build_table(records: Iterable[dict[str, Any]], peaks: dict[str, Any]) -> pd.DataFrame:
    records = list(records)
    best = sweep_best(records)
    best_range = sweep_best_ranges(records)
    rows = []
    for r in records:
        c = run_ceilings(peaks, best, r["dtype"], best_range)
        row = {k: r.get(k) for k in COLUMNS}
        if row.get("n_repeats") is None and r.get("status") == "ok":
            row["n_repeats"] = len(r.get("repeats_us") or []) or (r.get("method") or {}).get(
                "repeats"
            )
        t = (r.get("gpu_time_us"), r.get("time_min_us"), r.get("time_max_us"))
        tf_lo, tf_hi = point_range(r.get("tflops"), *t)
        bw_lo, bw_hi = point_range(r.get("eff_gbps"), *t)
        d_lo, d_hi = pct_range(tf_lo, tf_hi, c["peak_tflops_range"])
        m_lo, m_hi = pct_range(bw_lo, bw_hi, c["bw_range"])
        row.update(
            pct_dense_peak=F.pct(r.get("tflops"), c["peak_tflops"]),
            pct_measured_peak=F.pct(r.get("tflops"), c["measured_tflops"]),
            pct_mem_peak=F.pct(r.get("eff_gbps"), c["bw_gbps"]),
            tflops_lo=tf_lo,
            tflops_hi=tf_hi,
            eff_gbps_lo=bw_lo,
            eff_gbps_hi=bw_hi,
            pct_dense_lo=d_lo,
            pct_dense_hi=d_hi,
            pct_mem_lo=m_lo,
            pct_mem_hi=m_hi,
            peak_basis=c["basis"],
        )
        if r.get("ai") is None:  # skipped points still get their intensity
            from hwlab.gemm import derived

            row["ai"] = derived(r["M"], r["N"], r["K"], r["dtype"], 1.0)["ai"]
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["shape", "dtype", "l2", "M"], kind="stable").reset_index(drop=True)


def _table_rows(df: pd.DataFrame) -> list[pd.Series]:
    return [r for _, r in df.iterrows()]


def best_from_table(df: pd.DataFrame) -> dict[str, float]:
    """Best TFLOP/s per dtype over a roofline table's ok rows."""
    return {dt: float(r["tflops"]) for dt, r in _best_points(_table_rows(df)).items()}


def best_range_from_table(df: pd.DataFrame) -> dict[str, tuple[Any, Any]]:
    """(lo, hi) TFLOP/s of each dtype's best row (its own spread columns, else exact)."""
    out: dict[str, tuple[Any, Any]] = {}
    for dt, r in _best_points(_table_rows(df)).items():
        lo, hi = r.get("tflops_lo"), r.get("tflops_hi")
        out[dt] = (lo, hi) if pd.notna(lo) and pd.notna(hi) else (r["tflops"], r["tflops"])
    return out


def markdown_notes(df: pd.DataFrame, peaks: dict[str, Any], device_kind: str) -> list[str]:
    ok = df[df["status"] == "ok"]
    n = sorted({int(x) for x in ok["n_repeats"].dropna()}) if "n_repeats" in ok else []
    notes = [
        f"{timer_label(device_kind)}: median over repeats of the time per call; "
        "spread = (max − min) / median of the repeats"
        + (f", n = {', '.join(map(str, n))} repeats" if n else "")
        + "; tables/roofline.csv also has each quantity at the slowest and fastest repeat "
        "(`*_lo`, `*_hi`).",
        "Effective GB/s counts A, B and C once (analytic bytes, not DRAM counters); above "
        "100% of the memory peak means caches served part of the traffic.",
    ]
    notes.append(dispatch_note(df, device_kind))
    if "target_reached" in ok and ok["target_reached"].notna().any():
        missed = ok[ok["target_reached"].astype(object) == False]  # noqa: E712
        if len(missed):
            notes.append(
                "spread target not reached within the time budget at: "
                + ", ".join(f"{r['dtype']} {r['l2']} M={int(r['M'])}" for _, r in missed.iterrows())
            )
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
                f"{fmt_sig(c['measured_tflops'])} TFLOP/s ({c['measured_tflops_source']}), "
                f"{fmt_sig(c['measured_bw_gbps'])} GB/s (STREAM-like) "
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
        "dispatch_us": "Dispatch (µs/call)",
        "dispatch_bound": "dispatch-bound",
        "timing_mode": "timing",
        "spread_pct": "spread (%)",
        "n_repeats": "n",
        "tflops": "TFLOPS",
        "pct_dense_peak": "%dense peak",
        "eff_gbps": "Effective GB/s",
        "pct_mem_peak": "%mem peak",
        "ai": "AI (FLOP/byte)",
        "status": "status",
    }
    if device_kind != "cuda":  # one clock on a CPU: dispatch is the call itself (see notes)
        md_cols.pop("dispatch_us")
        md_cols.pop("dispatch_bound")
    view = df.copy()
    view["spread_pct"] = 100 * view["rel_spread"].astype(float)
    write_table(df, csv_path)
    write_table(
        view,
        None,
        md_path,
        md_columns=md_cols,
        title="Roofline sweep (raw measurements)",
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
                label=f"{label}: {fmt_sig(tf)} TFLOP/s, {fmt_sig(bw)} GB/s",
            )
            ax.plot([ridge], [tf], "v", color="0.2", ms=6)
            ax.annotate(
                f"ridge {fmt_sig(ridge)}",
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
            if "tflops_lo" in s and s["tflops_lo"].notna().any():
                lo = (s["tflops"] - s["tflops_lo"].fillna(s["tflops"])).clip(lower=0)
                hi = (s["tflops_hi"].fillna(s["tflops"]) - s["tflops"]).clip(lower=0)
                ax.errorbar(
                    s["ai"], s["tflops"], yerr=[lo, hi], fmt=marker, ls=":", ms=5,
                    capsize=2, label=f"{l2} L2 (median, min–max over repeats)",
                )  # fmt: skip
            else:
                ax.plot(s["ai"], s["tflops"], marker, ls=":", ms=5, label=f"{l2} L2")
            for _, r in s.iterrows():
                ax.annotate(
                    f"M={r['M']}",
                    (r["ai"], r["tflops"]),
                    textcoords="offset points",
                    xytext=(3, -9 if l2 == "cold" else 4),
                    fontsize=6,
                )
        title = f"{dtype} — {', '.join(sorted(d['shape'].unique())) or 'no points'}"
        if overlay is not None and not overlay.empty:
            o = overlay[overlay["status"] == "ok"]
            same = o[o["dtype"] == dtype]
            o = same if not same.empty else o  # another dtype still shows where it lands
            other = sorted(set(o["dtype"]))
            if other and other != [dtype]:
                title = (
                    f"this run {dtype} vs {overlay_label or 'compare'} {', '.join(other)} — "
                    f"{', '.join(sorted(d['shape'].unique())) or 'no points'}"
                )
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
        ax.set_title(title, fontsize=8)
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
    peaks_csv: str | None = None,
    peaks_md: str | None = None,
    hardware_json: str | None = None,
) -> pd.DataFrame:
    from hwlab import records
    from hwlab.peaks import write_peaks_table

    peaks = records.read_peaks(peaks_json, hardware_json)
    device = records.read_device(device_json, hardware_json)
    df = build_table(records.read_all(points, "gemm_point"), peaks)
    write_markdown_table(df, peaks, device["kind"], csv, md)
    plot(df, peaks, png, svg)
    if peaks_csv and peaks_md:
        write_peaks_table(peaks_json, peaks_csv, peaks_md)
    return df
