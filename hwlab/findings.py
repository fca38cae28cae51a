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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hwlab import decode_findings as DF
from hwlab import headlines as H
from hwlab.io import fmt_sig, read_json

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
    ncu_launches: pd.DataFrame | None = None  # tables/ncu.csv: one row per launch x metric
    ncu_gemm: pd.DataFrame | None = None
    allreduce: pd.DataFrame | None = None
    allreduce_fit: pd.DataFrame | None = None
    decode_model: pd.DataFrame | None = None  # tables/decode_model.csv, read once
    gemm_points: list[dict[str, Any]] = field(default_factory=list)  # the GEMM point records
    ceilings: dict[str, Any] | None = None  # roofline_ceilings, computed once
    texts: dict[str, str] = field(default_factory=dict)  # Markdown tables by name
    reasons: dict[str, list[str]] = field(default_factory=dict)  # why a stage is empty

    @property
    def kind(self) -> str:
        return self.device.get("kind", "cpu")

    @property
    def model_dtype(self) -> str | None:
        d = self.decode
        if d is not None and "dtype" in d and d["dtype"].notna().any():
            return str(d["dtype"].dropna().iloc[0])
        return None


def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


# where each stage's records lie in a run folder, for a caller that passes no paths
RECORD_GLOBS = {
    "gemm": "gemm/**/*.json",
    "decode": "decode/b*.json",
    "ncu": "ncu/b*.json",
    "allreduce": "allreduce/*.json",
}


def _records(pattern: str) -> list[dict[str, Any]]:
    return [read_json(p) for p in sorted(glob.glob(pattern, recursive=True))]


def stage_records(
    folder: Path, stage: str, record_paths: Mapping[str, Sequence[str]] | None = None
) -> list[dict[str, Any]]:
    """A stage's records: the paths the workflow configured (``record_paths[stage]``, as
    the findings rule lists them), read and validated by :func:`hwlab.records.read_all`;
    without them (a reference folder, a caller outside the workflow) every file matching
    RECORD_GLOBS[stage], read as they are."""
    from hwlab import records

    if record_paths is not None and stage in record_paths:
        return records.read_all(record_paths[stage])
    return _records(str(folder / RECORD_GLOBS[stage]))


def _not_ok(records: list[dict[str, Any]], label: str) -> list[str]:
    """One line per distinct reason a stage did not run, its batches listed together."""
    from hwlab.io import group_reasons

    return group_reasons(
        (
            (r.get("batch", r.get("world_size", "")), r.get("status"), r.get("reason"))
            for r in records
            if r.get("status") != "ok"
        ),
        label,
    )


def load_run(
    folder: str | Path,
    name: str | None = None,
    record_paths: Mapping[str, Sequence[str]] | None = None,
) -> Run:
    """A results folder (or a reference folder of intermediates) as tables.
    ``record_paths``: stage (gemm, decode, ncu, allreduce) -> the record files the workflow
    configured (:func:`stage_records`); a stage not given is globbed in the folder."""
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
    run.gemm_points = stage_records(folder, "gemm", record_paths)
    if run.roofline is None and run.gemm_points:
        run.roofline = roofline.build_table(run.gemm_points, run.peaks)

    dec_records = stage_records(folder, "decode", record_paths)
    run.decode_model = DF.load_model(folder)
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

    ncu_records = stage_records(folder, "ncu", record_paths)
    run.reasons["ncu"] = _not_ok(ncu_records, "batch")
    run.ncu_lab1b = _csv(t / "ncu_lab1b.csv")
    run.ncu_launches = _csv(t / "ncu.csv")
    run.ncu_gemm = _csv(t / "ncu_gemm.csv")

    run.allreduce = _csv(t / "allreduce.csv")
    run.allreduce_fit = _csv(t / "allreduce_fit.csv")
    ar_records = stage_records(folder, "allreduce", record_paths)
    run.reasons["allreduce"] = [
        f"{Path(r.get('file', '')).stem or r.get('backend')} "
        f"world size {r.get('world_size')}: {r.get('status')}: "
        f"{r.get('reason')}"
        for r in ar_records
        if r.get("status") != "ok"
    ]
    for key in (
        "roofline",
        "peaks",
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
    """The ceilings the roofline headlines and Lab 2's method lines read (the main
    series' dtype, the run's best points and their ranges); computed once per Run."""
    from hwlab.roofline import best_from_table, best_range_from_table, run_ceilings

    if run.ceilings is not None:
        return run.ceilings
    s = H.roofline_series(run.roofline) if run.roofline is not None else None
    if s is None or s.empty:
        run.ceilings = {}
        return run.ceilings
    dtype = str(s["dtype"].iloc[0])
    best = best_from_table(run.roofline)
    ranges = best_range_from_table(run.roofline) if "tflops_lo" in run.roofline else None
    run.ceilings = {**run_ceilings(run.peaks, best, dtype, ranges), "dtype": dtype}
    return run.ceilings


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
        H.gpu_util_finding(
            run.decode, run.ncu_lab1b, run.reasons.get("ncu"), ncu_launches=run.ncu_launches
        ),
        H.gemv_switch_finding(run.kernel_classes, run.device, run.model_dtype),
        H.regime_finding(roof, ceil, run.decode),
        H.ridge_finding(roof, ceil),
        H.plateau_finding(roof, ceil),
        H.sweet_spot_finding(roof, ceil),
        H.attention_finding(run.kernel_classes),
        DF.decode_overhead_finding(
            run.decode_model,
            H.decode_overhead_finding(run.decode, device_kind=run.kind),
        ),
        H.cache_finding(roof, run.ncu_gemm),
        *extra_headlines(run),
        *DF.headlines(run.folder),
    ]


# ---- §1 hierarchy (hwlab.hierarchy.report) and §3/§5/§8 (hwlab.questions) ---------------


def extra_headlines(run: Run) -> list[H.Finding]:
    from hwlab import questions
    from hwlab.hierarchy import report as hierarchy_report

    return [*hierarchy_report.headlines(run.folder), *questions.headlines(run)]


# ---- rendering -------------------------------------------------------------------------


def _f(x: Any) -> str:
    """A number in prose: three significant digits, whole and grouped from 1,000 up
    (:func:`hwlab.io.fmt_sig`: 3,350, never 3.35e+03); 'n/a' when missing."""
    if x is None or (isinstance(x, float) and pd.isna(x)):
        return "n/a"
    return fmt_sig(x)


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
    counts = {v: sum(f.verdict == v for f in findings) for v in H.VERDICTS}
    out = [
        "Each statement of the writeup, tested on this run's data with its spread: "
        + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        + ". _Inconclusive_ means the measured spread straddles the threshold; _not "
        "evaluable_ that the data it needs is not in this run (the reason follows).",
        "",
    ]
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


def _repeats(roof: pd.DataFrame, method: dict[str, Any]) -> str:
    if "n_repeats" in roof and roof["n_repeats"].notna().any():
        n = sorted({int(x) for x in roof["n_repeats"].dropna()})
        return str(n[0]) if len(n) == 1 else f"{n[0]}–{n[-1]}"
    return str(method.get("repeats"))


def lab2_method_lines(run: Run) -> list[str]:
    roof = run.roofline
    if roof is None or roof.empty:
        return ["_No GEMM sweep in this run._"]
    ok = [p for p in run.gemm_points if p.get("status") == "ok"]
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
        f"- Timing: {timer}; {m.get('warmup')} warmup calls, median of "
        f"{_repeats(roof, m)} repeats × {m.get('iters')} iterations, with the spread "
        "(max − min) / median of the repeats; wall time recorded beside it.",
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
    """The writeup's observation x lab table, each cell from this run's data, every
    measured number with its spread (no single noisy point stands alone)."""
    cls = run.kernel_classes
    have_cls = cls is not None and not cls.empty
    gemv = H.class_ranges(cls, "gemv") if have_cls else {}
    lab = run.ncu_lab1b
    roof = H.roofline_series(run.roofline) if run.roofline is not None else pd.DataFrame()

    def ncu(metric: str, batch: int) -> str:
        lo, hi = H._lab1b_range(lab, metric, batch, run.ncu_launches)
        return H.span(lo, hi, "%") if lo is not None else "n/a"

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
    b1 = min(gemv) if gemv else None

    rows = []
    lab1a = f"GEMV {H._pr(gemv[b1])} of decode at batch {b1}" if b1 is not None else "n/a"
    lab1b = (
        f"SM Busy {ncu('sm_busy', nb[0])}, DRAM {ncu('dram_throughput', nb[0])} at batch {nb[0]}"
        if nb
        else ncu_na
    )
    if not roof.empty:
        m1 = roof.iloc[0]
        lab2 = (
            f"M={int(m1['M'])} at {H.span(*H.rng(m1, 'pct_mem_peak'), '%')} of the memory peak "
            f"({H.line_state(m1)} the {H.ON_MEMORY_LINE:.0f}% line)"
        )
    else:
        lab2 = "n/a"
    rows.append(("Smallest batch is launch/overhead-bound", lab1a, lab1b, lab2))
    sw = by_key["gemv_switch"]
    ev = sw.evidence
    if ev.get("switch_batch") is not None and ev.get("before_batch") is not None:
        lab1a = f"switch between batch {ev['before_batch']} and {ev['switch_batch']}"
    elif sw.verdict == H.NOT_EVALUABLE and ev.get("matrix_engine", {}).get("reason"):
        gone = ev.get("gemv_gone_batch")
        lab1a = (f"GEMV gone at batch {gone}; " if gone is not None else "") + (
            "no matrix engine path to switch to"
        )
    else:
        lab1a = f"no clear switch in the sweep ({sw.verdict})"
    lab1b = f"SM Busy {ncu('sm_busy', nb[0])} → {ncu('sm_busy', nb[1])}" if nb else ncu_na
    ramp = roof[roof["M"].isin([16, 32, 64])] if not roof.empty else roof
    lab2 = (
        "TFLOP/s "
        + " → ".join(H.span(*H.rng(r, "tflops")) for _, r in ramp.iterrows())
        + " at M="
        + "/".join(str(int(m)) for m in ramp["M"])
        if not ramp.empty
        else "n/a"
    )
    rows.append(("Matmul path changes with batch (GEMV → GEMM)", lab1a, lab1b, lab2))
    if not roof.empty:
        states = {int(r["M"]): H.line_state(r) for _, r in roof.iterrows()}
        on = [m for m, st in states.items() if st == "on"]
        unsure = [m for m, st in states.items() if st == "uncertain"]
        lab2 = (
            f"M={on[0]}–{on[-1]} at or above {H.ON_MEMORY_LINE:.0f}% of the memory peak"
            if on
            else "no point clearly on it"
        ) + (f"; M={unsure} straddle it" if unsure else "")
    else:
        lab2 = "n/a"
    lab1b = (
        f"DRAM {ncu('dram_throughput', nb[0])} → {ncu('dram_throughput', nb[1])}" if nb else ncu_na
    )
    dec = H.decode_regimes(run.decode)
    flat = [d for d in dec if d["regime"].startswith("flat")]
    unsure_d = [d for d in dec if d["regime"] == "uncertain"]
    lab1a = (
        "TPOT ~flat (elasticity < "
        f"{H.FLAT}) over batch " + ", ".join(f"{d['from']}→{d['to']}" for d in flat)
        if flat
        else "TPOT never clearly flat"
        if dec
        else "n/a"
    ) + (
        "; within noise at " + ", ".join(f"{d['from']}→{d['to']}" for d in unsure_d)
        if unsure_d
        else ""
    )
    rows.append(("Memory-bound regime", lab1a, lab1b, lab2))
    ridge = by_key["ridge"].evidence
    first_off = (
        f"first clearly off the memory line at M={ridge['measured_ridge_M']} "
        f"(AI {_f(ridge.get('measured_ridge_ai'))})"
        if ridge.get("measured_ridge_M") is not None
        else f"not read off the sweep ({by_key['ridge'].verdict})"
    )
    rows.append(
        (
            "Ridge point",
            "(measured by Lab 2)",
            "(n/a)",
            f"{first_off}; dense ridge {_f(ridge.get('dense_ridge'))}",
        )
    )
    pl = by_key["plateau"]
    ev = pl.evidence
    if ev and len(ev.get("Ms", [])) >= H.MIN_PLATEAU_POINTS:
        lab2 = (
            f"plateau {_f(ev.get('low_tflops'))}–{_f(ev.get('best_tflops'))} TFLOP/s "
            f"(M={ev.get('Ms')})"
        )
    elif ev:
        lab2 = (
            f"no plateau: only M={ev.get('best_M')} "
            f"({H.span(*ev.get('best_tflops_range'))} TFLOP/s) within "
            f"{100 * H.PLATEAU_BAND:.0f}% of the best"
        )
    else:
        lab2 = "n/a"
    rows.append(("Compute ceiling", "(n/a)", "(n/a)", lab2))
    out = [
        "| Observation | Lab 1a (inventory / decode) | Lab 1b (NCU) | Lab 2 (roofline) |",
        "|---|---|---|---|",
    ]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    out += [
        "",
        "Ranges are min–max over repeats (Lab 2), over the profiled steps (Lab 1a shares) and "
        "over the captured launches (Lab 1b); one number where the data has no spread.",
    ]
    return out


WRITEUP_OPERATING_BATCH = 64  # the writeup's operating batch, which it matches to M=64


def operating_line(op: dict[str, Any] | None) -> str:
    if op is None:
        return "- Operating batch: no decode sweep with a batch-1 baseline in this run."
    b0 = op["baseline_batch"]
    if op.get("batch") is None:
        line = (
            f"- Operating batch: no batch beyond {b0} keeps a scaling efficiency of at least "
            f"{100 * op['min_efficiency']:.0f}% over its spread"
        )
        if op["uncertain_batches"]:
            line += f" (batch {op['uncertain_batches']} straddles it: noise-limited)"
        line += "."
    else:
        e_lo, e_hi = op["efficiency_range"]
        line = (
            f"- **Operating batch for this model on this device: {op['batch']}** — the largest "
            f"batch beyond {b0} whose scaling efficiency stays at or above "
            f"{100 * op['min_efficiency']:.0f}% over its spread "
            f"({H.span(100 * e_lo, 100 * e_hi, '%')}): TPOT {fmt_sig(op['tpot_ms'])} ms, "
            f"{H.span(*op['tokens_per_s_range'])} tok/s, {fmt_sig(op['throughput_multiple'])}× "
            f"batch {b0}'s throughput."
        )
        if op["noise_limited"]:
            bigger = [b for b in op["uncertain_batches"] if b > op["batch"]]
            line += (
                f" Noise-limited: batch {bigger} straddles {100 * op['min_efficiency']:.0f}%, "
                "so it could be larger."
            )
    if op["flagged"]:
        line += (
            " Scaling efficiency above 1 at "
            + ", ".join(f"batch {x['batch']} ({fmt_sig(x['efficiency'])})" for x in op["flagged"])
            + ": more than that many independent batch-1 streams — noise (a slow batch-1 "
            "baseline) or a measurement artefact; not used."
        )
    return line


def agreement_line(op: dict[str, Any] | None, sweet: H.Finding) -> str | None:
    """The writeup matches its operating batch (64) with its per-matmul sweet spot (M=64):
    do the two agree here, or are they noise-limited?"""
    sp = sweet.evidence
    if op is None or not sp or "M" not in sp:
        return None
    head = (
        f"- Operating batch vs sweet spot: the writeup's operating batch "
        f"{WRITEUP_OPERATING_BATCH} matches its per-matmul sweet spot M="
        f"{H.WRITEUP_SWEET_SPOT_M}. Here: "
    )
    if op.get("batch") is None:
        b0 = op["baseline_batch"]
        return head + f"no operating batch beyond batch {b0}, sweet spot M={sp['M']}."
    tied = sp.get("tied_M") or [sp["M"]]
    pair = f"operating batch {op['batch']}, sweet spot M={sp['M']}"
    if op["batch"] in tied:
        return (
            head
            + pair
            + (f" (M={tied} tied within noise)" if len(tied) > 1 else "")
            + ": they agree."
        )
    if sp.get("noise_limited") or op.get("noise_limited"):
        return (
            head
            + pair
            + (
                ": they differ, but noise-limited ("
                + "; ".join(
                    x
                    for x in (
                        f"M={tied} are tied within noise" if sp.get("noise_limited") else "",
                        f"batch {op['uncertain_batches']} straddles the efficiency threshold"
                        if op.get("noise_limited")
                        else "",
                    )
                    if x
                )
                + ")."
            )
        )
    return (
        head
        + pair
        + (
            ": they differ beyond noise. A decode step is more than one matmul (attention, norms, "
            "copies and framework time scale differently with the batch), so the per-matmul "
            "optimum need not be the decode optimum on this device."
        )
    )


MATMUL = {"gemv", "gemm", "tc_gemm"}


def calibration_lines(run: Run, by_key: dict[str, H.Finding]) -> list[str]:
    op = H.operating_point(run.decode)
    out = [operating_line(op)]
    sw = by_key["sweet_spot"]
    sp = sw.evidence
    if sp and "M" in sp:
        tied = sp.get("tied_M") or []
        out.append(
            f"- Per-matmul sweet spot: M={sp['M']} ({_f(sp['pct_dense'])}% of the dense "
            f"peak, {_f(sp['pct_mem'])}% of the memory peak; score "
            f"{H.span(*sp['score_range'])})"
            + (f"; tied within noise with M={[m for m in tied if m != sp['M']]}" if len(tied) > 1
               else "")
            + f" — _{sw.verdict}_ against the writeup's M={H.WRITEUP_SWEET_SPOT_M}."
        )  # fmt: skip
    line = agreement_line(op, sw)
    if line:
        out.append(line)
    out.append(f"- Caches: {by_key['cache'].text}")
    att = by_key["attention"]
    if att.verdict != H.NOT_EVALUABLE:
        groups = att.evidence.get("largest") or []
        tops = list(dict.fromkeys(g["class"] for g in groups))
        target = (
            "the matmuls (FFN and projections; quantised weights such as W4A16 cut the bytes "
            "they stream)"
            if set(tops) <= MATMUL
            else ", ".join(tops)
        )
        worst = max(att.evidence["attention_share"].values())
        rng_ = max(att.evidence["attention_range"].values(), key=lambda r: r[1])
        att_word = {
            H.HOLDS: f"below {100 * H.ATTN_LOW:.0f}% at every batch: not the bottleneck",
            H.FAILS: f"at or above {100 * H.ATTN_LOW:.0f}% at some batch: a real but "
            + ("second-order" if att.evidence["second_order"] else "first-order") + " share",
            H.INCONCLUSIVE: f"within noise of {100 * H.ATTN_LOW:.0f}%",
        }[att.verdict]  # fmt: skip
        out.append(
            f"- Where decode time goes: the largest kernel class is {H.largest_text(groups)}. "
            f"Optimise {target} first; attention peaks at {100 * worst:.1f}%"
            + (
                f" ({H.span(100 * rng_[0], 100 * rng_[1], '%')} over the profiled steps)"
                if H.span(100 * rng_[0], 100 * rng_[1]) != H._fmt(100 * rng_[0])
                else ""
            )
            + f", {att_word}."
        )
    gu = by_key["gpu_util"]
    if gu.verdict == H.HOLDS:
        out.append(
            "- GPU-Util as a diagnostic: retired — use NCU's "
            "`sm__throughput.avg.pct_of_peak_sustained_elapsed` and "
            "`gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed` instead. " + gu.text
        )
    elif gu.verdict == H.NOT_EVALUABLE:
        # by_key keeps the headline order (render builds it from the numbered list)
        n = list(by_key).index("gpu_util") + 1
        out.append(
            f"- GPU-Util as a diagnostic: not evaluable on this run (headline {n} says why)."
        )
    else:
        out.append(f"- GPU-Util as a diagnostic: {gu.text}")
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
            beta = H._num(r.get("beta_busbw_gbps"))
            at_max = H._num(r.get("busbw_at_max_gbps"))
            m_lo = H._num(r.get("busbw_at_max_lo_gbps")) or at_max
            m_hi = H._num(r.get("busbw_at_max_hi_gbps")) or at_max
            line = (
                f"- {r['backend']} world size {int(r['world_size'])} ({r['dtype']}): latency "
                f"α = {_f(r.get('alpha_us'))} µs; β = {_f(beta)} GB/s busbw, the bandwidth the "
                f"fitted t(n) = α + n/β tends to as n → ∞ (a model parameter, not a measured "
                f"point); knee n* = α·β = {_f(r.get('knee_bytes'))} bytes (half of β "
                f"reached); busbw measured at the largest size {H.span(m_lo, m_hi)} GB/s "
                "(slowest–fastest iteration)."
            )
            r2, rms = H._num(r.get("r2_log_time")), H._num(r.get("rms_rel_residual"))
            if r2 is not None or rms is not None:
                line += (
                    " Fit: "
                    + ", ".join(
                        x
                        for x in (
                            f"R² = {r2:.4f} on log time" if r2 is not None else "",
                            f"rms relative residual {100 * rms:.1f}%" if rms is not None else "",
                            f"max {100 * H._num(r.get('max_abs_rel_residual')):.0f}%"
                            if H._num(r.get("max_abs_rel_residual")) is not None
                            else "",
                        )
                        if x
                    )
                    + f" — {r.get('fit_quality', 'unknown')}."
                )
            if beta is not None and m_lo is not None and beta < m_lo:
                line += (
                    f" β lies below the busbw measured at the largest size ({_f(m_lo)}–"
                    f"{_f(m_hi)} GB/s): the straight line α + n/β, fitted to every size with "
                    "equal relative weight, undershoots the largest ones; read the measured "
                    "busbw as the bandwidth actually reached."
                )
            if r.get("fit_quality") == "poor":
                line += (
                    " The α-β model describes this sweep poorly (protocol switches, noise): "
                    "α, β and the knee are indicative only."
                )
            out.append(line)
    elif run.reasons.get("allreduce"):
        out += [f"- {r}" for r in run.reasons["allreduce"]]
    else:
        out.append("_No AllReduce sweep in this run._")
    if run.allreduce is not None and "correct" in run.allreduce:
        ok = (
            run.allreduce[run.allreduce["status"] == "ok"]
            if "status" in run.allreduce
            else (run.allreduce)
        )
        bad = ok[ok["correct"] == False]  # noqa: E712
        if len(ok):
            out.append(
                f"- Correctness: {len(ok) - len(bad)} of {len(ok)} "
                "sizes reduced to exactly the expected values"
                + (f"; WRONG at {list(bad['size_bytes'])}" if len(bad) else "")
                + "."
            )
    return out


def _embed(md: str, section: str) -> str:
    """A table file's Markdown inside a findings section: a first heading that repeats the
    section's lab loses the repetition ('### Lab 1b — Nsight …' -> '### Nsight …')."""
    lines = md.splitlines()
    lab = section.split(" — ")[0]
    if lines and lines[0].startswith("#"):
        hashes, _, title = lines[0].partition(" ")
        if title.startswith(f"{lab} — "):
            lines[0] = f"{hashes} {title[len(lab) + 3 :]}"
    return "\n".join(lines) + "\n"


def compare_lines(run: Run, compare_with: str) -> list[str]:
    """Links to the comparison figures (findings.compare_with)."""
    label = Path(compare_with).name
    out = [
        f"Every figure of this run with `{compare_with}` overlaid (`figures/compare/`); a "
        "figure whose data one side lacks says so instead of repeating this run's figure:",
        "",
    ]
    for name in COMPARE_FIGURES:
        out.append(f"- [{name} vs {label}](figures/compare/{name}.png)")
    return out


def render(run: Run, findings: list[H.Finding] | None = None, compare_with: str = "") -> str:
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

    L += _hierarchy_report().section(run.folder, by_key)  # §1 — Memory hierarchy

    L += ["", f"## {SECTIONS[1]}", ""]
    L.append(
        _embed(run.texts["lab1a"], SECTIONS[1])
        if "lab1a" in run.texts
        else _skipped(run, "decode", "Lab 1a")
    )
    L.append(_figure(run, "kernel_classes", "kernel class shares vs batch"))
    if "decode" in run.texts:
        L += [run.texts["decode"]]
        L.append(_figure(run, "decode_sweep", "TPOT and throughput vs batch"))

    L += [""] + DF.section_lines(run.folder, by_key)

    L += ["", f"## {SECTIONS[2]}", ""]
    L.append(
        _embed(run.texts["ncu_lab1b"], SECTIONS[2])
        if "ncu_lab1b" in run.texts
        else _skipped(run, "ncu", "Lab 1b")
    )
    L.append(_figure(run, "ncu_lab1b", "Speed-of-Light per batch"))

    L += ["", f"## {SECTIONS[3]}", "", "Methodology as actually run:", ""]
    L += lab2_method_lines(run)
    L += [""]
    if "roofline" in run.texts:
        L.append(_embed(run.texts["roofline"], SECTIONS[3]))
    L.append(_figure(run, "roofline", "roofline"))
    if "peaks" in run.texts:
        L.append(run.texts["peaks"])
    L += ["### Readings", ""] + [
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
    L += _questions().section3_5(run, by_key) + _questions().section8(run, by_key)
    if compare_with:
        L += ["", f"## Comparison with {Path(compare_with).name}", ""]
        L += compare_lines(run, compare_with)
    return "\n".join(L).rstrip() + "\n"


def _hierarchy_report():
    from hwlab.hierarchy import report

    return report


def _questions():
    from hwlab import questions

    return questions


def remove_stale_compare_figures(folder: str | Path) -> list[str]:
    """With findings.compare_with unset, figures/compare/ belongs to an earlier comparison:
    remove it, so no figure outlives the setting that made it."""
    out = Path(folder) / "figures" / "compare"
    removed = []
    if out.is_dir():
        for p in sorted(out.iterdir()):
            if p.is_file() and p.suffix in (".png", ".svg"):
                p.unlink()
                removed.append(str(p))
        if not any(out.iterdir()):
            out.rmdir()
    return removed


def write_findings(
    folder: str,
    md: str,
    findings_json: str,
    compare_with: str = "",
    record_paths: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Snakemake entry: findings.md and the headline statements as JSON (with verdicts).
    ``record_paths``: the configured record files per stage (see :func:`load_run`)."""
    from hwlab.io import write_json, write_text

    run = load_run(folder, record_paths=record_paths)
    f = headlines(run)
    if not compare_with:
        remove_stale_compare_figures(folder)
    write_text(md, render(run, f, compare_with))
    write_json(
        findings_json,
        {
            "run": run.name,
            "verdicts": {x.key: x.verdict for x in f},
            "findings": [x.as_dict() for x in f],
        },
    )


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

    what = {
        "roofline": "GEMM sweep",
        "decode_sweep": "decode sweep (TPOT per batch)",
        "kernel_classes": "kernel inventory",
        "ncu_lab1b": "Lab 1b capture",
        "allreduce": "AllReduce sweep",
    }

    def missing_in_ref(name: str) -> None:
        # the figure would be this run's own figure unchanged: say so instead
        empty(
            name,
            f"{label} has no {what[name]} data to overlay; this run's own figure is "
            f"figures/{name}.png",
        )

    def has(df: pd.DataFrame | None, col: str | None = None) -> bool:
        if df is None or df.empty:
            return False
        if "status" in df and (df["status"] == "ok").sum() == 0:
            return False
        return col is None or (col in df and df[col].notna().any())

    if run.roofline is None or run.roofline.empty:
        empty("roofline", "no GEMM sweep in this run")
    elif not has(ref.roofline, "tflops"):
        missing_in_ref("roofline")
    else:
        R.plot(
            run.roofline, run.peaks, *paths("roofline"), overlay=ref.roofline, overlay_label=label
        )
    if run.decode is None:
        empty("decode_sweep", "no decode sweep in this run")
    elif not has(ref.decode, "tpot_ms_p50"):
        missing_in_ref("decode_sweep")
    else:
        decode_tables.plot_sweep(
            run.decode, *paths("decode_sweep"), overlay=ref.decode, overlay_label=label
        )
    if run.kernel_classes is None:
        empty("kernel_classes", "no kernel inventory in this run")
    elif not has(ref.kernel_classes):
        missing_in_ref("kernel_classes")
    else:
        decode_tables.plot_classes(
            run.kernel_classes,
            *paths("kernel_classes"),
            overlay=ref.kernel_classes,
            overlay_label=label,
        )
    ref_lab = ref.ncu_lab1b
    if ref_lab is None or not ncu_plot.batch_columns(ref_lab):
        if run.ncu_lab1b is None or not ncu_plot.batch_columns(run.ncu_lab1b):
            empty("ncu_lab1b", "neither run has a Lab 1b capture")
        else:
            missing_in_ref("ncu_lab1b")
    else:
        ncu_plot.plot_lab1b(
            run.ncu_lab1b if run.ncu_lab1b is not None else ref_lab.iloc[0:0],
            *paths("ncu_lab1b"),
            reasons=run.reasons.get("ncu"),
            overlay=ref_lab,
            overlay_label=label,
        )
    if run.allreduce is None or run.allreduce_fit is None:
        empty("allreduce", "no AllReduce sweep in this run")
    elif not has(ref.allreduce, "busbw_gbps"):
        missing_in_ref("allreduce")
    else:
        allreduce_figure(
            run.allreduce,
            run.allreduce_fit,
            *paths("allreduce"),
            overlay=ref.allreduce,
            overlay_label=label,
        )
    return written
