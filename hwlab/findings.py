"""The writeup, regenerated from a run's own data: ``findings.md``.

:func:`load_run` reads a results folder — the tables the stages wrote, or, where a table is
missing (a reference run ships intermediates only), builds it from the intermediate files
with the stages' own aggregation functions. :func:`headlines` computes every headline
statement (:mod:`hwlab.headlines`); :func:`render` writes the writeup's sections around
them. Every number in the text comes from the run's files; a stage that did not run says
why in place of its table.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hwlab import headlines as H
from hwlab.io import read_json

SECTIONS = (
    "Headline Findings",
    "Lab 1a — Kernel Inventory",
    "Lab 1b — NCU Speed-of-Light",
    "Lab 2 — Roofline",
    "Cross-References Between Labs",
    "What This Calibrates Going Forward",
    "Lab 3 — AllReduce Sweep",
    "Napkin Models",
)


@dataclass
class Run:
    folder: Path
    name: str
    device: dict[str, Any]
    peaks: dict[str, Any]
    env: dict[str, Any] | None = None
    roofline: pd.DataFrame | None = None
    decode: pd.DataFrame | None = None
    kernel_classes: pd.DataFrame | None = None
    kernel_inventory: pd.DataFrame | None = None
    ncu_lab1b: pd.DataFrame | None = None
    ncu_gemm: pd.DataFrame | None = None
    allreduce: pd.DataFrame | None = None
    allreduce_fit: pd.DataFrame | None = None
    texts: dict[str, str] = field(default_factory=dict)  # Markdown tables by name
    reasons: dict[str, list[str]] = field(default_factory=dict)  # why a stage is empty

    @property
    def kind(self) -> str:
        return self.device.get("kind", "cpu")


def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def _records(pattern: str) -> list[dict[str, Any]]:
    return [read_json(p) for p in sorted(glob.glob(pattern, recursive=True))]


def _not_ok(records: list[dict[str, Any]], label: str) -> list[str]:
    return [
        f"{label} {r.get('batch', r.get('world_size', ''))}: {r.get('status')}: "
        f"{r.get('reason')}".replace("  ", " ")
        for r in records
        if r.get("status") != "ok"
    ]


def load_run(folder: str | Path, name: str | None = None) -> Run:
    """A results folder (or a reference folder of intermediates) as tables."""
    from hwlab import decode_tables, inventory, records, roofline

    folder = Path(folder)
    if not (folder / "device.json").is_file():
        raise FileNotFoundError(f"{folder} is not a run folder (no device.json)")
    run = Run(
        folder=folder,
        name=name or folder.name,
        device=records.read_run_device(folder),
        peaks=records.read_run_peaks(folder)
        if (folder / "peaks.json").is_file()
        else {"measured": {}},
    )
    t = folder / "tables"
    if (folder / "env.json").is_file():
        run.env = read_json(folder / "env.json")

    run.roofline = _csv(t / "roofline.csv")
    if run.roofline is None:
        points = _records(str(folder / "gemm" / "**" / "*.json"))
        if points:
            run.roofline = roofline.build_table(points, run.peaks)

    dec_records = _records(str(folder / "decode" / "b*.json"))
    run.reasons["decode"] = _not_ok(dec_records, "batch")
    run.decode = _csv(t / "decode.csv")
    if run.decode is None and dec_records and all("weight_bytes" in r for r in dec_records):
        run.decode = decode_tables.decode_table(dec_records, run.peaks)
    run.kernel_classes = _csv(t / "kernel_classes.csv")
    run.kernel_inventory = _csv(t / "kernel_inventory.csv")
    if run.kernel_classes is None:
        per = {
            int(Path(p).name[1:].split(".")[0]): inventory.read_kernels_csv(p)
            for p in glob.glob(str(folder / "decode" / "b*.kernels.csv"))
        }
        if per:
            run.kernel_inventory, run.kernel_classes = decode_tables.inventory_tables(
                per, inventory.load_rules()
            )
            recs = {r["batch"]: r for r in dec_records}
            run.texts["lab1a"] = decode_tables.lab1a_markdown(
                sorted(per)[:1] + sorted(per)[-1:],
                run.kernel_inventory,
                run.kernel_classes,
                recs,
                run.kind,
            )

    ncu_records = _records(str(folder / "ncu" / "b*.json"))
    run.reasons["ncu"] = _not_ok(ncu_records, "batch")
    run.ncu_lab1b = _csv(t / "ncu_lab1b.csv")
    run.ncu_gemm = _csv(t / "ncu_gemm.csv")

    run.allreduce = _csv(t / "allreduce.csv")
    run.allreduce_fit = _csv(t / "allreduce_fit.csv")
    ar_records = _records(str(folder / "allreduce" / "*.json"))
    run.reasons["allreduce"] = [
        f"{Path(r.get('file', '')).stem or r.get('backend')} "
        f"world size {r.get('world_size')}: {r.get('status')}: "
        f"{r.get('reason')}"
        for r in ar_records
        if r.get("status") != "ok"
    ]
    for key in (
        "roofline",
        "decode",
        "lab1a",
        "ncu_lab1b",
        "ncu_gemm",
        "allreduce",
        "napkin_tp",
        "napkin_decode",
    ):
        p = t / f"{key}.md"
        if p.is_file():
            run.texts[key] = p.read_text()
    return run


# ---- headlines -------------------------------------------------------------------------


def roofline_ceilings(run: Run) -> dict[str, Any]:
    from hwlab.roofline import best_from_table, run_ceilings

    s = H.roofline_series(run.roofline) if run.roofline is not None else None
    if s is None or s.empty:
        return {}
    dtype = str(s["dtype"].iloc[0])
    return {**run_ceilings(run.peaks, best_from_table(run.roofline), dtype), "dtype": dtype}


def headlines(run: Run) -> list[H.Finding]:
    """Every headline statement of the writeup, computed on this run."""
    ceil = roofline_ceilings(run)
    roof = (
        run.roofline
        if run.roofline is not None
        else pd.DataFrame(
            columns=["status", "l2", "dtype", "M", "tflops", "pct_mem_peak", "pct_dense_peak", "ai"]
        )
    )
    return [
        H.gpu_util_finding(run.decode, run.ncu_lab1b, run.reasons.get("ncu")),
        H.gemv_switch_finding(run.kernel_classes, run.kind),
        H.regime_finding(roof, ceil, run.decode),
        H.ridge_finding(roof, ceil),
        H.plateau_finding(roof, ceil),
        H.sweet_spot_finding(roof),
        H.attention_finding(run.kernel_classes),
        H.decode_overhead_finding(run.decode),
        H.cache_finding(roof, run.ncu_gemm),
    ]


# ---- rendering -------------------------------------------------------------------------


def _f(x: Any, nd: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and pd.isna(x)):
        return "n/a"
    return format(x, nd) if isinstance(x, int | float) else str(x)


def _skipped(run: Run, stage: str, what: str) -> str:
    reasons = run.reasons.get(stage) or []
    if reasons:
        return f"_{what} did not run here:_\n\n" + "\n".join(f"- {r}" for r in reasons) + "\n"
    return f"_{what}: no data in this run._\n"


def _figure(run: Run, name: str, alt: str) -> str:
    return (
        f"![{alt}](figures/{name}.png)\n"
        if (run.folder / "figures" / f"{name}.png").is_file()
        else ""
    )


def provenance_lines(run: Run) -> list[str]:
    d = run.device
    lines = [
        f"- device: {d.get('name')} ({d.get('kind')}); catalog entry: "
        f"{d.get('catalog_key') or 'none'} ({d.get('catalog_reason', '')})"
    ]
    if run.env:
        sw, wf = run.env.get("software", {}), run.env.get("workflow", {})
        lines.append(
            f"- software: torch {sw.get('torch')}, transformers {sw.get('transformers')}, "
            f"snakemake {sw.get('snakemake')}, python {sw.get('python')}; CUDA "
            f"{run.env.get('device', {}).get('cuda_version') or 'none'}"
        )
        lines.append(
            f"- workflow commit {wf.get('commit') or 'unknown'}"
            f"{' (with local changes)' if wf.get('dirty') else ''}; config digest "
            f"{run.env.get('config_digest', '')[:12]}; {run.env.get('utc_time')} on "
            f"{run.env.get('host', {}).get('hostname')}"
        )
    return lines


def headline_section(findings: list[H.Finding]) -> list[str]:
    out = []
    for i, f in enumerate(findings, 1):
        out.append(f"{i}. **{f.title}** — _{f.verdict}_. {f.text}")
    out += [
        "",
        "Thresholds: "
        + "; ".join(
            f"{f.key}: " + ", ".join(f"{k} = {v}" for k, v in f.thresholds.items())
            for f in findings
            if f.thresholds
        )
        + " (documented in `hwlab/headlines.py`).",
    ]
    return out


def lab2_method_lines(run: Run) -> list[str]:
    roof = run.roofline
    if roof is None or roof.empty:
        return ["_No GEMM sweep in this run._"]
    pts = _records(str(run.folder / "gemm" / "**" / "*.json"))
    ok = [p for p in pts if p.get("status") == "ok"]
    m = ok[0]["method"] if ok else {}
    timer = (
        "CUDA events around the loop"
        if m.get("timer") == "cuda_events"
        else "perf_counter_ns around the synchronized loop (a CPU: device time = wall time)"
    )
    shapes = sorted({(r["shape"], r["N"], r["K"]) for _, r in roof.iterrows()})
    lines = [
        f"- Op: {m.get('op', 'F.linear')}, shapes "
        + ", ".join(f"{s} (N={n}, K={k})" for s, n, k in shapes)
        + f"; dtypes {', '.join(sorted(roof['dtype'].unique()))}; M = "
        + ", ".join(str(int(x)) for x in sorted(roof["M"].unique()))
        + ".",
        f"- Timing: {timer}; {m.get('warmup')} warmup calls, median of {m.get('repeats')} "
        f"repeats × {m.get('iters')} iterations; wall time recorded beside it.",
        f"- L2 modes: {', '.join(sorted(roof['l2'].unique()))} (warm = back-to-back loop; cold "
        "= a buffer larger than the last-level cache rewritten before every timed call).",
        "- Effective GB/s counts A, B and C once (analytic), not DRAM counters.",
    ]
    ceil = roofline_ceilings(run)
    if ceil:
        if ceil["basis"] == "spec":
            lines.append(
                f"- Peaks: spec of {run.peaks.get('spec_key')}: "
                f"{_f(ceil['spec_tflops'])} TFLOP/s dense {ceil['dtype']}, sparse "
                f"{_f(ceil['spec_sparse_tflops'])}, {_f(ceil['spec_bw_gbps'])} GB/s."
            )
        else:
            lines.append(
                f"- Peaks: no catalog entry for this device, so % of peak is against "
                f"this run's measured ceilings: {_f(ceil['measured_tflops'])} TFLOP/s "
                f"{ceil['dtype']} ({ceil.get('measured_tflops_source')}), "
                f"{_f(ceil['measured_bw_gbps'])} GB/s (STREAM-like copy/triad)."
            )
    return lines


def cross_reference(run: Run, by_key: dict[str, H.Finding]) -> list[str]:
    """The writeup's observation x lab table, each cell from this run's data."""
    cls = run.kernel_classes
    w = H.class_shares_by_batch(cls).fillna(0.0) if cls is not None and not cls.empty else None
    lab = run.ncu_lab1b
    roof = H.roofline_series(run.roofline) if run.roofline is not None else pd.DataFrame()

    def ncu(metric: str, batch: int) -> str:
        v = H._lab1b_value(lab, metric, batch)
        return f"{v:.3g}%" if v is not None else "n/a"

    ncu_batches = (
        [
            int(c[1:])
            for c in lab.columns
            if c.startswith("b") and c[1:].isdigit() and lab[c].notna().any()
        ]
        if lab is not None
        else []
    )
    nb = (ncu_batches[0], ncu_batches[-1]) if ncu_batches else None
    ncu_na = "n/a (not captured)"
    b1 = int(w.index.min()) if w is not None else None

    rows = []
    # batch 1 launch-bound
    lab1a = (
        f"GEMV {100 * w.loc[b1].get('gemv', 0):.0f}% of decode at batch {b1}"
        if w is not None
        else "n/a"
    )
    lab1b = (
        f"SM Busy {ncu('sm_busy', nb[0])}, DRAM {ncu('dram_throughput', nb[0])} at batch {nb[0]}"
        if nb
        else ncu_na
    )
    m1 = roof.iloc[0] if not roof.empty else None
    lab2 = (
        f"M={int(m1['M'])} at {m1['pct_mem_peak']:.0f}% of the memory peak"
        if m1 is not None
        else "n/a"
    )
    rows.append(("Smallest batch is launch/overhead-bound", lab1a, lab1b, lab2))
    # tensor-core path
    sw = by_key["gemv_switch"].evidence
    lab1a = (
        f"switch between batch {sw.get('before_batch')} and {sw.get('switch_batch')}"
        if sw.get("switch_batch") is not None
        else (
            f"GEMV gone at batch {sw.get('gemv_gone_batch')}, no tensor cores"
            if sw.get("gemv_gone_batch") is not None
            else "no switch in the sweep"
        )
    )
    lab1b = f"SM Busy {ncu('sm_busy', nb[0])} → {ncu('sm_busy', nb[1])}" if nb else ncu_na
    ramp = roof[roof["M"].isin([16, 32, 64])] if not roof.empty else roof
    lab2 = (
        "TFLOP/s "
        + " → ".join(f"{v:.3g}" for v in ramp["tflops"])
        + " at M="
        + "/".join(str(int(m)) for m in ramp["M"])
        if not ramp.empty
        else "n/a"
    )
    rows.append(("Matmul path changes with batch (GEMV → GEMM)", lab1a, lab1b, lab2))
    # memory-bound regime
    on = roof[roof["pct_mem_peak"] >= H.ON_MEMORY_LINE] if not roof.empty else roof
    lab2 = (
        f"M={int(on['M'].min())}–{int(on['M'].max())} at or above "
        f"{H.ON_MEMORY_LINE:.0f}% of the memory peak"
        if not on.empty
        else "no point on it"
    )
    lab1b = (
        f"DRAM {ncu('dram_throughput', nb[0])} → {ncu('dram_throughput', nb[1])}" if nb else ncu_na
    )
    dec = H.decode_regimes(run.decode)
    flat = [d for d in dec if d["regime"].startswith("flat")]
    lab1a = f"TPOT ~flat from batch {flat[0]['from']} to {flat[-1]['to']}" if flat else "n/a"
    rows.append(("Memory-bound regime", lab1a, lab1b, lab2))
    ridge = by_key["ridge"].evidence
    first_off = (
        f"first off the memory line at M={ridge['measured_ridge_M']} "
        f"(AI {_f(ridge.get('measured_ridge_ai'))})"
        if ridge.get("measured_ridge_M") is not None
        else "not read off the sweep"
    )
    rows.append(
        (
            "Ridge point",
            "(measured by Lab 2)",
            "(n/a)",
            f"{first_off}; dense ridge {_f(ridge.get('dense_ridge'))}",
        )
    )
    pl = by_key["plateau"].evidence
    rows.append(
        (
            "Compute ceiling",
            "(n/a)",
            "(n/a)",
            f"plateau {_f(pl.get('low_tflops'))}–{_f(pl.get('best_tflops'))} TFLOP/s "
            f"(M={pl.get('best_M')})"
            if pl
            else "n/a",
        )
    )
    out = [
        "| Observation | Lab 1a (inventory / decode) | Lab 1b (NCU) | Lab 2 (roofline) |",
        "|---|---|---|---|",
    ]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return out


def calibration_lines(run: Run, by_key: dict[str, H.Finding]) -> list[str]:
    out = []
    op = H.operating_point(run.decode)
    if op:
        out.append(
            f"- **Operating batch for this model on this device: {op['batch']}** — the largest "
            f"batch whose scaling efficiency is still ≥ {100 * op['min_efficiency']:.0f}% "
            f"({100 * op['efficiency']:.0f}%): TPOT {op['tpot_ms']:.3g} ms, "
            f"{op['tokens_per_s']:.4g} tok/s"
            + (
                f", {op['throughput_multiple']:.3g}× the smallest batch's throughput."
                if op["throughput_multiple"]
                else "."
            )
        )
    else:
        out.append("- Operating batch: no decode sweep with a batch-1 baseline in this run.")
    sp = by_key["sweet_spot"].evidence
    if sp:
        out.append(
            f"- Per-matmul sweet spot: M={sp['M']} ({_f(sp['pct_dense'])}% of the dense "
            f"peak, {_f(sp['pct_mem'])}% of the memory peak)."
        )
    out.append(f"- Caches: {by_key['cache'].text}")
    att = by_key["attention"]
    if att.holds is not None:
        top = sorted(set(att.evidence.get("top_class", {}).values()))
        out.append(
            f"- Where decode time goes: the largest kernel class is {', '.join(top)}; "
            f"attention peaks at "
            f"{100 * max(att.evidence['attention_share'].values()):.1f}%. Optimise the "
            + (
                "FFN matmuls (e.g. W4A16 weights) before attention."
                if att.holds
                else "attention too: it is a real share here."
            )
        )
    gu = by_key["gpu_util"]
    out.append(
        "- GPU-Util as a diagnostic: "
        + (
            "retired — use NCU's `sm__throughput.avg.pct_of_peak_sustained_elapsed` and "
            "`gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed` instead. " + gu.text
            if gu.holds
            else gu.text
        )
    )
    return out


def lab3_lines(run: Run) -> list[str]:
    fit = run.allreduce_fit
    out = []
    if fit is not None and not fit.empty:
        for _, r in fit.iterrows():
            if r.get("status") != "ok":
                out.append(
                    f"- {r['backend']} world size {int(r['world_size'])}: "
                    f"{r.get('status')}: {r.get('reason')}"
                )
                continue
            out.append(
                f"- {r['backend']} world size {int(r['world_size'])} ({r['dtype']}): latency "
                f"α = {_f(r.get('alpha_us'))} µs, asymptotic busbw β = "
                f"{_f(r.get('beta_busbw_gbps'))} GB/s, knee n* = α·β = "
                f"{_f(r.get('knee_bytes'), ',.0f')} bytes (half of β reached); busbw at the "
                f"largest size {_f(r.get('busbw_at_max_gbps'))} GB/s."
            )
    elif run.reasons.get("allreduce"):
        out += [f"- {r}" for r in run.reasons["allreduce"]]
    else:
        out.append("_No AllReduce sweep in this run._")
    if run.allreduce is not None and "correct" in run.allreduce:
        bad = run.allreduce[run.allreduce["correct"] == False]  # noqa: E712
        out.append(
            f"- Correctness: {len(run.allreduce) - len(bad)} of {len(run.allreduce)} "
            "sizes reduced to exactly the expected values"
            + (f"; WRONG at {list(bad['size_bytes'])}" if len(bad) else "")
            + "."
        )
    return out


def render(run: Run, findings: list[H.Finding] | None = None) -> str:
    findings = findings if findings is not None else headlines(run)
    by_key = {f.key: f for f in findings}
    L: list[str] = [
        f"# Hardware Foundations for Inference — measured on {run.device.get('name')}",
        "",
        f"Run `{run.name}`, regenerated by hwlab from this run's own files.",
        "",
    ]
    L += provenance_lines(run)
    L += ["", f"## {SECTIONS[0]}", ""] + headline_section(findings)

    L += ["", f"## {SECTIONS[1]}", ""]
    L.append(run.texts["lab1a"] if "lab1a" in run.texts else _skipped(run, "decode", "Lab 1a"))
    L.append(_figure(run, "kernel_classes", "kernel class shares vs batch"))
    if "decode" in run.texts:
        L += ["#### Decode sweep (TPOT, throughput, napkin bound)", "", run.texts["decode"]]
        L.append(_figure(run, "decode_sweep", "TPOT and throughput vs batch"))

    L += ["", f"## {SECTIONS[2]}", ""]
    L.append(run.texts.get("ncu_lab1b") or _skipped(run, "ncu", "Lab 1b"))
    L.append(_figure(run, "ncu_lab1b", "Speed-of-Light per batch"))

    L += ["", f"## {SECTIONS[3]}", "", "Methodology as actually run:", ""]
    L += lab2_method_lines(run)
    L += [""]
    if "roofline" in run.texts:
        L.append(run.texts["roofline"])
    L.append(_figure(run, "roofline", "roofline"))
    L += ["Readings:", ""] + [
        f"- {by_key[k].text}" for k in ("plateau", "cache", "sweet_spot", "ridge") if k in by_key
    ]
    if "ncu_gemm" in run.texts:
        L += ["", run.texts["ncu_gemm"]]

    L += ["", f"## {SECTIONS[4]}", ""] + cross_reference(run, by_key)
    L += ["", f"## {SECTIONS[5]}", ""] + calibration_lines(run, by_key)

    L += ["", f"## {SECTIONS[6]}", ""] + lab3_lines(run)
    L.append("")
    L.append(_figure(run, "allreduce", "AllReduce busbw vs size"))
    if "napkin_tp" in run.texts:
        L += ["", run.texts["napkin_tp"]]

    L += ["", f"## {SECTIONS[7]}", ""]
    if "napkin_decode" in run.texts:
        L.append(run.texts["napkin_decode"])
    else:
        L.append("_Napkin tables not in this run (`hwlab napkin decode` prints them)._")
    return "\n".join(L).rstrip() + "\n"


def write_findings(folder: str, md: str, findings_json: str) -> None:
    """Snakemake entry: findings.md and the headline statements as JSON."""
    from hwlab.io import write_json, write_text

    run = load_run(folder)
    f = headlines(run)
    write_text(md, render(run, f))
    write_json(findings_json, {"run": run.name, "findings": [x.as_dict() for x in f]})


# ---- comparison figures (findings.compare_with) -------------------------------------------

COMPARE_FIGURES = ("roofline", "decode_sweep", "kernel_classes", "ncu_lab1b", "allreduce")


def write_compare_figures(folder: str, other: str, out_dir: str) -> list[str]:
    """Each figure of this run with another run (another machine's results folder or a
    reference run such as config/reference/rtx5080) overlaid. Writes ``<name>.png`` and
    ``.svg`` for every figure in COMPARE_FIGURES; a figure this run has no data for says so.
    """
    from hwlab import decode_tables, figures, ncu_plot
    from hwlab import roofline as R
    from hwlab.allreduce_table import figure as allreduce_figure

    run, ref = load_run(folder), load_run(other)
    label = ref.name
    out = Path(out_dir)
    written = []

    def paths(name: str) -> tuple[str, str]:
        written.append(str(out / f"{name}.png"))
        return str(out / f"{name}.png"), str(out / f"{name}.svg")

    def empty(name: str, why: str) -> None:
        fig, axes = figures.new(1, 1, width=7, height=1.2)
        axes[0][0].axis("off")
        axes[0][0].text(0, 0.5, f"{name}: {why}", fontsize=8, transform=axes[0][0].transAxes)
        figures.save(fig, *paths(name))

    if run.roofline is not None and not run.roofline.empty:
        R.plot(
            run.roofline, run.peaks, *paths("roofline"), overlay=ref.roofline, overlay_label=label
        )
    else:
        empty("roofline", "no GEMM sweep in this run")
    if run.decode is not None:
        decode_tables.plot_sweep(
            run.decode, *paths("decode_sweep"), overlay=ref.decode, overlay_label=label
        )
    else:
        empty("decode_sweep", "no decode sweep in this run")
    if run.kernel_classes is not None:
        decode_tables.plot_classes(
            run.kernel_classes,
            *paths("kernel_classes"),
            overlay=ref.kernel_classes,
            overlay_label=label,
        )
    else:
        empty("kernel_classes", "no kernel inventory in this run")
    if run.ncu_lab1b is not None:
        ncu_plot.plot_lab1b(
            run.ncu_lab1b,
            *paths("ncu_lab1b"),
            reasons=run.reasons.get("ncu"),
            overlay=ref.ncu_lab1b,
            overlay_label=label,
        )
    else:
        empty("ncu_lab1b", "no Lab 1b table in this run")
    if run.allreduce is not None and run.allreduce_fit is not None:
        allreduce_figure(
            run.allreduce,
            run.allreduce_fit,
            *paths("allreduce"),
            overlay=ref.allreduce,
            overlay_label=label,
        )
    else:
        empty("allreduce", "no AllReduce sweep in this run")
    return written
