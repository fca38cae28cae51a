"""Lab 1b: the Nsight Compute metrics of captured kernels, read with NVIDIA's ``ncu_report``.

Method:
- A report (``.ncu-rep``) is read with ``ncu_report.load_report`` -> ranges -> actions (one
  action per profiled kernel launch) -> ``metric_by_name``; no CSV export is scraped. The
  reader needs no GPU, so tables can be rebuilt anywhere from a report made on a GPU host.
  ``ncu_report`` is the installed module (pip ``ncu-report``) or, failing that, the one
  Nsight Compute ships in ``extras/python`` beside the ``ncu`` binary
  (:func:`import_ncu_report`): a GPU host with Nsight Compute needs no wheel.
- Which metrics, under which names, in which units: ``config/ncu_metrics.yaml`` (data, not
  code). For each lab metric the first candidate name the report has wins (names drift
  across ncu versions and architectures: ``gpu__dram_throughput`` vs ``dram__throughput``);
  a metric the report lacks under every name is an empty cell with a note, never an error.
  Values are stored as ncu reports them (value + ncu's own unit); tables convert for show.
- Per batch, the Lab 1b table takes the kernel captured most often (the attention kernel
  the capture filtered for) and the median of each metric over its captured launches; the
  multiplier column is the last batch's value over the first batch's. Derived: the
  SM-active fraction = SM active cycles / elapsed cycles (the writeup's "98% idle at
  batch 1": 340 / 17,643 = 1.9% active).
"""

from __future__ import annotations

import glob
import importlib
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwlab import formulas as F
from hwlab.io import fmt_sig

DEFAULT_METRICS = Path(__file__).resolve().parent.parent / "config" / "ncu_metrics.yaml"
# where Nsight Compute installs keep their Python report interface (newest version first)
NCU_REPORT_DIRS = (
    "/opt/nvidia/nsight-compute/*/extras/python",
    "/usr/local/cuda*/nsight-compute*/extras/python",
    "/usr/lib/nsight-compute/extras/python",
)


class NcuReportMissing(ImportError, ValueError):
    """Neither an installed ``ncu_report`` nor Nsight Compute's ``extras/python`` imports."""


def _version_key(path: str) -> tuple[int, ...]:
    import re

    return tuple(int(n) for n in re.findall(r"\d+", path))


def ncu_report_dirs(ncu: str | None = None, dirs: Sequence[str] | None = None) -> list[Path]:
    """Candidate ``extras/python`` folders: beside ``ncu`` (or the ncu on the PATH; links
    resolved), then the usual install locations (``dirs``), newest version first."""
    dirs = NCU_REPORT_DIRS if dirs is None else dirs
    out: list[Path] = []
    for binary in filter(None, [ncu, shutil.which("ncu")]):
        for base in {Path(binary).parent, Path(binary).resolve().parent}:
            out.append(base / "extras" / "python")
    for pattern in dirs:
        matches = glob.glob(pattern) if glob.has_magic(pattern) else [pattern]
        out += [Path(m) for m in sorted(matches, key=_version_key, reverse=True)]
    return list(dict.fromkeys(out))


def import_ncu_report(ncu: str | None = None, dirs: Sequence[str] | None = None):
    """The ``ncu_report`` module: installed, else Nsight Compute's own (see
    :func:`ncu_report_dirs`); :class:`NcuReportMissing` saying where it looked if neither."""
    try:
        import ncu_report

        return ncu_report
    except ImportError as e:
        first = f"{type(e).__name__}: {e}"
    tried = []
    for d in ncu_report_dirs(ncu, dirs):
        if not ((d / "ncu_report.py").is_file() or (d / "ncu_report" / "__init__.py").is_file()):
            continue
        sys.modules.pop("ncu_report", None)
        sys.path.insert(0, str(d))
        try:
            mod = importlib.import_module("ncu_report")
        except ImportError as e:
            sys.path.remove(str(d))
            tried.append(f"{d} ({type(e).__name__}: {e})")
            continue
        return mod
    dirs = NCU_REPORT_DIRS if dirs is None else dirs
    looked = ", ".join(tried) or "no extras/python folder found in " + ", ".join(
        [*(str(p) for p in ncu_report_dirs(ncu, ())), *dirs]
    )
    raise NcuReportMissing(
        f"cannot import ncu_report ({first}); Nsight Compute's extras/python: {looked}. "
        "Install it (pip install ncu-report) or put <Nsight Compute>/extras/python on PYTHONPATH"
    )


TIDY_COLUMNS = [
    "batch",
    "kernel",
    "launch",
    "metric",
    "value",
    "unit",
    "label",
    "ncu_metric",
    "status",
    "note",
    "kernel_demangled",
    "device",
]


# ---- the metric mapping (config/ncu_metrics.yaml) ----------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """One lab metric: its label, candidate ncu names (first present wins), units."""

    key: str
    label: str
    names: tuple[str, ...]
    unit: str
    display_unit: str
    display_format: str = ".3g"
    request: bool = False
    section: str | None = None


@dataclass(frozen=True)
class Mapping:
    metrics: tuple[MetricSpec, ...]
    device_names: tuple[str, ...]
    sections: tuple[str, ...]

    def spec(self, key: str) -> MetricSpec:
        for m in self.metrics:
            if m.key == key:
                return m
        raise KeyError(f"metric {key!r} is not in the mapping (known: {self.keys()})")

    def keys(self) -> list[str]:
        return [m.key for m in self.metrics]

    def requested(self) -> list[str]:
        """Metric names the capture passes to ``ncu --metrics`` (each entry's first name)."""
        return [m.names[0] for m in self.metrics if m.request]


def parse_mapping(data: Any, source: str = "metric mapping") -> Mapping:
    """Validate a mapping's structure; errors name the entry and the field."""
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ValueError(f"{source}: needs a 'metrics' mapping of lab metric -> entry")
    specs = []
    for key, e in data["metrics"].items():
        where = f"{source}: metrics.{key}"
        if not isinstance(e, dict):
            raise ValueError(f"{where}: must be a mapping")
        for f in ("label", "names", "unit"):
            if f not in e:
                raise ValueError(f"{where}: lacks {f!r}")
        names = e["names"]
        if isinstance(names, str):
            names = [names]
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"{where}.names: a non-empty list of ncu metric names")
        display = e.get("display") or {}
        specs.append(
            MetricSpec(
                key=str(key),
                label=str(e["label"]),
                names=tuple(names),
                unit=str(e["unit"]),
                display_unit=str(display.get("unit", e["unit"])),
                display_format=str(display.get("format", ".3g")),
                request=bool(e.get("request", False)),
                section=e.get("section"),
            )
        )
    if not specs:
        raise ValueError(f"{source}: 'metrics' is empty")
    device = (data.get("device") or {}).get("names", ["device__attribute_display_name"])
    return Mapping(tuple(specs), tuple(device), tuple(data.get("sections") or ()))


def load_mapping(path: str | Path = DEFAULT_METRICS) -> Mapping:
    from hwlab.config import load_yaml

    return parse_mapping(load_yaml(path, "metric mapping"), str(path))


# ---- kernel names ------------------------------------------------------------------------
def _split_templates(name: str) -> tuple[str, str | None]:
    """(name without template arguments, the first top-level template argument)."""
    out, depth, first, arg = [], 0, None, []
    for ch in name:
        if ch == "<":
            depth += 1
            if depth == 1:
                continue
        elif ch == ">":
            depth = max(0, depth - 1)
            if depth == 0 and first is None:
                first = "".join(arg)
            if depth == 0:
                continue
        if depth == 0:
            out.append(ch)
        elif first is None:
            if depth == 1 and ch == ",":
                first = "".join(arg)
            else:
                arg.append(ch)
    return "".join(out), first


# Kernel entry points whose name says nothing: the first template argument names the kernel
# (``cutlass::Kernel2<cutlass_80_tensorop_bf16_s16816gemm_..._tn_align8>``).
GENERIC_KERNELS = {"Kernel", "Kernel2", "kernel", "device_kernel"}


def _bare(name: str) -> str:
    s = name.strip()
    paren = s.find("(")
    if paren > 0:
        s = s[:paren]
    s = s.strip().split()[-1] if s.strip() else ""
    return s.rsplit("::", 1)[-1]


def short_kernel_name(name: str) -> str:
    """The bare function name of a (demangled) kernel name: no return type, template
    arguments, parameters or namespaces. ``void pytorch_flash::flash_fwd_kernel<Traits<...>,
    false>(pytorch_flash::Flash_fwd_params)`` -> ``flash_fwd_kernel``; a generic entry point
    keeps its first template argument: ``Kernel2<cutlass_80_tensorop_…_align8>``."""
    stripped, first = _split_templates(name.strip().replace("(anonymous namespace)", "anon"))
    bare = _bare(stripped) or name.strip()
    if bare in GENERIC_KERNELS and first:
        inner = _bare(_split_templates(first)[0])
        if inner:
            return f"{bare}<{inner}>"
    return bare


# ---- reading a report --------------------------------------------------------------------
@dataclass(frozen=True)
class Value:
    """One lab metric of one launch: the value as ncu reports it, or None with a note."""

    key: str
    label: str
    value: float | None
    unit: str | None
    ncu_metric: str | None
    note: str | None = None


@dataclass
class Launch:
    """One profiled kernel launch (an ncu 'action')."""

    launch: int
    range: int
    kernel: str
    kernel_demangled: str
    device: str | None
    values: dict[str, Value] = field(default_factory=dict)


def _numeric(metric: Any) -> float | None:
    try:
        if hasattr(metric, "has_value") and not metric.has_value():
            return None
        return float(metric.as_double())
    except (TypeError, ValueError, RuntimeError):
        return None


def read_metric(action: Any, spec: MetricSpec) -> Value:
    """The first candidate name the action has; absent under every name -> None + note."""
    for name in spec.names:
        m = action.metric_by_name(name)
        if m is None:
            continue
        v = _numeric(m)
        if v is None:
            continue
        note = None
        if name != spec.names[0]:
            note = f"fallback name {name} (report lacks {spec.names[0]})"
        return Value(spec.key, spec.label, v, m.unit() or spec.unit, name, note)
    return Value(
        spec.key,
        spec.label,
        None,
        spec.unit,
        None,
        f"absent from this report (tried {', '.join(spec.names)})",
    )


def read_string(action: Any, names: Iterable[str]) -> str | None:
    for name in names:
        m = action.metric_by_name(name)
        if m is not None:
            try:
                s = m.as_string()
            except (TypeError, ValueError, RuntimeError):
                continue
            if s:
                return str(s)
    return None


def load_report(path: str | Path):
    """``ncu_report.load_report`` with errors that say what is wrong with the file."""
    ncu_report = import_ncu_report()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Nsight Compute report")
    ctx = ncu_report.load_report(str(path))
    n = sum(ctx.range_by_idx(i).num_actions() for i in range(ctx.num_ranges()))
    if n == 0:
        raise ValueError(
            f"{path}: no profiled kernel launch in it (not an Nsight Compute report, a "
            "truncated one, or ncu matched no kernel)"
        )
    return ctx


def read_report(path: str | Path, mapping: Mapping | None = None) -> list[Launch]:
    """Every launch of a report with the mapping's metrics (see the module docstring)."""
    ncu_report = import_ncu_report()
    mapping = mapping or load_mapping()
    ctx = load_report(path)
    launches = []
    for r in range(ctx.num_ranges()):
        rng = ctx.range_by_idx(r)
        for a in range(rng.num_actions()):
            act = rng.action_by_idx(a)
            demangled = act.name(ncu_report.IAction.NameBase_DEMANGLED) or act.name()
            launch = Launch(
                launch=len(launches),
                range=r,
                kernel=short_kernel_name(demangled),
                kernel_demangled=demangled,
                device=read_string(act, mapping.device_names),
            )
            launch.values = {s.key: read_metric(act, s) for s in mapping.metrics}
            launches.append(launch)
    return launches


def tidy_rows(launches: Iterable[Launch], batch: int | None = None) -> list[dict[str, Any]]:
    """One row per (launch, metric): the ``tables/ncu.csv`` layout."""
    rows = []
    for la in launches:
        for v in la.values.values():
            rows.append(
                {
                    "batch": batch,
                    "kernel": la.kernel,
                    "launch": la.launch,
                    "metric": v.key,
                    "value": v.value,
                    "unit": v.unit,
                    "label": v.label,
                    "ncu_metric": v.ncu_metric,
                    "status": "ok",
                    "note": v.note,
                    "kernel_demangled": la.kernel_demangled,
                    "device": la.device,
                }
            )
    return rows


def tidy(launches: Iterable[Launch], batch: int | None = None):
    import pandas as pd

    return pd.DataFrame(tidy_rows(launches, batch), columns=TIDY_COLUMNS)


# ---- units -------------------------------------------------------------------------------
# unit -> (dimension, factor to the dimension's base unit). ncu reports base units ('ns',
# 'byte', 'cycle', '%'); the rest are what tables show or what other ncu versions print.
UNITS: dict[str, tuple[str, float]] = {
    "%": ("percent", 1.0),
    "cycle": ("cycle", 1.0),
    "ns": ("time", 1e-9),
    "nsecond": ("time", 1e-9),
    "us": ("time", 1e-6),
    "µs": ("time", 1e-6),
    "usecond": ("time", 1e-6),
    "ms": ("time", 1e-3),
    "msecond": ("time", 1e-3),
    "s": ("time", 1.0),
    "second": ("time", 1.0),
    "byte": ("bytes", 1.0),
    "Kbyte": ("bytes", 1e3),
    "Mbyte": ("bytes", 1e6),
    "Gbyte": ("bytes", 1e9),
    "KB": ("bytes", 1e3),
    "MB": ("bytes", 1e6),
    "GB": ("bytes", 1e9),
    "byte/second": ("rate", 1.0),
    "byte/s": ("rate", 1.0),
    "Kbyte/second": ("rate", 1e3),
    "Mbyte/second": ("rate", 1e6),
    "Gbyte/second": ("rate", 1e9),
    "Tbyte/second": ("rate", 1e12),
    "MB/s": ("rate", 1e6),
    "GB/s": ("rate", 1e9),
    "TB/s": ("rate", 1e12),
}


def convert(value: float | None, unit: str | None, to: str) -> float | None:
    """``value`` in ``unit`` expressed in ``to``; None if unknown or not convertible."""
    if value is None or unit is None:
        return None
    if unit == to:
        return value
    a, b = UNITS.get(unit), UNITS.get(to)
    if a is None or b is None or a[0] != b[0]:
        return None
    return value * a[1] / b[1]


def format_value(value: float, fmt: str) -> str:
    """``value`` in the mapping's format spec; a significant-digits spec (``.3g``) never in
    exponent notation (3,350 GB/s, not 3.35e+03: :func:`hwlab.io.fmt_sig`)."""
    m = re.fullmatch(r"\.(\d+)g", fmt)
    return fmt_sig(value, int(m.group(1))) if m else format(value, fmt)


def display(value: float | None, spec: MetricSpec) -> str | None:
    """A converted value as the Lab 1b table shows it (``1.13%``, ``17,643``, ``6.78``)."""
    if value is None:
        return None
    text = format_value(value, spec.display_format)
    return f"{text}%" if spec.display_unit == "%" else text


# ---- derived numbers (pure; unit-tested against the writeup's Lab 1b) --------------------
def sm_active_fraction(sm_active_cycles: float | None, elapsed_cycles: float | None):
    """SM active cycles / elapsed cycles: the share of the kernel's duration the SMs
    worked (writeup: 340 / 17,643 = 1.9% at batch 1, "98% idle"). None if unknown."""
    if sm_active_cycles is None or not elapsed_cycles:
        return None
    return sm_active_cycles / elapsed_cycles


def multiplier(first: float | None, last: float | None) -> float | None:
    """How many times the last batch's value is the first's (writeup: SM Busy 1.13% ->
    31.5% is 28x). None when either is unknown or the first is zero."""
    if first is None or last is None or first == 0:
        return None
    return last / first


def primary_kernel(launches: Sequence[Launch]) -> str | None:
    """The kernel captured most often (first seen wins a tie): the one the table shows."""
    if not launches:
        return None
    counts = Counter(la.kernel for la in launches)
    best = max(counts.values())
    return next(la.kernel for la in launches if counts[la.kernel] == best)


@dataclass
class BatchSummary:
    """Median of each lab metric over the captured launches of one kernel at one batch."""

    batch: int
    status: str
    reason: str | None = None
    kernel: str | None = None
    launches: int = 0
    other_kernels: dict[str, int] = field(default_factory=dict)
    device: str | None = None
    values: dict[str, float | None] = field(default_factory=dict)  # in display units
    notes: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def summarize(batch: int, launches: Sequence[Launch], mapping: Mapping) -> BatchSummary:
    kernel = primary_kernel(launches)
    mine = [la for la in launches if la.kernel == kernel]
    s = BatchSummary(batch=batch, status="ok", kernel=kernel, launches=len(mine))
    s.other_kernels = dict(Counter(la.kernel for la in launches if la.kernel != kernel))
    s.device = next((la.device for la in mine if la.device), None)
    for spec in mapping.metrics:
        vals, notes = [], set()
        for la in mine:
            v = la.values[spec.key]
            if v.note:
                notes.add(v.note)
            c = convert(v.value, v.unit, spec.display_unit)
            if v.value is not None and c is None:
                notes.add(f"unit {v.unit!r} not convertible to {spec.display_unit!r}")
            if c is not None:
                vals.append(c)
        s.values[spec.key] = F.median(vals) if vals else None
        s.notes += [f"{spec.label}: {n}" for n in sorted(notes)]
    return s


# ---- the Lab 1b table --------------------------------------------------------------------
SM_ACTIVE_LABEL = "SM-active fraction (SM active / elapsed cycles)"


def compared_batches(summaries: Sequence[BatchSummary]):
    """(first, last) captured batch: the pair the multiplier column compares."""
    ok = [s for s in summaries if s.status == "ok"]
    return (ok[0], ok[-1]) if ok else (None, None)


def lab1b_rows(summaries: Sequence[BatchSummary], mapping: Mapping) -> list[dict[str, Any]]:
    """Rows (metric, per-batch values in display units, multiplier between the first and
    the last captured batch)."""
    rows = []
    first, last = compared_batches(summaries)

    def row(key, label, unit, per_batch):
        r = {"metric": key, "label": label, "unit": unit}
        for s in summaries:
            r[f"b{s.batch}"] = per_batch.get(s.batch)
        mult = None
        if first is not None and first is not last:
            mult = multiplier(per_batch.get(first.batch), per_batch.get(last.batch))
        r["multiplier"] = mult
        return r

    for spec in mapping.metrics:
        rows.append(
            row(
                spec.key,
                spec.label,
                spec.display_unit,
                {s.batch: s.values.get(spec.key) for s in summaries},
            )
        )
    frac = {}
    for s in summaries:
        f = sm_active_fraction(s.values.get("sm_active_cycles"), s.values.get("elapsed_cycles"))
        frac[s.batch] = None if f is None else 100.0 * f
    rows.append(row("sm_active_fraction", SM_ACTIVE_LABEL, "%", frac))
    return rows


def captured_cell(s: BatchSummary) -> str:
    """Every kernel a batch's capture holds, with its launches (the table's first)."""
    if s.status != "ok":
        return "—"
    return ", ".join(
        [f"{s.kernel} ×{s.launches}", *(f"{k} ×{n}" for k, n in s.other_kernels.items())]
    )


def _cell(value: float | None, unit: str, fmt: str) -> str:
    if value is None:
        return "—"
    text = format_value(value, fmt)
    return f"{text}%" if unit == "%" else text


def lab1b_markdown(
    summaries: Sequence[BatchSummary], mapping: Mapping, rows: list[dict[str, Any]]
) -> str:
    """The writeup's Lab 1b table: metric | Batch=… | Multiplier, with notes under it."""
    ok = [s for s in summaries if s.status == "ok"]
    kernels = sorted({s.kernel for s in ok if s.kernel})
    title = "### Lab 1b — Nsight Compute Speed-of-Light"
    title += f": {', '.join(kernels)}" if kernels else ""
    lines = [title, ""]
    if not ok:
        lines.append("No batch was captured on this run:")
        lines.append("")
        from hwlab.io import group_reasons

        lines += [f"- {g}" for g in group_reasons((s.batch, s.status, s.reason) for s in summaries)]
        if not summaries:
            lines.append("- no batch is configured (ncu.batches is empty)")
        return "\n".join(lines) + "\n"
    fmts = {m.key: m.display_format for m in mapping.metrics}
    fmts["sm_active_fraction"] = ".3g"
    head = ["Metric", *[f"Batch={s.batch}" for s in summaries]]
    mult_head = "Multiplier"
    first, last = compared_batches(summaries)
    if len(summaries) > 2 and first is not last:
        mult_head += f" (batch {last.batch} / {first.batch})"
    head.append(mult_head)
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    kernel_cells = [s.kernel if s.status == "ok" else s.status for s in summaries]
    lines.append("| Kernel | " + " | ".join(kernel_cells) + " |  |")
    lines.append(
        "| Kernels captured | " + " | ".join(captured_cell(s) for s in summaries) + " |  |"
    )
    for r in rows:
        cells = [_cell(r[f"b{s.batch}"], r["unit"], fmts[r["metric"]]) for s in summaries]
        mult = "—" if r["multiplier"] is None else f"{fmt_sig(r['multiplier'])}×"
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {mult} |")
    lines.append("")
    for s in summaries:
        if s.status != "ok":
            lines.append(f"- batch {s.batch}: {s.status}: {s.reason}")
            continue
        rec = s.record
        text = (
            f"- batch {s.batch}: {s.kernel}, median over {s.launches} captured launch"
            f"{'es' if s.launches != 1 else ''}"
        )
        if s.device:
            text += f" on {s.device}"
        if rec.get("clock_control"):
            text += f"; ncu --clock-control {rec['clock_control']}"
        if rec.get("cache_control"):
            text += f", --cache-control {rec['cache_control']}"
        if s.other_kernels:
            others = ", ".join(f"{k} ×{n}" for k, n in s.other_kernels.items())
            text += f"; also captured (not in the table): {others}"
        lines.append(text + ".")
        lines += [f"  - {n}" for n in s.notes]
    lines.append(
        "- SM-active fraction = SM Active Cycles / Elapsed Cycles of the medians above; "
        "1 − it is the share of the kernel's duration the SMs sat idle."
    )
    return "\n".join(lines) + "\n"


def _report_path(record_path: str | Path, record: dict[str, Any]) -> Path | None:
    rep = record.get("report")
    if not rep:
        return None
    p = Path(rep)
    return p if p.is_absolute() else Path(record_path).parent / p


@dataclass
class Capture:
    """A capture record (ncu/….json) and, when it captured, its launches."""

    record: dict[str, Any]
    launches: list[Launch]
    status: str
    reason: str | None


def load_capture(record_path: str | Path, mapping: Mapping) -> Capture:
    from hwlab.records import read

    rec = read(record_path)
    if rec.get("status") != "ok":
        return Capture(rec, [], str(rec.get("status")), rec.get("reason"))
    path = _report_path(record_path, rec)
    if path is None:
        return Capture(rec, [], "failed", f"{record_path} says ok but names no report")
    try:
        return Capture(rec, read_report(path, mapping), "ok", None)
    except (FileNotFoundError, ValueError, ImportError) as e:
        return Capture(rec, [], "failed", f"report unreadable: {e}")


def write_decode_tables(
    records: Sequence[str],
    *,
    mapping_path: str | Path,
    csv: str,
    md: str,
    lab1b_csv: str,
) -> None:
    """``tables/ncu.csv`` (tidy, every launch) and the Lab 1b table from the captures."""
    import pandas as pd

    from hwlab.io import write_table, write_text

    mapping = load_mapping(mapping_path)
    rows, summaries = [], []
    for path in records:
        cap = load_capture(path, mapping)
        batch = int(cap.record["batch"])
        if cap.status != "ok":
            summaries.append(
                BatchSummary(batch=batch, status=cap.status, reason=cap.reason, record=cap.record)
            )
            rows.append({"batch": batch, "status": cap.status, "note": cap.reason})
            continue
        s = summarize(batch, cap.launches, mapping)
        s.record = cap.record
        summaries.append(s)
        rows += tidy_rows(cap.launches, batch)
    summaries.sort(key=lambda s: s.batch)
    df = pd.DataFrame(rows, columns=TIDY_COLUMNS)
    write_table(df, csv)
    lab = lab1b_rows(summaries, mapping)
    write_table(pd.DataFrame(lab), lab1b_csv)
    write_text(md, lab1b_markdown(summaries, mapping, lab))


# ---- GEMM points: true DRAM bytes beside the analytic count ------------------------------
GEMM_COLUMNS = [
    "shape",
    "dtype",
    "M",
    "N",
    "K",
    "status",
    "reason",
    "kernels",
    "launches",
    "dram_bytes_read",
    "duration_us",
    "dram_read_gbps",
    "analytic_read_bytes",
    "dram_read_over_analytic",
    "clock_control",
    "cache_control",
    "device",
]


def gemm_dram_row(launches: Sequence[Launch]) -> dict[str, Any]:
    """DRAM bytes read and duration summed over the kernels of one GEMM call."""
    reads = [
        convert(la.values["dram_bytes_read"].value, la.values["dram_bytes_read"].unit, "byte")
        for la in launches
    ]
    durs = [
        convert(la.values["duration"].value, la.values["duration"].unit, "s") for la in launches
    ]
    nbytes = None if any(v is None for v in reads) else sum(reads)
    secs = None if any(v is None for v in durs) else sum(durs)
    return {
        "kernels": ";".join(dict.fromkeys(la.kernel for la in launches)),
        "launches": len(launches),
        "dram_bytes_read": nbytes,
        "duration_us": None if secs is None else secs * 1e6,
        "dram_read_gbps": F.gbps(nbytes, secs) if nbytes is not None and secs else None,
        "device": next((la.device for la in launches if la.device), None),
    }


def analytic_read_bytes(m: int, n: int, k: int, dtype: str) -> float:
    """A and B read once (the reads among the writeup's analytic bytes; C is a write)."""
    from hwlab.dtypes import gemm_dtype

    b = gemm_dtype(dtype).in_bytes
    return F.gemm_bytes(m, n, k, b, b, 0)


def write_gemm_table(records: Sequence[str], *, mapping_path: str | Path, csv: str, md: str):
    """``tables/ncu_gemm.csv``: per captured GEMM point the true DRAM bytes read."""
    import pandas as pd

    from hwlab.io import write_table

    mapping = load_mapping(mapping_path)
    rows = []
    for path in records:
        cap = load_capture(path, mapping)
        rec = cap.record
        row = {k: rec.get(k) for k in ("shape", "dtype", "M", "N", "K")}
        row.update(clock_control=rec.get("clock_control"), cache_control=rec.get("cache_control"))
        row["analytic_read_bytes"] = analytic_read_bytes(row["M"], row["N"], row["K"], row["dtype"])
        row.update(status=cap.status, reason=cap.reason)
        if cap.status == "ok":
            row.update(gemm_dram_row(cap.launches))
            if row["dram_bytes_read"] is not None:
                row["dram_read_over_analytic"] = row["dram_bytes_read"] / row["analytic_read_bytes"]
        rows.append(row)
    df = pd.DataFrame(rows, columns=GEMM_COLUMNS).sort_values(["shape", "dtype", "M"])
    notes = [
        "dram_bytes_read = ncu dram__bytes_read.sum summed over the kernels of one call; "
        "analytic_read_bytes = A + B once (the reads among Lab 2's Effective GB/s bytes).",
        "ncu --cache-control all (its default) flushes caches before each replay pass, so "
        "these are cold-cache bytes; with none, a warm L2 may serve part of the reads.",
    ]
    for _, r in df[df["status"] != "ok"].drop_duplicates(["dtype", "status", "reason"]).iterrows():
        notes.append(f"{r['dtype']} {r['status']}: {r['reason']}")
    md_columns = {
        "shape": "shape",
        "dtype": "dtype",
        "M": "M",
        "status": "status",
        "kernels": "kernels",
        "dram_bytes_read": "DRAM bytes read",
        "analytic_read_bytes": "analytic read bytes (A+B)",
        "dram_read_over_analytic": "DRAM / analytic",
        "duration_us": "Duration (µs)",
        "dram_read_gbps": "DRAM read GB/s",
    }
    write_table(
        df,
        csv,
        md,
        md_columns=md_columns,
        title="Lab 2 — true DRAM bytes (Nsight Compute)",
        notes=notes,
    )


# ---- hwlab ncu-summary -------------------------------------------------------------------
def summary_table(launches: Sequence[Launch], mapping: Mapping):
    """One row per launch, the lab metrics in display units (what ``ncu-summary`` prints)."""
    import pandas as pd

    rows = []
    for la in launches:
        r: dict[str, Any] = {"launch": la.launch, "kernel": la.kernel}
        for spec in mapping.metrics:
            v = la.values[spec.key]
            r[spec.label] = display(convert(v.value, v.unit, spec.display_unit), spec)
        rows.append(r)
    return pd.DataFrame(rows)


def summary_notes(launches: Sequence[Launch]) -> list[str]:
    devices = sorted({la.device for la in launches if la.device})
    notes = [f"device: {', '.join(devices)}"] if devices else []
    seen = {}
    for la in launches:
        for v in la.values.values():
            if v.note:
                seen.setdefault(f"{v.label}: {v.note}", None)
    return notes + list(seen)


def _summary_cli(args) -> int:
    import sys

    mapping = load_mapping(args.metrics)
    launches = read_report(args.report, mapping)
    if args.csv:
        tidy(launches).drop(columns=["batch", "status"]).to_csv(sys.stdout, index=False)
        return 0
    df = summary_table(launches, mapping)
    print(df.to_markdown(index=False, missingval="—"))
    for n in summary_notes(launches):
        print(f"- {n}")
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser(
        "ncu-summary",
        help="the lab's Nsight Compute metrics of any .ncu-rep report (no GPU needed)",
        description="Read an Nsight Compute report with NVIDIA's ncu_report and print the "
        "lab's metrics per kernel launch (Lab 1b's Speed-of-Light numbers, true DRAM bytes). "
        "Metrics the report lacks are empty, with a note.",
    )
    p.add_argument("report", help="an .ncu-rep file")
    p.add_argument("--csv", action="store_true", help="tidy CSV (raw values, ncu's units)")
    p.add_argument("--metrics", default=DEFAULT_METRICS, help="metric mapping (YAML)")
    p.set_defaults(func=_summary_cli)
