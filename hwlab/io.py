"""Records and tables: every file a stage writes goes through here.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so an
interrupted job never leaves a half-written result behind. Every measured record carries
``status`` (ok / skipped / oom / failed) and ``reason``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)

OK, SKIPPED, OOM, FAILED = "ok", "skipped", "oom", "failed"
STATUSES = (OK, SKIPPED, OOM, FAILED)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; move it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for reading
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _clean(obj: Any) -> Any:
    """Make a value JSON-safe: NaN/inf become null, tuples lists, numpy scalars Python."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalar
        return _clean(obj.item())
    return obj


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def record(status: str, reason: str | None = None, **fields: Any) -> dict[str, Any]:
    """A stage record: status first, then the reason, then the stage's fields."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    return {"status": status, "reason": reason, **fields}


def with_window(rec: dict[str, Any], start: float) -> dict[str, Any]:
    """Add the wall-clock window (epoch seconds) a measurement occupied, so overlapping
    measurements can be detected afterwards (they must never overlap)."""
    rec["window"] = {"start": start, "end": time.time()}
    return rec


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_table(
    df,
    csv_path: str | os.PathLike,
    md_path: str | os.PathLike | None = None,
    *,
    md_columns: Mapping[str, str] | None = None,
    title: str | None = None,
    notes: Iterable[str] = (),
    floatfmt: str = ".3g",
) -> None:
    """Write ``df`` as CSV (all columns, machine names) and optionally as Markdown.

    ``md_columns`` maps column -> human header for the Markdown view (in that order);
    ``notes`` are printed under the table, e.g. to say what a timer really measured.
    """
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    if md_path is None:
        return
    view = df
    if md_columns:
        view = df[[c for c in md_columns if c in df.columns]].rename(columns=dict(md_columns))
    lines = []
    if title:
        lines += [f"### {title}", ""]
    view = view.astype(object).where(view.notna(), None)  # NaN -> "—"
    lines.append(view.to_markdown(index=False, floatfmt=floatfmt, missingval="—"))
    notes = list(notes)
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    write_text(md_path, "\n".join(lines) + "\n")
