"""Lab 1a kernel inventory: read a torch.profiler chrome trace, time and classify its kernels.

What is counted:
- CUDA trace (it has ``kernel`` / ``gpu_memcpy`` / ``gpu_memset`` events): the device
  duration of every kernel and copy, grouped by name. Kernels of different streams are
  summed as they are (decode runs on one stream; no interval merging).
- CPU trace (only ``cpu_op`` events): each aten op's *self* time, i.e. its duration minus
  the durations of the ops nested directly inside it on the same thread. Summing self
  times counts every microsecond of op time exactly once (``aten::linear`` does not count
  the ``aten::addmm`` inside it again). Python time between ops is not op time and is not
  counted. With ``record_shapes`` the rows M of a matmul's activation are read from the
  op's input shapes, so a matmul with M = 1 can be told apart as a GEMV.
- Phase: the hwlab profiler annotations (``hwlab::prefill``, ``hwlab::decode_step``) mark
  which phase an event belongs to: a CPU op by its start time inside the annotation; a
  kernel by the CPU-side launch (runtime call with the same ``correlation`` id) inside it,
  falling back to the GPU-side annotation (``gpu_user_annotation``). Traces without hwlab
  annotations have one phase, ``all``.
- Categories are matched case-insensitively, and the names older Kineto versions used are
  accepted too (``Kernel``, ``Memcpy``, ``Memset``, ``Runtime``, ``Operator``).

Classes come from ordered regex rules (``config/kernel_classes.yaml``): first match wins.
A rule's ``pattern`` is matched against the kernel's *own name* (:func:`own_name`): the
demangled signature without its return type, its parameter list and its template argument
lists, so ``void at::native::reduce_kernel<512, 1, ...>(...)`` is ``at::native::reduce_kernel``
and nothing inside the arguments (``GenericPackedTensorAccessor``, ``cudnn::reduced_divisor``,
``cublasGemvTensorStridedBatched``) can decide the class. Generic launchers whose identity is
their first template argument (``cutlass::Kernel2<cutlass_80_tensorop_...>``,
``cutlass::device_kernel<...>``, listed under ``unwrap`` in the rules file) are unwrapped to
it; a rule's optional ``template`` regex must then also match that name's template arguments
(CUTLASS 3 ``GemmUniversal<..., MainloopSm90TmaGmma...>`` is a tensor-core GEMM). Tables keep
the full name.
No torch import here: the ``hwlab inventory`` command reads traces made anywhere.
"""

from __future__ import annotations

import bisect
import gzip
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "config" / "kernel_classes.yaml"
CLASSES = (
    "gemv",
    "tc_gemm",
    "gemm",
    "attention",
    "comm",
    "elementwise",
    "reduction",
    "memcpy",
    "other",
)
ANNOTATIONS = {"hwlab::prefill": "prefill", "hwlab::decode_step": "decode"}
PHASES = ("decode", "prefill", "all", "outside")
# event categories, lower case (older Kineto wrote Kernel, Memcpy, Memset, Runtime, Operator)
DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset", "memcpy", "memset")
LAUNCH_CATS = ("cuda_runtime", "cuda_driver", "runtime")
CPU_OP_CATS = ("cpu_op", "operator")
MATMUL_OPS = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_addmm_activation")
FIELDS = ("phase", "kernel", "rows", "calls", "time_us", "share")


# ---- class rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelName:
    """A kernel name as the rules see it: ``own`` (qualified name without return type,
    parameter list and template arguments, after unwrapping generic launchers) and
    ``template`` (the template argument text of that own name, '' if none)."""

    full: str
    own: str
    template: str = ""


def _top_level(sig: str) -> tuple[str, list[tuple[int, str]]]:
    """(the signature with every <...> and (...) at depth 0 removed, [(position in it,
    template text)] for each removed <...>). Parameter lists are dropped."""
    out: list[str] = []
    templates: list[tuple[int, str]] = []
    angle = paren = 0
    buf: list[str] = []
    for ch in sig:
        if paren == 0 and ch == "<":
            if angle == 0:
                buf = []
            else:
                buf.append(ch)
            angle += 1
        elif paren == 0 and ch == ">" and angle > 0:
            angle -= 1
            if angle == 0:
                templates.append((len(out), "".join(buf)))
            else:
                buf.append(ch)
        elif angle == 0 and ch == "(":
            paren += 1
        elif angle == 0 and ch == ")" and paren > 0:
            paren -= 1
        elif angle > 0:
            if ch == "(":
                paren += 1
            elif ch == ")" and paren > 0:
                paren -= 1
            buf.append(ch)
        elif paren == 0:
            out.append(ch)
    return "".join(out), templates


def _first_argument(template: str) -> str:
    """The first top-level, comma-separated argument of a template argument list."""
    depth = 0
    for i, ch in enumerate(template):
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif ch == "," and depth == 0:
            return template[:i].strip()
    return template.strip()


def own_name(name: str, unwrap: list[re.Pattern] | tuple = ()) -> KernelName:
    """The kernel's own name (see the module docstring); ``unwrap``: patterns of generic
    launchers (matched case-sensitively against the own name) whose first template
    argument is the real kernel."""
    full = name
    sig = name.strip()
    if re.match(r"^(Memcpy|Memset)\b", sig):  # driver copies: "Memcpy DtoD (Device -> Device)"
        return KernelName(full, sig)
    sig = sig.replace("(anonymous namespace)::", "")
    for _ in range(6):  # wrappers nest (device_kernel<enable_sm90_or_later<FlashAttnFwdSm90>>)
        top, templates = _top_level(sig)
        stripped = top.rstrip()
        # the own name is the last top-level token: drops "void ", "std::enable_if<…>::type "
        start = max(stripped.rfind(" "), stripped.rfind("\t")) + 1
        own = stripped[start:]
        template = next((t for pos, t in templates if pos == len(stripped)), "")
        if own and template and any(p.search(own) for p in unwrap):
            inner = _first_argument(template)
            if inner and not inner[0].isdigit():
                sig = inner
                continue
        return KernelName(full, own or stripped.strip() or full, template)
    return KernelName(full, own or full, template)


@dataclass(frozen=True)
class Rule:
    cls: str
    pattern: re.Pattern
    rows: int | None = None
    template: re.Pattern | None = None

    def matches(self, name: KernelName | str, rows: int | None) -> bool:
        if isinstance(name, str):
            name = KernelName(name, name)
        if self.rows is not None and rows != self.rows:
            return False
        if self.pattern.search(name.own) is None:
            return False
        return self.template is None or self.template.search(name.template) is not None


@dataclass(frozen=True)
class Rules:
    """The ordered class rules and the generic launchers to unwrap."""

    rules: tuple[Rule, ...]
    unwrap: tuple[re.Pattern, ...] = ()

    def __iter__(self):
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)


def _regex(value: Any, where: str, what: str, flags: int = re.IGNORECASE) -> re.Pattern:
    try:
        return re.compile(str(value), flags)
    except re.error as e:
        raise ValueError(f"{where}: {what} {value!r} is not a regex: {e}") from None


def parse_rules(data: Any, source: str = "kernel classes") -> Rules:
    """Rules from the YAML structure; every error names the rule and what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise ValueError(f"{source}: expected a mapping with a list under 'rules'")
    unknown_top = set(data) - {"rules", "unwrap"}
    if unknown_top:
        raise ValueError(f"{source}: unknown key(s) {sorted(unknown_top)}")
    unwrap_raw = data.get("unwrap") or []
    if not isinstance(unwrap_raw, list):
        raise ValueError(f"{source}: 'unwrap' must be a list of regexes")
    unwrap = tuple(
        _regex(u, f"{source}: unwrap[{i}]", "pattern", 0) for i, u in enumerate(unwrap_raw)
    )
    rules = []
    for i, r in enumerate(data["rules"]):
        where = f"{source}: rules[{i}]"
        if not isinstance(r, dict) or "class" not in r or "pattern" not in r:
            raise ValueError(f"{where}: each rule needs 'class' and 'pattern', got {r!r}")
        unknown = set(r) - {"class", "pattern", "rows", "template"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
        if r["class"] not in CLASSES:
            raise ValueError(f"{where}: class {r['class']!r} is not one of {', '.join(CLASSES)}")
        pattern = _regex(r["pattern"], where, "pattern")
        template = _regex(r["template"], where, "template") if "template" in r else None
        rows = r.get("rows")
        if rows is not None and (not isinstance(rows, int) or rows < 1):
            raise ValueError(f"{where}: rows must be a positive integer, got {rows!r}")
        rules.append(Rule(r["class"], pattern, rows, template))
    return Rules(tuple(rules), unwrap)


def load_rules(path: str | os.PathLike = DEFAULT_RULES) -> Rules:
    from hwlab.config import load_yaml

    return parse_rules(load_yaml(path, "kernel class file"), str(path))


def classify(name: str, rows: int | None = None, rules: Rules | list[Rule] | None = None) -> str:
    """Class of a kernel or op name (``rows``: M of a CPU matmul, if known); the rules see
    the kernel's own name (:func:`own_name`)."""
    rules = rules if rules is not None else load_rules()
    kn = own_name(name, getattr(rules, "unwrap", ()))
    for rule in rules:
        if rule.matches(kn, rows):
            return rule.cls
    return "other"


# ---- trace reading ----------------------------------------------------------------------


def load_trace(path: str | os.PathLike) -> dict[str, Any]:
    """A chrome trace (``.json`` or gzipped), as torch.profiler's export_chrome_trace writes."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{path}: is a directory, not a chrome trace")
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        import zlib

        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{path}: truncated or corrupt gzip file ({e})") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON chrome trace ({e})") from None
    if isinstance(data, list):  # the bare-array form of the chrome trace format
        data = {"traceEvents": data}
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ValueError(f"{path}: no 'traceEvents' list: not a torch.profiler chrome trace")
    for i, e in enumerate(data["traceEvents"]):
        if not isinstance(e, dict):
            raise ValueError(
                f"{path}: traceEvents[{i}] is {type(e).__name__} {e!r:.40}, not an event "
                "object: not a chrome trace"
            )
    return data


def matmul_rows(op: str, dims: list | None) -> int | None:
    """Rows M of a matmul op's activation from its input shapes, or None if unknown."""
    if not dims or not op.startswith("aten::"):
        return None
    base = op[len("aten::") :]
    if base not in MATMUL_OPS:
        return None
    try:
        if base in ("addmm", "_addmm_activation"):  # (bias, mat1[M,K], mat2[K,N])
            return int(dims[1][0])
        if base == "mm":
            return int(dims[0][0])
        if base == "bmm":  # [B, M, K]
            return int(dims[0][1])
        if base == "baddbmm":  # (input, batch1[B, M, K], batch2)
            return int(dims[1][1])
        # linear / matmul: every leading dimension of the activation is a row
        shape = dims[0]
        return int(math.prod(shape[:-1])) if len(shape) >= 2 else 1
    except (IndexError, TypeError, ValueError):
        return None


class _Windows:
    """Sorted, non-overlapping (start, end, phase) windows; which one holds a time."""

    def __init__(self, windows: Iterable[tuple[float, float, str]]):
        self.w = sorted(windows)
        self.starts = [w[0] for w in self.w]

    def __bool__(self) -> bool:
        return bool(self.w)

    def find(self, t: float) -> tuple[float, float, str] | None:
        """The (start, end, phase) window holding time ``t``, or None."""
        i = bisect.bisect_right(self.starts, t) - 1
        if i >= 0 and t <= self.w[i][1]:
            return self.w[i]
        return None

    def phase(self, t: float) -> str | None:
        w = self.find(t)
        return w[2] if w else None


def _window(e: dict[str, Any]) -> tuple[float, float, str]:
    ts = float(e["ts"])
    return (ts, ts + float(e.get("dur", 0)), ANNOTATIONS[e["name"]])


def _complete(events: list, cats: Iterable[str]) -> list[dict[str, Any]]:
    """Complete ('X') events of the given categories, compared case-insensitively."""
    cats = set(cats)
    return [
        e
        for e in events
        if e.get("ph") == "X" and str(e.get("cat", "")).lower() in cats and "ts" in e
    ]


def _cpu_self_times(ops: list[dict[str, Any]]) -> list[float]:
    """Self time of each op (µs): its duration minus its direct children's, per thread."""
    self_us = [float(e.get("dur", 0)) for e in ops]
    by_thread: dict[Any, list[int]] = defaultdict(list)
    for i, e in enumerate(ops):
        by_thread[(e.get("pid"), e.get("tid"))].append(i)
    eps = 1e-3  # chrome traces round to ns; a child may end a hair after its parent
    for idx in by_thread.values():
        idx.sort(key=lambda i: (float(ops[i]["ts"]), -float(ops[i].get("dur", 0))))
        stack: list[tuple[float, int]] = []  # (end, index)
        for i in idx:
            ts = float(ops[i]["ts"])
            end = ts + float(ops[i].get("dur", 0))
            while stack and ts >= stack[-1][0] - eps:
                stack.pop()
            if stack:
                self_us[stack[-1][1]] -= float(ops[i].get("dur", 0))
            stack.append((end, i))
    return [max(0.0, s) for s in self_us]


def trace_source(trace: dict[str, Any]) -> str:
    """``cuda`` if the trace has device events (kernels, copies), else ``cpu``."""
    return "cuda" if _complete(trace["traceEvents"], DEVICE_CATS) else "cpu"


class _Item(NamedTuple):
    """One timed kernel, copy or CPU op of a trace (times in µs)."""

    phase: str
    window: tuple | None  # the annotation window it belongs to (None: unannotated, outside)
    name: str
    rows: int | None  # M of a CPU matmul, if known
    time_us: float  # device duration (kernel) or self time (CPU op)
    start: float
    end: float


def _annotations(events: list, cat: str) -> list[dict[str, Any]]:
    return [e for e in _complete(events, [cat]) if e["name"] in ANNOTATIONS]


def _trace_items(trace: dict[str, Any]) -> tuple[list[_Item], _Windows]:
    """Every timed item of a trace and the windows (CPU-side annotations, else GPU-side
    ones) the items' phases come from."""
    events = trace["traceEvents"]
    cpu_ann = _annotations(events, "user_annotation")
    gpu_ann = _annotations(events, "gpu_user_annotation")
    annotated = bool(cpu_ann or gpu_ann)
    cpu_windows = _Windows(_window(e) for e in cpu_ann)
    gpu_windows = _Windows(_window(e) for e in gpu_ann)

    def phase_of(t: float | None, windows: _Windows) -> tuple[str, tuple | None]:
        if not annotated:
            return "all", None
        w = windows.find(t) if t is not None else None
        return (w[2], w) if w else ("outside", None)

    items: list[_Item] = []
    device = _complete(events, DEVICE_CATS)
    if device:
        launch_ts = {}
        for e in _complete(events, LAUNCH_CATS):
            corr = (e.get("args") or {}).get("correlation")
            if corr is not None:
                launch_ts[corr] = float(e["ts"])
        for e in device:
            corr = (e.get("args") or {}).get("correlation")
            if corr in launch_ts and cpu_windows:
                phase, w = phase_of(launch_ts[corr], cpu_windows)
            else:
                phase, w = phase_of(float(e["ts"]), gpu_windows)
            ts, dur = float(e["ts"]), float(e.get("dur", 0))
            items.append(_Item(phase, w, e["name"], None, dur, ts, ts + dur))
    else:
        ops = _complete(events, CPU_OP_CATS)
        for e, t in zip(ops, _cpu_self_times(ops), strict=True):
            rows = matmul_rows(e["name"], (e.get("args") or {}).get("Input Dims"))
            ts = float(e["ts"])
            phase, w = phase_of(ts, cpu_windows)
            items.append(_Item(phase, w, e["name"], rows, t, ts, ts + float(e.get("dur", 0))))
    return items, cpu_windows if cpu_windows else gpu_windows


def kernel_rows(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The inventory of one trace: per (phase, kernel, rows) the calls, time and share of
    the phase's total time (see the module docstring for what is timed)."""
    agg: dict[tuple[str, str, int | None], list[float]] = {}
    for it in _trace_items(trace)[0]:
        a = agg.setdefault((it.phase, it.name, it.rows), [0, 0.0])
        a[0] += 1
        a[1] += it.time_us
    totals: dict[str, float] = defaultdict(float)
    for (phase, _, _), (_, t) in agg.items():
        totals[phase] += t
    out = [
        {
            "phase": phase,
            "kernel": name,
            "rows": rows,
            "calls": calls,
            "time_us": t,
            "share": t / totals[phase] if totals[phase] else 0.0,
        }
        for (phase, name, rows), (calls, t) in agg.items()
    ]
    order = {p: i for i, p in enumerate(PHASES)}
    out.sort(key=lambda r: (order.get(r["phase"], 9), -r["time_us"], r["kernel"]))
    return out


def step_profile(
    trace: dict[str, Any], rules: Rules | list[Rule], phase: str = "decode"
) -> list[dict[str, Any]]:
    """Per annotated step of ``phase`` (one ``hwlab::decode_step`` window each, in time
    order): ``wall_us``, its wall time under the profiler (the annotation's duration);
    ``busy_us``, the device time inside it (kernels launched in it on a GPU, aten op self
    time on a CPU) and ``by_class``, that time per class; ``ops``, the kernels / ops
    counted; ``span_us``, from the first of them starting to the last ending (None if
    none); ``device_us``, the GPU-side annotation's duration (the step as the device ran
    it) where the trace has one per CPU-side step (matched in order), else None. The
    spread of a class share over the steps is what the inventory's shares carry."""
    items, windows = _trace_items(trace)
    events = trace["traceEvents"]
    cpu_steps = [
        e for e in _annotations(events, "user_annotation") if ANNOTATIONS[e["name"]] == phase
    ]
    gpu_steps = sorted(
        _window(e)
        for e in _annotations(events, "gpu_user_annotation")
        if ANNOTATIONS[e["name"]] == phase
    )
    steps: dict[tuple, dict[str, Any]] = {}
    for w in windows.w:
        if w[2] == phase:
            steps[w] = {"wall_us": w[1] - w[0], "busy_us": 0.0,
                        "by_class": dict.fromkeys(CLASSES, 0.0), "ops": 0,
                        "span_us": None, "device_us": None, "_lo": None, "_hi": None}  # fmt: skip
    if not cpu_steps:  # the windows are the GPU-side annotations themselves
        for v in steps.values():
            v["device_us"] = v["wall_us"]
    elif len(gpu_steps) == len(steps):
        for v, g in zip((steps[w] for w in sorted(steps)), gpu_steps, strict=True):
            v["device_us"] = g[1] - g[0]
    unwrap = getattr(rules, "unwrap", ())
    cache: dict[tuple[str, int | None], str] = {}
    for it in items:
        if it.phase != phase or it.window not in steps:
            continue
        key = (it.name, it.rows)
        if key not in cache:
            kn = own_name(it.name, unwrap)
            cache[key] = next((r.cls for r in rules if r.matches(kn, it.rows)), "other")
        s = steps[it.window]
        s["busy_us"] += it.time_us
        s["by_class"][cache[key]] += it.time_us
        s["ops"] += 1
        s["_lo"] = it.start if s["_lo"] is None else min(s["_lo"], it.start)
        s["_hi"] = it.end if s["_hi"] is None else max(s["_hi"], it.end)
    out = []
    for i, (_, v) in enumerate(sorted(steps.items())):
        lo, hi = v.pop("_lo"), v.pop("_hi")
        v["span_us"] = None if lo is None else hi - lo
        out.append({"step": i, **v})
    return out


def classify_rows(rows: list[dict[str, Any]], rules: Rules | list[Rule]) -> list[dict[str, Any]]:
    return [{**r, "class": classify(r["kernel"], _int_or_none(r.get("rows")), rules)} for r in rows]


def class_shares(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per phase, every class's time and share (classes with no time have share 0)."""
    by: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(CLASSES, 0.0))
    for r in rows:
        by[r["phase"]][r["class"]] += float(r["time_us"])
    out = []
    for phase, times in by.items():
        total = sum(times.values())
        for cls in CLASSES:
            share = times[cls] / total if total else 0.0
            out.append({"phase": phase, "class": cls, "time_us": times[cls], "share": share})
    return out


def _int_or_none(v: Any) -> int | None:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return None
    return int(v)


# ---- per-batch CSV (the decode job's b{batch}.kernels.csv) ------------------------------


def write_kernels_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    import csv

    from hwlab.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in FIELDS})


def read_kernels_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    import csv

    with open(path, newline="") as fh:
        return [
            {
                "phase": r["phase"],
                "kernel": r["kernel"],
                "rows": _int_or_none(r["rows"]),
                "calls": int(r["calls"]),
                "time_us": float(r["time_us"]),
                "share": float(r["share"]),
            }
            for r in csv.DictReader(fh)
        ]


# ---- the `hwlab inventory` command ------------------------------------------------------


def short_name(name: str, width: int = 70) -> str:
    """A kernel name cut to ``width`` characters (template arguments are long)."""
    return name if len(name) <= width else name[: width - 1] + "…"


def _inventory(args) -> int:
    from tabulate import tabulate

    trace = load_trace(args.trace)
    rules = load_rules(args.classes)
    rows = classify_rows(kernel_rows(trace), rules)
    if not rows:
        print(f"{args.trace}: no kernels or ops in this trace")
        return 0
    source = trace_source(trace)
    what = "device time of kernels" if source == "cuda" else "self time of aten ops (CPU)"
    print(f"{args.trace}: {source} trace; shares of {what}\n")
    shares = class_shares(rows)
    for phase in [p for p in PHASES if any(r["phase"] == p for r in rows)]:
        total = sum(r["time_us"] for r in rows if r["phase"] == phase)
        print(f"## phase {phase}: {total / 1e3:.3f} ms")
        cls = [
            (s["class"], f"{100 * s['share']:.1f}%", f"{s['time_us'] / 1e3:.3f}")
            for s in shares
            if s["phase"] == phase and s["time_us"] > 0
        ]
        cls.sort(key=lambda c: -float(c[2]))
        print(tabulate(cls, headers=["class", "share", "ms"]))
        print()
        top = [r for r in rows if r["phase"] == phase][: args.top]
        table = [
            (
                short_name(r["kernel"], args.width),
                "" if r["rows"] is None else r["rows"],
                r["class"],
                r["calls"],
                f"{r['time_us']:.1f}",
                f"{100 * r['share']:.1f}%",
            )
            for r in top
        ]
        print(tabulate(table, headers=["kernel", "M", "class", "calls", "µs", "share"]))
        print()
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser(
        "inventory",
        help="class shares and top kernels of a torch.profiler chrome trace (.json / .json.gz)",
        description="Kernel inventory (Lab 1a) of any torch.profiler chrome trace: the share "
        "of each kernel class (gemv, tc_gemm, gemm, attention, comm, elementwise, reduction, "
        "memcpy, other) and the top kernels, per phase when the trace has hwlab's annotations.",
    )
    p.add_argument("trace", help="chrome trace from torch.profiler (export_chrome_trace)")
    p.add_argument("--classes", default=str(DEFAULT_RULES), help="class rules (YAML)")
    p.add_argument("--top", type=int, default=10, help="kernels listed per phase (default 10)")
    p.add_argument("--width", type=int, default=70, help="kernel name width (default 70)")
    p.set_defaults(func=_inventory)
