"""The hardware catalog (``config/hardware.yaml``): spec-sheet ceilings and device matching.

A run compares its measurements with two sets of ceilings: the spec (this catalog, when
the device matches an entry) and what the run measured itself (the peaks stage). A CPU
never matches: no catalog can know the host, so its ceilings are measured only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "config" / "hardware.yaml"


def load(path: str | Path = DEFAULT_CATALOG) -> dict[str, dict[str, Any]]:
    from hwlab.config import load_yaml

    data = load_yaml(path, "hardware catalog")
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: a hardware catalog is a non-empty mapping of entries")
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {key!r} is not a mapping")
        for field in ("name", "mem_bw_gbps", "memory_gb", "peak_tflops", "sources"):
            if field not in entry:
                raise ValueError(f"{path}: entry {key!r} lacks {field!r}")
    return data


def match(device_name: str, catalog: dict[str, dict[str, Any]]) -> str | None:
    """The first catalog key whose ``match`` regexes find ``device_name``, else None."""
    for key, entry in catalog.items():
        for pattern in entry.get("match", []):
            if re.search(pattern, device_name, flags=re.IGNORECASE):
                return key
    return None


def resolve(requested: str, device: dict[str, Any], catalog: dict[str, dict[str, Any]]):
    """Catalog key for a run: ``auto`` matches the detected device, else the named key.

    Returns (key or None, how it was chosen).
    """
    if requested != "auto":
        if requested not in catalog:
            raise KeyError(
                f"hardware: {requested!r} is not in the catalog; known: {', '.join(catalog)}"
            )
        return requested, "set in config"
    if device.get("kind") == "cpu":
        return None, "CPU host: no catalog entry; ceilings are measured in this run"
    key = match(device.get("name", ""), catalog)
    if key is None:
        return None, f"no catalog entry matches {device.get('name')!r}; measured ceilings only"
    return key, f"matched {device.get('name')!r}"


def peak_tflops(entry: dict[str, Any] | None, dtype: str, sparse: bool = False) -> float | None:
    """Spec peak of ``entry`` for ``dtype`` (dense unless ``sparse``); None if unknown."""
    if not entry:
        return None
    peaks = entry.get("peak_tflops") or {}
    by_dtype = peaks.get(dtype)
    twin = {"fp16": "bf16", "bf16": "fp16"}.get(dtype)
    if by_dtype is None and twin:  # same tensor-core rate; entries may list only one
        by_dtype = peaks.get(twin)
    if not by_dtype:
        return None
    return by_dtype.get("sparse" if sparse else "dense")


def write_hardware_json(out: str, *, device_json: str, hardware: str, catalog_path: str) -> None:
    """``hardware.json``: the catalog entry this run is compared with, and why."""
    from hwlab import records
    from hwlab.io import write_json

    info = records.read(device_json, "device")
    entries = load(catalog_path)
    key, how = resolve(hardware, info, entries)
    write_json(
        out,
        {
            "requested": hardware,
            "device_name": info.get("name"),
            "catalog_key": key,
            "catalog_reason": how,
            "spec": entries.get(key) if key else None,
        },
    )
