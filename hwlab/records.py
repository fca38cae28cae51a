"""Validated reading of the run's intermediate records: every aggregation reads through here.

An aggregation (roofline, decode tables, ncu tables, allreduce table, findings) must never
turn a missing, truncated or misplaced record into a table. Each record kind has:

- a path pattern: the keys its path encodes (``gemm/{shape}/{dtype}/{l2}/m{M}.json``,
  ``decode/b{batch}.json`` ...), which the record's own fields must repeat exactly (a copy
  of another point, a file renamed by hand, is refused, not silently duplicated);
- a JSON schema (``SCHEMAS``): the status and the fields every status must carry, and
  what an ``ok`` record must carry in addition.

A bad record raises :class:`RecordError`, whose message is one line naming the file, what
is wrong with it and the command that regenerates it. :func:`problem` gives the same
verdict without raising; the Snakefile calls it before building the DAG, so the next run
redoes what is missing or invalid (see ``rules/common.smk``, repair).

Light imports only (json, csv, re, jsonschema, hwlab.io): the Snakefile imports this at
parse time.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hwlab.io import STATUSES


class RecordError(ValueError):
    """A record an aggregation cannot use; the message is one line with the fix."""


def regenerate_hint(path: str | Path) -> str:
    return (
        f"regenerate it with: snakemake --cores 1 all --forcerun {path} "
        "(add the run's --configfile/--config; a plain rerun also redoes it)"
    )


# ---- schemas ------------------------------------------------------------------------------

_NUM = {"type": "number"}
_INT = {"type": "integer", "minimum": 0}
_POS = {"type": "integer", "minimum": 1}
_STR = {"type": "string", "minLength": 1}
_WINDOW = {
    "type": "object",
    "required": ["start", "end"],
    "properties": {"start": _NUM, "end": _NUM},
}


def _status(ok_required: Iterable[str] = (), ok_props: dict | None = None, **props) -> dict:
    """A record schema: status + reason always; ``ok_required`` only when status is ok."""
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["status", *props],
        "properties": {
            "status": {"enum": list(STATUSES)},
            "reason": {"type": ["string", "null"]},
            "window": _WINDOW,
            **props,
        },
    }
    if ok_required or ok_props:
        schema["if"] = {"properties": {"status": {"const": "ok"}}}
        schema["then"] = {"required": list(ok_required), "properties": ok_props or {}}
    return schema


SCHEMAS: dict[str, dict[str, Any]] = {
    "gemm_point": _status(
        ok_required=["gpu_time_us", "tflops", "eff_gbps", "ai", "flops", "bytes"],
        ok_props={"gpu_time_us": _NUM, "tflops": _NUM, "eff_gbps": _NUM, "ai": _NUM},
        shape=_STR,
        dtype=_STR,
        l2={"enum": ["warm", "cold"]},
        M=_POS,
        N=_POS,
        K=_POS,
    ),
    "decode": _status(
        ok_required=["prefill_ms", "tpot_ms_p50", "tokens_per_s", "timed_steps"],
        ok_props={"tpot_ms_p50": _NUM, "tokens_per_s": _NUM, "prefill_ms": _NUM},
        batch=_POS,
        dtype=_STR,
        prompt_len=_POS,
        weight_bytes=_NUM,
        kv_bytes_per_step=_NUM,
    ),
    "ncu_decode": _status(batch=_POS, kind={"const": "decode"}),
    "ncu_gemm": _status(shape=_STR, dtype=_STR, M=_POS, kind={"const": "gemm"}),
    "allreduce": _status(
        ok_required=["method"],
        backend={"enum": ["gloo", "nccl"]},
        backend_requested={"enum": ["auto", "gloo", "nccl"]},
        world_size={"type": "integer", "minimum": 2},
        nodes=_POS,
        dtype=_STR,
        rows={"type": "array", "items": {"type": "object"}},
    ),
    "hierarchy_memory": _status(device_kind={"enum": ["cpu", "cuda"]}),
    "hierarchy_link": _status(device_kind={"enum": ["cpu", "cuda"]}),
    "peaks": {
        "type": "object",
        "required": ["device", "measured"],
        "properties": {"device": {"type": "object"}, "measured": {"type": "object"}},
    },
    "device": {
        "type": "object",
        "required": ["kind", "name", "torch_device", "index"],
        "properties": {
            "kind": {"enum": ["cpu", "cuda"]},
            "name": {"type": "string"},
            "torch_device": _STR,
            "index": _INT,
        },
    },
    "hardware": {
        "type": "object",
        "required": ["catalog_key", "catalog_reason", "spec"],
        "properties": {
            "catalog_key": {"type": ["string", "null"]},
            "catalog_reason": {"type": "string"},
            "spec": {"type": ["object", "null"]},
        },
    },
}

# Path patterns (matched against the end of a path) and the record keys they encode.
_KEY = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
PATTERNS: list[tuple[str, re.Pattern]] = [
    ("ncu_gemm", re.compile(rf"ncu/gemm/(?P<shape>{_KEY})/(?P<dtype>{_KEY})/m(?P<M>\d+)\.json$")),
    (
        "gemm_point",
        re.compile(rf"gemm/(?P<shape>{_KEY})/(?P<dtype>{_KEY})/(?P<l2>{_KEY})/m(?P<M>\d+)\.json$"),
    ),
    # graph-mode decode records sit beside the eager ones, same schema
    ("decode_kernels", re.compile(r"decode/(graph/)?b(?P<batch>\d+)\.kernels\.csv$")),
    ("decode", re.compile(r"decode/graph/b(?P<batch>\d+)\.json$")),
    ("decode", re.compile(r"decode/b(?P<batch>\d+)\.json$")),
    ("ncu_decode", re.compile(r"ncu/b(?P<batch>\d+)\.json$")),
    (
        "allreduce",
        re.compile(r"allreduce/(?P<backend_requested>[a-z]+)-w(?P<world_size>\d+)\.json$"),
    ),
    ("hierarchy_memory", re.compile(r"hierarchy/memory\.json$")),
    ("hierarchy_link", re.compile(r"hierarchy/link\.json$")),
    ("peaks", re.compile(r"(^|/)peaks\.json$")),
    ("device", re.compile(r"(^|/)device\.json$")),
    ("hardware", re.compile(r"(^|/)hardware\.json$")),
]
INT_KEYS = {"M", "batch", "world_size"}
KERNEL_FIELDS = ("phase", "kernel", "rows", "calls", "time_us", "share")


def kind_of(path: str | Path) -> tuple[str, dict[str, Any]] | None:
    """(kind, keys from the path) of a record path, or None if it is not a known record."""
    p = Path(path).as_posix()
    for kind, pattern in PATTERNS:
        m = pattern.search(p)
        if m:
            keys = {k: (int(v) if k in INT_KEYS else v) for k, v in m.groupdict().items()}
            return kind, keys
    return None


def _is_integer(_checker: Any, x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(_checker: Any, x: Any) -> bool:
    # x == x: not NaN; compared, not math.isfinite, which overflows on a huge int
    return (
        isinstance(x, int | float)
        and not isinstance(x, bool)
        and x == x
        and x not in (float("inf"), float("-inf"))
    )


def strict_validator(base: Any = None) -> Any:
    """``base`` (default Draft 2020-12) with strict numbers, for the records and the config
    (hwlab.config; here, so that a job reading records does not depend on config.py):
    16.0 is not an integer (it would name a file m16.0.json), a bool is neither (YAML's
    yes/no), NaN and inf are not numbers."""
    import jsonschema

    base = base or jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("integer", _is_integer).redefine("number", _is_number)
    return jsonschema.validators.extend(base, type_checker=checker)


@cache
def _validator(kind: str):
    """The kind's schema under strict numbers (the config's too)."""
    return strict_validator()(SCHEMAS[kind])


def _schema_problem(kind: str, data: Any) -> str | None:
    errors = sorted(_validator(kind).iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    e = errors[0]
    where = ".".join(str(p) for p in e.absolute_path)
    return f"{where + ': ' if where else ''}{e.message}"


def _key_problem(data: dict[str, Any], keys: dict[str, Any]) -> str | None:
    for k, want in keys.items():
        got = data.get(k)
        if got != want:
            return f"its {k} is {got!r} but its path says {want!r} (a copy of another record?)"
    return None


def _json_problem(text: str, kind: str, keys: dict[str, Any]) -> tuple[str | None, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})", None
    return _schema_problem(kind, data) or _key_problem(data, keys), data


def _kernels_problem(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    lines = text.splitlines()
    if not lines:
        return "empty (not even its header line)", []
    reader = csv.DictReader(lines)
    missing = [f for f in KERNEL_FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        return f"header lacks {', '.join(missing)}", []
    rows = []
    for i, r in enumerate(reader, start=2):
        try:
            rows.append(
                {
                    "phase": r["phase"],
                    "kernel": r["kernel"],
                    "rows": int(r["rows"]) if r["rows"] not in ("", None) else None,
                    "calls": int(r["calls"]),
                    "time_us": float(r["time_us"]),
                    "share": float(r["share"]),
                }
            )
        except (TypeError, ValueError):
            return f"line {i} is incomplete or not numeric (truncated?)", []
    if not text.endswith("\n"):
        return "truncated (its last line has no end)", []
    return None, rows


@dataclass
class Checked:
    """The verdict on one file: its data when good, else the problem."""

    path: str
    kind: str | None
    data: Any = None
    problem: str | None = None


def check(path: str | Path, kind: str | None = None) -> Checked:
    """Read and validate one record (see the module docstring); never raises for bad data."""
    found = kind_of(path)
    keys: dict[str, Any] = {}
    if found:
        kind = kind or found[0]
        keys = found[1]
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return Checked(str(path), kind, problem="missing")
    except IsADirectoryError:
        return Checked(str(path), kind, problem="is a directory, not a file")
    except (OSError, UnicodeDecodeError) as e:
        return Checked(str(path), kind, problem=f"unreadable ({e})")
    if kind == "decode_kernels":
        problem, data = _kernels_problem(text)
    elif kind in SCHEMAS:
        problem, data = _json_problem(text, kind, keys)
    else:
        try:
            data, problem = json.loads(text), None
        except json.JSONDecodeError as e:
            data, problem = None, f"not valid JSON ({e.msg} at line {e.lineno})"
    return Checked(str(path), kind, data=data, problem=problem)


def problem(path: str | Path, kind: str | None = None) -> str | None:
    """What is wrong with a record (``missing``, truncated, wrong keys ...), or None."""
    return check(path, kind).problem


def read(path: str | Path, kind: str | None = None) -> Any:
    """A validated record (JSON data, or the rows of a kernels CSV); RecordError if bad."""
    c = check(path, kind)
    if c.problem:
        raise RecordError(f"{path} is {phrase(c.problem)}; {regenerate_hint(path)}")
    return c.data


def phrase(problem: str) -> str:
    """A problem as it reads after "<file> is ": missing, truncated (...), invalid: ..."""
    if problem == "missing" or problem.startswith(("truncated", "not valid", "empty", "is a")):
        return problem.removeprefix("is ")
    return f"invalid: {problem}"


def read_all(paths: Iterable[str | Path], kind: str | None = None) -> list[Any]:
    return [read(p, kind) for p in paths]


# ---- device and catalog match -------------------------------------------------------------
# device.json is what was detected (measuring jobs depend on it); hardware.json is the
# catalog entry the run is compared with (tables and findings depend on it). Readers get
# the merged view they always had: device.json with catalog_key / catalog_reason / spec,
# peaks.json with spec_key / spec. A folder without hardware.json (an older run, the
# reference run) keeps whatever its device.json and peaks.json carry.

CATALOG_FIELDS = ("catalog_key", "catalog_reason", "spec")


def _hardware(hardware_json: str | Path | None) -> dict[str, Any] | None:
    if hardware_json is None or not Path(hardware_json).exists():
        return None
    return read(hardware_json, "hardware")


def read_device(device_json: str | Path, hardware_json: str | Path | None = None) -> dict:
    """device.json, with the catalog match of hardware.json merged in when there is one."""
    info = dict(read(device_json, "device"))
    hw = _hardware(hardware_json)
    if hw is not None:
        info.update({k: hw.get(k) for k in CATALOG_FIELDS})
    return info


def read_peaks(peaks_json: str | Path, hardware_json: str | Path | None = None) -> dict:
    """peaks.json with the spec of the run's catalog match (spec_key, spec)."""
    peaks = dict(read(peaks_json, "peaks"))
    hw = _hardware(hardware_json)
    if hw is not None:
        peaks.update(spec_key=hw.get("catalog_key"), spec=hw.get("spec"))
    return peaks


def read_run_device(folder: str | Path) -> dict:
    folder = Path(folder)
    return read_device(folder / "device.json", folder / "hardware.json")


def read_run_peaks(folder: str | Path) -> dict:
    folder = Path(folder)
    return read_peaks(folder / "peaks.json", folder / "hardware.json")
