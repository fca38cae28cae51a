"""Configuration checks that run before any job: schema errors made readable, plus the
cross-field rules a JSON schema cannot express (catalog keys, files that must exist,
subsets of sweeps). Light imports only: the Snakefile imports this at parse time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration that must not run; the message names the offending key."""


# ---- files ---------------------------------------------------------------------------------


def load_yaml(path: str | os.PathLike, what: str = "YAML file") -> Any:
    """A YAML file's data; a ConfigError naming the file (and the line) if it cannot be.

    Every YAML the workflow and the CLI read goes through here, so a syntax error names
    the file, line and column instead of ending in a parser traceback.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a {what}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file ({e.reason})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None


# ---- schema validation ---------------------------------------------------------------------


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with a local ``$ref`` (``#/$defs/x``) merged in (its own keys win)."""
    ref = node.get("$ref") if isinstance(node, dict) else None
    if not ref or not ref.startswith("#/"):
        return node
    target: Any = schema
    for part in ref[2:].split("/"):
        target = target.get(part, {})
    return {**_resolve(schema, target), **{k: v for k, v in node.items() if k != "$ref"}}


def _types(node: dict[str, Any]) -> list[str]:
    t = node.get("type", [])
    return [t] if isinstance(t, str) else list(t)


_INT_RE = re.compile(r"[-+]?\d+")
_FLOAT_RE = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def _coerce_value(value: Any, node: dict[str, Any], schema: dict[str, Any]) -> Any:
    node = _resolve(schema, node)
    types = _types(node)
    if isinstance(value, str):
        v = value.strip()
        if "integer" in types and _INT_RE.fullmatch(v):
            return int(v)
        if "number" in types and _FLOAT_RE.fullmatch(v):
            return float(v)
        if "boolean" in types and v.lower() in ("true", "false"):
            return v.lower() == "true"
        if "null" in types and v.lower() in ("null", "none", "~"):
            return None
        return value
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_coerce_value(x, node["items"], schema) for x in value]
    if isinstance(value, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        for k in list(value):
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[k] = _coerce_value(value[k], sub, schema)
    return value


def coerce(config: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Convert strings to the schema's types, in place (Snakemake hands the items of a
    ``--config key='{"M": [1, 4]}'`` override over as strings: '1', '4'). Only a string
    that spells a value of the type is converted; anything else is left for validation to
    reject, with the key named."""
    return _coerce_value(config, schema, schema)


def _validator_class():
    import jsonschema

    from hwlab.records import strict_validator

    base = strict_validator()
    validate_props = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                sub_r = _resolve(validator.schema, sub)
                if "default" in sub_r:
                    instance.setdefault(prop, copy.deepcopy(sub_r["default"]))
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, validators={"properties": set_defaults})


def validate(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Coerce, fill defaults and validate ``config`` in place; error messages (or [])."""
    import jsonschema

    coerce(config, schema)
    cls = _validator_class()
    v = cls(schema)
    # a first pass fills the defaults (a missing section becomes {} and gets its own),
    # the second judges the completed config
    list(v.iter_errors(config))
    err = jsonschema.exceptions.best_match(v.iter_errors(config))
    return [] if err is None else [schema_error_message(err, schema)]


def key_path(parts: Iterable[Any]) -> str:
    """``['gemm', 'M', 2]`` -> ``gemm.M[2]``."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _description(schema: dict[str, Any], parts: list[Any]) -> str | None:
    """Description of the key at ``parts``: its own, else that of the nearest enclosing key
    (an item of a list has the list's). Follows list items and local ``$ref``s."""
    desc, node = None, schema
    for p in parts:
        node = _resolve(schema, node)
        if isinstance(p, int):
            items = node.get("items")
            if not isinstance(items, dict):
                break
            node = items
        else:
            props = node.get("properties", {})
            if p in props:
                node = props[p]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            else:
                break
        desc = _resolve(schema, node).get("description", desc)
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
    if getattr(err, "validator", None) == "required":
        # name the missing key itself (gemm.shapes[0].K), with its own description
        have = err.instance if isinstance(err.instance, dict) else {}
        missing = [k for k in err.validator_value if k not in have]
        if missing:
            parts = parts + [missing[0]]
            where = key_path(parts)
            msg = "is required here but missing"
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
        errors += _file_errors("model.arch", model.get("arch", ""), root, _arch_errors)
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
    if classes:
        errors += _file_errors("decode.kernel_classes", classes, root, _kernel_classes_errors)

    gemm = config.get("gemm", {})
    names = [sh.get("name") for sh in gemm.get("shapes", [])]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        errors.append(f"gemm.shapes: the name {dup[0]!r} is used more than once.")
    ncu = config.get("ncu", {})
    regex = ncu.get("kernel_regex")
    if isinstance(regex, str):
        try:
            re.compile(regex)
        except re.error as e:
            errors.append(f"ncu.kernel_regex: {regex!r} is not a regular expression ({e}).")
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


def _resolve_path(root: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else root / p


def _file_errors(key: str, value: str, root: Path, check) -> list[str]:
    """A file a key names: it must exist, parse, and pass ``check`` (errors name the key)."""
    path = _resolve_path(root, value)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        return [f"{key}: {value!r} {what}."]
    try:
        problems = check(path)
    except ConfigError as e:
        return [f"{key}: {e}."]
    return [f"{key}: {value}: {p}." for p in problems]


def _arch_errors(path: Path) -> list[str]:
    """The model job's own reading (hwlab.model.read_arch), then what makes it unbuildable."""
    from hwlab.model import ModelSourceError, arch_errors, read_arch

    try:
        arch = read_arch(path)
    except ModelSourceError as e:
        raise ConfigError(str(e)) from None
    return arch_errors(arch)


def _kernel_classes_errors(path: Path) -> list[str]:
    from hwlab.inventory import parse_rules

    try:
        parse_rules(load_yaml(path, "kernel class file"), str(path))
    except ConfigError:
        raise
    except ValueError as e:
        return [str(e).removeprefix(f"{path}: ")]
    return []


def catalog_errors(path: Path) -> tuple[list[str], list[str]]:
    """(catalog keys, errors) of the hardware catalog: YAML, entries, ``match`` regexes."""
    try:
        data = load_yaml(path, "hardware catalog")
    except ConfigError as e:
        return [], [str(e)]
    if not isinstance(data, dict) or not data:
        return [], [f"{path}: a hardware catalog is a non-empty mapping of entries"]
    errors = []
    for key, entry in data.items():
        if not isinstance(entry, dict):
            errors.append(f"{path}: entry {key!r} is not a mapping")
            continue
        for i, pattern in enumerate(entry.get("match") or []):
            try:
                re.compile(str(pattern))
            except re.error as e:
                errors.append(f"{path}: {key}.match[{i}]: {pattern!r} is not a regex ({e})")
    return list(data), errors


def metrics_errors(path: Path) -> list[str]:
    """The Nsight Compute metric mapping must parse (every ncu job and table reads it)."""
    from hwlab.ncu import parse_mapping

    try:
        parse_mapping(load_yaml(path, "metric mapping"), str(path))
    except ConfigError as e:
        return [str(e)]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        return [f"{path}: {e}"]
    return []


def config_errors(config: dict[str, Any], root: Path) -> list[str]:
    """Every check the workflow runs on a configuration before any job, in one pass.

    ``config`` is coerced, completed with the schema's defaults and validated in place
    (``root/config/schema.yaml``); when it fits the schema, the cross-key rules follow:
    the hardware catalog, :func:`semantic_errors`, the Nsight Compute metric mapping,
    the memory-hierarchy keys and the decode graph / decode model keys. Both the workflow
    (rules/common.smk) and ``hwlab check-config`` call this, so they accept and refuse
    the same configurations. Returns the error lines ([] for a valid configuration).
    """
    from hwlab.decode_graph import config_errors as decode_model_errors
    from hwlab.hierarchy.measure import config_errors as hierarchy_errors

    root = Path(root)
    try:
        schema = load_yaml(root / "config" / "schema.yaml", "config schema")
    except ConfigError as e:
        return [str(e)]
    # strings from --config are coerced to the schema's types, defaults filled in, and
    # numbers checked strictly (16.0 is not an integer, true is not a number)
    errors = validate(config, schema)
    if errors:
        return errors  # the cross-key rules assume the schema's types
    keys, errors = catalog_errors(root / "config" / "hardware.yaml")
    errors += semantic_errors(config, root, keys)
    errors += metrics_errors(root / "config" / "ncu_metrics.yaml")
    errors += hierarchy_errors(config)
    errors += decode_model_errors(config)
    return errors


def config_digest(config: dict[str, Any]) -> str:
    """sha256 of the resolved config (sorted keys): the same config, the same digest."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
