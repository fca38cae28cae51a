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


def group_reasons(items: Iterable[tuple[Any, Any, Any]], what: str = "batch") -> list[str]:
    """(key, status, reason) triples as one line per distinct (status, reason), its keys
    listed together: 'batches 1, 32: skipped: no GPU' rather than the reason twice."""
    groups: dict[tuple[str, str], list[str]] = {}
    for key, status, reason in items:
        groups.setdefault((str(status), str(reason)), []).append(str(key))
    plural = what + ("es" if what.endswith(("s", "h", "x")) else "s")
    out = []
    for (status, reason), keys in groups.items():
        label = f"{what} {keys[0]}" if len(keys) == 1 else f"{plural} {', '.join(keys)}"
        out.append(f"{label}: {status}: {reason}")
    return out


def with_window(rec: dict[str, Any], start: float) -> dict[str, Any]:
    """Add the wall-clock window (epoch seconds) a measurement occupied, so overlapping
    measurements can be detected afterwards (they must never overlap)."""
    rec["window"] = {"start": start, "end": time.time()}
    return rec


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def fmt_sig(x: Any, digits: int = 3) -> str:
    """``digits`` significant digits as prose prints them, never in exponent notation for
    ordinary magnitudes: from 10**digits up the whole number, thousands grouped (1,330);
    below, the %g form (558, 9.91, 0.00774); '—' for a missing value."""
    if x is None:
        return "—"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "—" if v != v else str(v)
    s = f"{v:.{digits}g}"
    if abs(v) >= 10**digits or "e+" in s:  # 999.7 rounds to 1e+03 at 3 digits
        return f"{v:,.0f}"
    return s


def finite(x: Any) -> float | None:
    """``x`` as a float, or None when it is missing, not a number, NaN or infinite (the
    one reader of optional numeric cells and record fields)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt_number(x: Any) -> str:
    """A number as a table shows it, never in exponent notation for ordinary magnitudes:
    thousands grouped and no decimals from 1,000 up (1,180), one decimal from 10 (38.6),
    three significant digits below (9.91, 0.592, 0.00774); '—' for a missing value."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) or (hasattr(x, "is_integer") and not isinstance(x, float)):
        try:
            return f"{int(x):,}"
        except (TypeError, ValueError):
            return str(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "—" if v != v else str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1e-3:
        return f"{v:.3g}"
    return f"{v:.2e}"


def _is_number(x: Any) -> bool:
    if isinstance(x, bool) or x is None:
        return False
    if isinstance(x, int | float):
        return True
    return (
        hasattr(x, "item") and isinstance(x.item(), int | float) and not isinstance(x.item(), bool)
    )


def markdown(df, missing: str = "—") -> str:
    """``df`` as a Markdown table: numbers through :func:`fmt_number` (right-aligned),
    missing values as ``missing``, strings as they are."""
    cols = list(df.columns)
    numeric = []
    rows = []
    for c in cols:
        vals = [
            v for v in df[c].tolist() if not (isinstance(v, float) and v != v) and v is not None
        ]
        numeric.append(bool(vals) and all(_is_number(v) for v in vals))
    for rec in df.itertuples(index=False):
        row = []
        for v in rec:
            if v is None or (isinstance(v, float) and v != v):
                row.append(missing)
            elif _is_number(v):
                row.append(fmt_number(v.item() if hasattr(v, "item") else v))
            else:
                row.append(str(v))
        rows.append(row)
    from tabulate import tabulate

    return tabulate(
        rows,
        headers=[str(c) for c in cols],
        tablefmt="pipe",
        disable_numparse=True,
        colalign=["right" if n else "left" for n in numeric],
    )


def write_table(
    df,
    csv_path: str | os.PathLike | None,
    md_path: str | os.PathLike | None = None,
    *,
    md_columns: Mapping[str, str] | None = None,
    title: str | None = None,
    notes: Iterable[str] = (),
    title_level: int = 3,
) -> None:
    """Write ``df`` as CSV (all columns, machine names) and optionally as Markdown.

    ``md_columns`` maps column -> human header for the Markdown view (in that order);
    ``notes`` are printed under the table, e.g. to say what a timer really measured.
    Numbers are formatted by :func:`fmt_number` (no exponent notation).
    """
    if csv_path is not None:
        with atomic_path(csv_path) as tmp:
            df.to_csv(tmp, index=False)
    if md_path is None:
        return
    view = df
    if md_columns:
        view = df[[c for c in md_columns if c in df.columns]].rename(columns=dict(md_columns))
    lines = []
    if title:
        lines += [f"{'#' * title_level} {title}", ""]
    lines.append(markdown(view))
    notes = list(notes)
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    write_text(md_path, "\n".join(lines) + "\n")
