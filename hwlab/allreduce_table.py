"""Lab 3 aggregation: the AllReduce table, the alpha-beta fit and knee, the figure.

Reads every sweep record (``allreduce/{backend}-w{n}.json``), writes
``tables/allreduce.csv`` (one row per backend x world size x size; a skipped sweep is one
row with its reason), ``tables/allreduce_fit.csv`` (alpha, beta, knee per sweep, see
:mod:`hwlab.alphabeta` for the method), ``tables/allreduce.md`` (both, with the method and
every caveat) and ``figures/allreduce.{png,svg}``: busbw against message size (log x) with
the fitted model's busbw curve, its asymptote and the knee; and time against size (log-log)
with t(n) = alpha + n / beta.
"""

from __future__ import annotations

from typing import Any

from hwlab import formulas as F
from hwlab.alphabeta import METHOD, fit_alpha_beta
from hwlab.io import OK, fmt_sig, write_table, write_text
from hwlab.io import markdown as md_table

TABLE_COLUMNS = [
    "backend", "world_size", "nodes", "dtype", "size_bytes", "count", "time_us",
    "time_min_us", "time_max_us", "rel_spread", "algbw_gbps", "busbw_gbps", "correct",
    "wrong_elements", "warmup", "iters", "timer", "status", "reason",
]  # fmt: skip
FIT_COLUMNS = [
    "backend", "world_size", "nodes", "dtype", "status", "alpha_us", "beta_algbw_gbps",
    "beta_busbw_gbps", "knee_bytes", "max_size_bytes", "busbw_at_max_gbps", "n_points",
    "rms_rel_residual", "max_abs_rel_residual", "r2_log_time", "fit_quality",
    "busbw_at_max_lo_gbps", "busbw_at_max_hi_gbps", "downweighted", "excluded", "note",
    "method", "reason",
]  # fmt: skip
# the alpha-beta model describes a sweep poorly when its relative residuals are larger than
# this (rms) or it explains less of the log-time variance than R2_GOOD
POOR_FIT_RMS = 0.10
R2_GOOD = 0.98


def r2_log_time(sizes, times_s, alpha_s: float, beta_bps: float | None) -> float | None:
    """R² of the model t(n) = alpha + n / beta on log time (sizes span decades)."""
    import numpy as np

    t = np.asarray(times_s, dtype=float)
    n = np.asarray(sizes, dtype=float)
    fit = alpha_s + (n / beta_bps if beta_bps else 0.0)
    if len(t) < 3 or np.any(fit <= 0) or np.any(t <= 0):
        return None
    y, yf = np.log(t), np.log(fit)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1 - float(np.sum((y - yf) ** 2)) / ss_tot if ss_tot else None


def fit_quality(rms: float | None, r2: float | None) -> str:
    if rms is None and r2 is None:
        return "unknown"
    poor = (rms is not None and rms > POOR_FIT_RMS) or (r2 is not None and r2 < R2_GOOD)
    return "poor" if poor else "good"


def fmt_bytes(n: float | None) -> str:
    """8 -> '8 B', 1536 -> '1.5 KiB', 268435456 -> '256 MiB'."""
    if n is None or n != n:
        return "—"
    for unit, div in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= div:
            return f"{fmt_sig(n / div)} {unit}"
    return f"{n:.0f} B"


def table(records: list[dict[str, Any]]):
    """All sweeps as one DataFrame (measured rows; one row per skipped sweep)."""
    import pandas as pd

    rows = []
    for rec in records:
        if rec["status"] == OK:
            for r in rec["rows"]:
                rows.append({**r, "reason": rec.get("reason")})
        else:
            rows.append(
                {k: rec.get(k) for k in ("backend", "world_size", "nodes", "dtype")}
                | {"status": rec["status"], "reason": rec.get("reason")}
            )
    df = pd.DataFrame(rows)
    return df.reindex(columns=TABLE_COLUMNS + [c for c in df.columns if c not in TABLE_COLUMNS])


def fit_group(g) -> dict[str, Any]:
    """alpha-beta fit of one sweep's ok rows; rows with a wrong result are excluded, and
    the fit says which."""
    first = g.iloc[0]
    base = {k: first[k] for k in ("backend", "world_size", "nodes", "dtype")}
    ok = g[g.status == OK]
    if ok.empty:
        reasons = {r for r in g.reason if isinstance(r, str)}
        return {**base, "status": first.status, "reason": "; ".join(sorted(reasons)) or None}
    wrong = ok[ok.correct.astype(object) == False]  # noqa: E712 - None means unchecked
    use = ok.drop(wrong.index)
    top = ok.loc[ok.size_bytes.idxmax()]
    bw_max = float(top["busbw_gbps"])
    # busbw at the slowest / fastest iteration of the largest size
    at_lo, at_hi = F.point_range(
        bw_max, *(top.get(c) for c in ("time_us", "time_min_us", "time_max_us"))
    )
    out: dict[str, Any] = {
        **base,
        "status": OK,
        "max_size_bytes": int(ok.size_bytes.max()),
        "busbw_at_max_gbps": bw_max,
        "busbw_at_max_lo_gbps": at_lo,
        "busbw_at_max_hi_gbps": at_hi,
        "excluded": ", ".join(f"{fmt_bytes(s)} (wrong result)" for s in wrong.size_bytes) or None,
        "method": METHOD,
    }
    try:
        fit = fit_alpha_beta(use.size_bytes.tolist(), (use.time_us * 1e-6).tolist())
    except ValueError as e:
        return {**out, "note": f"no fit: {e}"}
    factor = F.allreduce_busbw_factor(int(first.world_size))
    beta_gbps = fit.beta_bps / 1e9 if fit.beta_bps else None
    out.update(
        alpha_us=fit.alpha_s * 1e6,
        beta_algbw_gbps=beta_gbps,
        beta_busbw_gbps=F.busbw_gbps(beta_gbps, int(first.world_size)) if beta_gbps else None,
        knee_bytes=fit.knee_bytes,
        n_points=fit.n_points,
        rms_rel_residual=fit.rms_rel_residual,
        max_abs_rel_residual=fit.max_abs_rel_residual,
        r2_log_time=(
            r2 := r2_log_time(
                use.size_bytes.tolist(), (use.time_us * 1e-6).tolist(), fit.alpha_s, fit.beta_bps
            )
        ),
        fit_quality=fit_quality(fit.rms_rel_residual, r2),
        downweighted=", ".join(
            f"{fmt_bytes(s)}: {w:.2f}" for s, w in fit.downweighted(use.size_bytes.tolist())
        )
        or None,
        note=fit.note,
        busbw_factor=factor,
    )
    return out


def fits(df):
    import pandas as pd

    keys = ["backend", "world_size", "nodes", "dtype"]
    rows = [fit_group(g) for _, g in df.groupby(keys, sort=True, dropna=False)]
    out = pd.DataFrame(rows)
    return out.reindex(columns=FIT_COLUMNS + [c for c in out.columns if c not in FIT_COLUMNS])


def _label(r) -> str:
    nodes = f", {int(r.nodes)} nodes" if r.nodes and int(r.nodes) > 1 else ""
    return f"{r.backend} n={int(r.world_size)}{nodes} {r['dtype']}"


def figure(df, fit_df, png: str, svg: str, overlay=None, overlay_label: str = "") -> None:
    """busbw vs size (log x) and time vs size (log-log), with the fit and the knee.
    ``overlay``: another run's allreduce table, its busbw and times drawn for comparison."""
    import numpy as np
    import pandas as pd

    from hwlab import figures

    fig, axes = figures.new(1, 2, width=6.0, height=4.4)
    ax_bw, ax_t = axes[0]
    measured = False
    for _, f in fit_df.iterrows():
        g = df[
            (df.backend == f.backend)
            & (df.world_size == f.world_size)
            & (df.nodes == f.nodes)
            & (df["dtype"] == f["dtype"])
            & (df.status == OK)
        ].sort_values("size_bytes")
        if g.empty:
            continue
        measured = True
        label = _label(f)
        good = g[g.correct.astype(object) != False]  # noqa: E712
        bad = g[g.correct.astype(object) == False]  # noqa: E712
        if good.time_min_us.notna().all() and good.time_max_us.notna().all():
            # busbw at the slowest / fastest iteration: the spread, as error bars
            ranges = [
                F.point_range(r.busbw_gbps, r.time_us, r.time_min_us, r.time_max_us)
                for r in good.itertuples()
            ]
            lo = good.busbw_gbps - pd.Series([a for a, _ in ranges], index=good.index)
            hi = pd.Series([b for _, b in ranges], index=good.index) - good.busbw_gbps
            line = ax_bw.errorbar(
                good.size_bytes, good.busbw_gbps, yerr=[lo.clip(lower=0), hi.clip(lower=0)],
                fmt="o-", ms=3.5, capsize=2, label=f"{label} (median, min-max)",
            ).lines[0]  # fmt: skip
        else:
            line = ax_bw.plot(good.size_bytes, good.busbw_gbps, "o-", ms=3.5, label=label)[0]
        color = line.get_color()
        ax_t.errorbar(
            g.size_bytes,
            g.time_us,
            yerr=[g.time_us - g.time_min_us, g.time_max_us - g.time_us],
            fmt="o",
            ms=3.5,
            color=color,
            capsize=2,
            label=f"{label} (median, min-max)",
        )
        if not bad.empty:
            for ax, col in ((ax_bw, "busbw_gbps"), (ax_t, "time_us")):
                ax.plot(bad.size_bytes, bad[col], "x", color="red", ms=8, mew=2)
            ax_bw.plot([], [], "x", color="red", label="wrong result")
        if f.get("beta_algbw_gbps") and f.beta_algbw_gbps == f.beta_algbw_gbps:
            n = np.geomspace(g.size_bytes.min(), g.size_bytes.max(), 200)
            t = f.alpha_us * 1e-6 + n / (f.beta_algbw_gbps * 1e9)
            factor = F.allreduce_busbw_factor(int(f.world_size))
            ax_bw.plot(n, n / t / 1e9 * factor, "--", color=color, lw=1, label="fit α + n/β")
            ax_bw.axhline(f.beta_busbw_gbps, ls=":", color=color, lw=0.8, label="β (busbw)")
            ax_t.plot(n, t * 1e6, "--", color=color, lw=1, label="fit α + n/β")
            if f.knee_bytes and f.knee_bytes == f.knee_bytes:
                ax_bw.axvline(f.knee_bytes, color=color, ls="-.", lw=0.8)
                ax_bw.plot(
                    [f.knee_bytes],
                    [f.beta_busbw_gbps / 2],
                    "D",
                    color=color,
                    ms=7,
                    label=f"knee n* = αβ = {fmt_bytes(f.knee_bytes)} "
                    f"(α = {fmt_sig(f.alpha_us)} µs, β = {fmt_sig(f.beta_busbw_gbps)} GB/s busbw)",
                )
                ax_t.axvline(f.knee_bytes, color=color, ls="-.", lw=0.8)
    if overlay is not None:
        o = overlay[overlay.status == OK]
        for (backend, n), g in o.groupby(["backend", "world_size"]):
            g = g.sort_values("size_bytes")
            label = f"{overlay_label or 'compare'}: {backend} n={n}"
            ax_bw.plot(g.size_bytes, g.busbw_gbps, "x:", color="0.4", ms=4, label=label)
            ax_t.plot(g.size_bytes, g.time_us, "x:", color="0.4", ms=4, label=label)
            measured = True
    from matplotlib.ticker import FixedLocator, FuncFormatter

    ok = df[df.status == OK]
    for ax in (ax_bw, ax_t):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("message size")
        if not ok.empty:  # a tick every 8x, labelled in B / KiB / MiB / GiB
            lo, hi = int(ok.size_bytes.min()).bit_length() - 1, int(ok.size_bytes.max())
            ax.xaxis.set_major_locator(FixedLocator([2.0**e for e in range(lo, 41, 3)
                                                     if 2**e <= hi]))  # fmt: skip
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_bytes(v)))
    ax_t.set_yscale("log")
    ax_bw.set_ylabel("bus bandwidth (GB/s) = algbw × 2(n−1)/n")
    ax_t.set_ylabel("time per AllReduce (µs)")
    ax_bw.set_title("AllReduce bus bandwidth vs message size")
    ax_t.set_title("AllReduce time vs message size")
    if measured:
        ax_bw.legend(fontsize=7, loc="upper left")
        ax_t.legend(fontsize=7, loc="upper left")
    else:
        reasons = "; ".join(sorted({str(r) for r in fit_df.reason if isinstance(r, str)}))
        for ax in (ax_bw, ax_t):
            ax.text(
                0.5,
                0.5,
                "not measured:\n" + _wrap(reasons),
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=7,
            )
    figures.save(fig, png, svg)


def _wrap(text: str, width: int = 60) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def markdown(df, fit_df) -> str:
    """tables/allreduce.md: per sweep its rows, then the fits, with the method."""
    lines = ["### Lab 3 — AllReduce sweep", ""]
    for _, f in fit_df.iterrows():
        g = df[
            (df.backend == f.backend)
            & (df.world_size == f.world_size)
            & (df.nodes == f.nodes)
            & (df["dtype"] == f["dtype"])
        ]
        lines += [f"#### {_label(f)}", ""]
        if f.status != OK:
            lines += [f"**{f.status}**: {f.reason}", ""]
            continue
        view = g[g.status == OK].copy()
        view["size"] = view.size_bytes.map(fmt_bytes)
        view["spread_pct"] = 100 * view.rel_spread.astype(float)
        view["correct"] = view.correct.map({True: "yes", False: "**NO**"}).fillna("unchecked")
        cols = {
            "size": "size",
            "size_bytes": "bytes",
            "time_us": "time (µs)",
            "time_min_us": "min (µs)",
            "time_max_us": "max (µs)",
            "spread_pct": "spread (%)",
            "algbw_gbps": "algbw (GB/s)",
            "busbw_gbps": "busbw (GB/s)",
            "correct": "correct",
            "iters": "iters",
        }
        lines.append(md_table(view[list(cols)].rename(columns=cols)))
        lines.append("")
        timer = str(view.timer.iloc[0])
        capped = view[view.iters < view.iters.max()]
        notes = [
            f"timer: {timer}"
            + (" (on a CPU device time is wall time)" if timer == "perf_counter_ns" else ""),
            "time = median over iterations on each rank, max over ranks; min/max over the "
            "iterations of that rank",
            "busbw = algbw × 2(n−1)/n = algbw × "
            f"{fmt_sig(F.allreduce_busbw_factor(int(f.world_size)), 4)}"
            " (nccl-tests); GB = 1e9 bytes",
        ]
        if not capped.empty:
            notes.append(
                "fewer iterations for the largest sizes (allreduce.budget_mb caps the timed "
                f"traffic per size): from {fmt_bytes(capped.size_bytes.min())} on, "
                + ", ".join(
                    f"{fmt_bytes(s)}: {int(w)}+{int(n)}"
                    for s, w, n in zip(capped.size_bytes, capped.warmup, capped.iters, strict=True)
                )
                + " (warmup+timed)"
            )
        if isinstance(f.get("reason"), str):
            notes.append(f"**{f.reason}**")
        lines += [f"- {n}" for n in notes] + [""]

    lines += ["### α-β fit and knee", ""]
    ok = fit_df[fit_df.status == OK]
    if ok.empty:
        lines += ["No sweep was measured in this run; nothing to fit.", ""]
    else:
        view = ok.copy()
        view["sweep"] = [_label(r) for _, r in ok.iterrows()]
        view["knee"] = view.knee_bytes.map(fmt_bytes)
        cols = {
            "sweep": "sweep",
            "alpha_us": "α (µs)",
            "beta_algbw_gbps": "β algbw (GB/s)",
            "beta_busbw_gbps": "β busbw (GB/s)",
            "knee": "knee n* = αβ",
            "busbw_at_max_gbps": "busbw at largest (GB/s)",
            "rms_rel_residual": "rms rel. residual",
            "r2_log_time": "R² (log t)",
            "fit_quality": "fit",
        }
        lines.append(md_table(view.reindex(columns=list(cols)).rename(columns=cols)))
        lines += [
            "",
            f"- method: {METHOD}",
            "- the knee n* = α·β is the size at which the model's bandwidth is half of β: "
            "below it AllReduce is latency-bound, above it bandwidth-bound",
        ]
        for _, r in ok.iterrows():
            for col, what in (
                ("downweighted", "down-weighted (final Huber weight)"),
                ("excluded", "excluded"),
                ("note", "note"),
            ):
                if isinstance(r.get(col), str) and r[col]:
                    lines.append(f"- {_label(r)} — {what}: {r[col]}")
        lines.append("")
    return "\n".join(lines)


def write_allreduce(
    points: list[str], *, csv: str, md: str, fit_csv: str, png: str, svg: str
) -> None:
    """Snakemake entry: every sweep record -> table, fit, Markdown and figure."""
    from hwlab.records import read_all

    records = read_all(points, "allreduce")
    df = table(records)
    fit_df = fits(df)
    write_table(df, csv)
    write_table(fit_df, fit_csv)
    write_text(md, markdown(df, fit_df))
    figure(df, fit_df, png, svg)
