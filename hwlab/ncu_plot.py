"""Lab 1b figure: the attention kernel's Speed-of-Light at the captured batches.

Reads the Lab 1b table (``tables/ncu_lab1b.csv``: one row per metric, one column per batch,
values in display units) so a reference run or another machine's run plots the same way.
Left: the percentage metrics per batch (SM Busy, SM / DRAM throughput, L2 hit rate, the
SM-active fraction) on a log axis, since batch 1 sits near 1%. Right: batch-over-batch
multipliers, the writeup's "work scales 32x, wall-clock 1.16x".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hwlab.io import fmt_sig

PCT_METRICS = ["sm_busy", "sm_throughput", "dram_throughput", "l2_hit_rate",
               "sm_active_fraction"]  # fmt: skip
MULT_METRICS = ["sm_active_cycles", "elapsed_cycles", "duration", "sm_busy",
                "dram_throughput", "memory_throughput", "l2_hit_rate"]  # fmt: skip


def batch_columns(lab: pd.DataFrame) -> list[str]:
    """The per-batch columns (``b1``, ``b32`` …) that hold at least one value."""
    cols = [c for c in lab.columns if c.startswith("b") and c[1:].isdigit()]
    return [c for c in sorted(cols, key=lambda c: int(c[1:])) if lab[c].notna().any()]


def plot_lab1b(
    lab: pd.DataFrame,
    png: str,
    svg: str,
    *,
    reasons: list[str] | None = None,
    overlay: pd.DataFrame | None = None,
    overlay_label: str = "",
) -> None:
    from hwlab import figures

    lab = lab.set_index("metric")
    cols = batch_columns(lab.reset_index())
    has_overlay = overlay is not None and bool(batch_columns(overlay))
    if not cols and has_overlay:
        # this run captured nothing: still show the other run's data, and say why not ours
        o = overlay.set_index("metric")
        return _plot_overlay_only(o, png, svg, reasons or [], overlay_label or "compare")
    if not cols:
        fig, axes = figures.new(1, 1, width=8, height=0.6 + 0.25 * len(reasons or []))
        axes[0][0].axis("off")
        text = "Lab 1b: no batch was captured on this run\n" + "\n".join(reasons or [])
        axes[0][0].text(0.0, 0.5, text, fontsize=8, va="center", transform=axes[0][0].transAxes)
        figures.save(fig, png, svg)
        return
    fig, axes = figures.new(1, 2, width=5.6)
    left, right = axes[0]
    metrics = [m for m in PCT_METRICS if m in lab.index]
    y = np.arange(len(metrics))
    series: list[tuple[str, pd.DataFrame, list[str]]] = [("", lab, cols)]
    if overlay is not None:
        o = overlay.set_index("metric")
        series.append((overlay_label or "compare", o, batch_columns(o.reset_index())))
    n = sum(len(c) for _, _, c in series)
    h = 0.8 / max(n, 1)
    i = 0
    for label, df, bcols in series:
        for c in bcols:
            vals = [df.loc[m, c] if m in df.index else np.nan for m in metrics]
            name = f"{label} batch {c[1:]}".strip()
            bars = left.barh(
                y + i * h,
                vals,
                height=h,
                label=name,
                hatch="//" if label else None,
                alpha=0.6 if label else 1.0,
            )
            for b, v in zip(bars, vals, strict=True):
                if pd.notna(v):
                    left.annotate(
                        f"{fmt_sig(v)}%",
                        (v, b.get_y() + b.get_height() / 2),
                        xytext=(2, 0),
                        textcoords="offset points",
                        va="center",
                        fontsize=6,
                    )
            i += 1
    left.set_yticks(y + 0.4 - h / 2, [lab.loc[m, "label"] for m in metrics], fontsize=7)
    left.set_xscale("log")
    left.set_xlabel("% (log scale)")
    left.invert_yaxis()
    left.legend(fontsize=7)
    left.set_title("Speed-of-Light per batch")

    mult = lab.loc[[m for m in MULT_METRICS if m in lab.index], ["label", "multiplier"]]
    mult = mult[mult["multiplier"].notna()]
    if mult.empty:
        right.axis("off")
        right.text(0.0, 0.5, "one captured batch: no multiplier", transform=right.transAxes)
    else:
        yy = np.arange(len(mult))
        right.barh(yy, mult["multiplier"], color="tab:gray")
        for k, v in enumerate(mult["multiplier"]):
            right.annotate(
                f"{fmt_sig(v)}×",
                (v, k),
                xytext=(2, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
        right.axvline(1.0, color="k", lw=0.8)
        right.set_yticks(yy, list(mult["label"]), fontsize=7)
        right.set_xscale("log")
        right.invert_yaxis()
        right.set_title(f"batch {cols[-1][1:]} / batch {cols[0][1:]}")
    figures.save(fig, png, svg)


def _plot_overlay_only(o: pd.DataFrame, png: str, svg: str, reasons: list[str], label: str):
    """Lab 1b of another run alone (this run has no capture), with this run's reasons."""
    from hwlab import figures

    cols = batch_columns(o.reset_index())
    metrics = [m for m in PCT_METRICS if m in o.index]
    fig, axes = figures.new(1, 1, width=7.0)
    ax = axes[0][0]
    y = np.arange(len(metrics))
    h = 0.8 / max(len(cols), 1)
    for i, c in enumerate(cols):
        vals = [o.loc[m, c] for m in metrics]
        ax.barh(y + i * h, vals, height=h, label=f"{label} batch {c[1:]}", hatch="//", alpha=0.6)
    ax.set_yticks(y + 0.4 - h / 2, [o.loc[m, "label"] for m in metrics], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("% (log scale)")
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    import textwrap

    why = "\n".join(textwrap.wrap("; ".join(reasons), 110)) if reasons else ""
    ax.set_title(
        f"Speed-of-Light: {label} only — this run captured nothing" + (f"\n{why}" if why else ""),
        fontsize=7,
    )
    figures.save(fig, png, svg)


def write_lab1b_figure(
    lab1b_csv: str,
    records: list[str],
    png: str,
    svg: str,
    overlay_csv: str | None = None,
    overlay_label: str = "",
) -> None:
    from hwlab.records import read

    reasons: list[Any] = []
    for p in records:
        r = read(p, "ncu_decode")
        if r.get("status") != "ok":
            reasons.append(f"batch {r.get('batch')}: {r.get('status')}: {r.get('reason')}")
    overlay = pd.read_csv(overlay_csv) if overlay_csv else None
    plot_lab1b(
        pd.read_csv(lab1b_csv),
        png,
        svg,
        reasons=reasons,
        overlay=overlay,
        overlay_label=overlay_label,
    )
