"""Configuration checks that run before any job: schema errors made readable, plus the
cross-field rules a JSON schema cannot express (catalog keys, files that must exist,
subsets of sweeps). Light imports only: the Snakefile imports this at parse time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration that must not run; the message names the offending key."""


def key_path(parts: Iterable[Any]) -> str:
    """``['gemm', 'M', 2]`` -> ``gemm.M[2]``."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _description(schema: dict[str, Any], parts: list[Any]) -> str | None:
    """Description of the deepest named property along ``parts`` in ``schema``."""
    desc, node = None, schema
    for p in parts:
        if isinstance(p, int):
            continue
        props = node.get("properties", {})
        if p in props:
            node = props[p]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            break
        desc = node.get("description", desc)
    return desc


def schema_error_message(err: Exception, schema: dict[str, Any] | None = None) -> str:
    """One paragraph for a jsonschema ValidationError: key, what is wrong, what it means."""
    parts = list(getattr(err, "absolute_path", []))
    msg = getattr(err, "message", str(err))
    where = key_path(parts)
    if getattr(err, "validator", None) == "additionalProperties":
        # name the unknown key itself, not its parent
        extra = [k for k in (err.instance or {}) if k not in err.schema.get("properties", {})]
        if extra:
            where = key_path(parts + [extra[0]])
            msg = f"unknown key {extra[0]!r} (allowed here: {', '.join(err.schema['properties'])})"
    text = f"{where}: {msg}."
    unknown = getattr(err, "validator", None) == "additionalProperties"
    desc = _description(schema, parts) if schema and not unknown else None
    if desc:
        text += f" ({where} is: {desc.strip()})"
    return text


def semantic_errors(config: dict[str, Any], root: Path, catalog_keys: Iterable[str]) -> list[str]:
    """Rules across keys; each error names its key. ``root`` resolves relative paths."""
    errors: list[str] = []
    keys = list(catalog_keys)
    hw = config.get("hardware", "auto")
    if hw != "auto" and hw not in keys:
        errors.append(
            f"hardware: {hw!r} is not in config/hardware.yaml (known: auto, {', '.join(keys)})."
        )

    model = config.get("model", {})
    if model.get("source") == "random":
        arch = root / model.get("arch", "")
        if not arch.is_file():
            errors.append(
                f"model.arch: {model.get('arch')!r} does not exist (needed by source: random)."
            )
    elif model.get("source") == "hub":
        for k in ("repo", "revision"):
            if not model.get(k):
                errors.append(
                    f"model.{k}: must be set for source: hub "
                    "(pin a revision for reproducible runs)."
                )

    decode = config.get("decode", {})
    missing = [b for b in decode.get("lab1a_batches", []) if b not in decode.get("batches", [])]
    if missing:
        errors.append(
            f"decode.lab1a_batches: {missing} not among decode.batches {decode.get('batches')}."
        )
    if decode.get("new_tokens", 1) <= decode.get("warmup_steps", 0):
        errors.append(
            f"decode.new_tokens: {decode.get('new_tokens')} leaves no step to time after "
            f"decode.warmup_steps = {decode.get('warmup_steps')} (must be larger)."
        )
    classes = decode.get("kernel_classes")
    if classes and not (root / classes).is_file():
        errors.append(f"decode.kernel_classes: {classes!r} does not exist.")

    gemm = config.get("gemm", {})
    names = [sh.get("name") for sh in gemm.get("shapes", [])]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        errors.append(f"gemm.shapes: the name {dup[0]!r} is used more than once.")
    ncu = config.get("ncu", {})
    missing = [m for m in ncu.get("gemm_M", []) if m not in gemm.get("M", [])]
    if missing:
        errors.append(f"ncu.gemm_M: {missing} not among gemm.M {gemm.get('M')}.")

    ar = config.get("allreduce", {})
    if ar.get("min_bytes", 0) > ar.get("max_bytes", 0):
        errors.append(
            f"allreduce.min_bytes: {ar.get('min_bytes')} is larger than allreduce.max_bytes "
            f"{ar.get('max_bytes')}."
        )
    el = {"fp32": 4, "fp16": 2, "bf16": 2}.get(ar.get("dtype", "fp32"), 1)
    if ar.get("min_bytes", el) % el:
        errors.append(
            f"allreduce.min_bytes: {ar.get('min_bytes')} is not a multiple of the "
            f"{ar.get('dtype')} element size ({el} bytes)."
        )
    nodes = ar.get("nodes", 1)
    uneven = [n for n in ar.get("world_sizes", []) if n % nodes]
    if uneven:
        errors.append(
            f"allreduce.world_sizes: {uneven} do not split evenly over allreduce.nodes = "
            f"{nodes} (ranks per node must be equal)."
        )
    tp_hw = ar.get("tp_napkin", {}).get("hardware", "auto")
    if tp_hw != "auto" and tp_hw not in keys:
        errors.append(
            f"allreduce.tp_napkin.hardware: {tp_hw!r} is not in config/hardware.yaml "
            f"(known: auto, {', '.join(keys)})."
        )

    cw = config.get("findings", {}).get("compare_with", "")
    if cw and not (root / cw).is_dir() and not Path(cw).is_dir():
        errors.append(f"findings.compare_with: {cw!r} is not a results folder.")
    return errors


def config_digest(config: dict[str, Any]) -> str:
    """sha256 of the resolved config (sorted keys): the same config, the same digest."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
