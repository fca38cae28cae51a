"""Knees of a curve measured by working set: where a cache level runs out (pure functions).

A sweep gives one value per working-set size: bandwidth (falls when a level overflows) or
latency (rises). Both are turned into a *cost* that rises at a knee (latency, or 1 /
bandwidth) and read on log-log axes (log2 bytes, log cost). Method:

1. **Smooth** with a running median of three points: a single outlier (a preempted repeat)
   cannot make or hide a step, while a real step, which lasts, survives.
2. **Rises**: the slope of log cost per octave between neighbouring points; a *rise* is a
   maximal run of intervals each steeper than ``min_slope`` (a level overflowing is
   steep; a plateau's slow drift — replacement, TLB reach, sharing — is not); rises less
   than ``merge_octaves`` apart are one rise (a gradual overflow with noise on it).
3. **Persistence**: the plateaus on either side of a rise are the medians of the smoothed
   cost over up to one octave before its start and after its end (never reaching into the
   next rise). A rise is a knee only if the cost after it stays at least ``min_step``
   times the cost before it: a dip that recovers is not a level.
4. **Capacity**: where the curve crosses the geometric midpoint of the two plateaus,
   interpolated in log size between the two grid points that bracket the crossing (its
   bounds). For a cliff (LRU-like streaming) that lands inside the interval holding the
   capacity; for a drift before the cliff (a cache that starts missing early) the
   midpoint is still reached at the cliff.
5. **Plateaus** (:func:`plateau`): a level's value is the median of the points between
   its lower and upper boundary (a quarter octave inside each), its spread their
   interquartile range widened to the points' own confidence intervals.

:func:`match_levels` pairs the knees with the cache sizes the machine reports (nearest in
log size, one to one, within ``max_octaves``), so every level gets its detected capacity,
its reported one and the relative error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from hwlab import formulas as F

MIN_STEP = 1.2  # a knee raises the cost by at least 20% (1/bandwidth or latency)
MIN_SLOPE = 0.35  # log cost per octave: steeper than a plateau's drift (~1.27x / octave)
MAX_OCTAVES = 2.5  # a knee this far (in log2 size) from a reported size is not its match


@dataclass(frozen=True)
class Knee:
    """One step of a curve: the capacity at which the cost rises."""

    capacity_bytes: float  # where the cost crosses the plateaus' geometric midpoint
    lo_bytes: float  # the grid points bracketing that crossing
    hi_bytes: float
    start_bytes: float  # the whole rise
    end_bytes: float
    ratio: float  # cost after / cost before (> 1): bandwidth drop or latency jump
    slope: float  # log cost per octave of the interval holding the capacity

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Level:
    """A plateau between two knees (or before the first / after the last)."""

    from_bytes: float  # first point of the plateau
    to_bytes: float  # last point of the plateau
    value: float  # median of the plateau's points, in the curve's unit
    lo: float  # spread of the plateau (see module docstring)
    hi: float
    n_points: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def running_median(ys: list[float], width: int = 3) -> list[float]:
    """Median of each point and its neighbours (``width`` odd); the two end points keep
    their value (a two-point median would halve a step at the edge)."""
    if width <= 1 or len(ys) < width:
        return list(ys)
    h = width // 2
    out = list(ys)
    for i in range(h, len(ys) - h):
        out[i] = sorted(ys[i - h : i + h + 1])[h]
    return out


def cost(values: list[float], kind: str) -> list[float]:
    """log of the cost that rises at a knee: latency, or 1 / bandwidth."""
    if kind not in ("bandwidth", "latency"):
        raise ValueError(f"kind must be bandwidth or latency, got {kind!r}")
    if any(v is None or not v > 0 or math.isinf(v) for v in values):
        raise ValueError("every value must be a positive number")
    sign = -1.0 if kind == "bandwidth" else 1.0
    return [sign * math.log(v) for v in values]


def _sorted(sizes: list[float], values: list[float]) -> tuple[list[float], list[float]]:
    if len(sizes) != len(values):
        raise ValueError(f"{len(sizes)} sizes but {len(values)} values")
    pairs = sorted(zip(sizes, values, strict=True))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _rises(xs: list[float], ys: list[float], min_slope: float, merge: float) -> list[list[int]]:
    """[k, j]: index ranges of points such that every interval k..j-1 belongs to a rise."""
    slopes = [
        (ys[k + 1] - ys[k]) / (xs[k + 1] - xs[k]) if xs[k + 1] > xs[k] else 0.0
        for k in range(len(xs) - 1)
    ]
    runs: list[list[int]] = []
    for k, s in enumerate(slopes):
        if s <= min_slope:
            continue
        if runs and (runs[-1][1] == k or xs[k] - xs[runs[-1][1]] < merge):
            runs[-1][1] = k + 1
        else:
            runs.append([k, k + 1])
    return runs


def detect_knees(
    sizes: list[float],
    values: list[float],
    kind: str,
    *,
    min_step: float = MIN_STEP,
    min_slope: float = MIN_SLOPE,
    merge_octaves: float = 0.5,
    window_octaves: float = 1.0,
    smooth: int = 3,
) -> list[Knee]:
    """The knees of one sweep (see the module docstring), smallest capacity first."""
    xs_b, vs = _sorted(list(sizes), list(values))
    if len(xs_b) < 3:
        return []
    xs = [math.log2(s) for s in xs_b]
    ys = running_median(cost(vs, kind), smooth)
    runs = _rises(xs, ys, min_slope, merge_octaves)
    knees: list[Knee] = []
    for r, (k, j) in enumerate(runs):
        left_end = runs[r - 1][1] if r else 0
        right_end = runs[r + 1][0] if r + 1 < len(runs) else len(xs) - 1
        before = [ys[i] for i in range(left_end, k + 1) if xs[k] - xs[i] <= window_octaves]
        after = [ys[i] for i in range(j, right_end + 1) if xs[i] - xs[j] <= window_octaves]
        lo_y, hi_y = F.median(before), F.median(after)
        if hi_y - lo_y < math.log(min_step):
            continue
        mid = 0.5 * (lo_y + hi_y)
        i = next((i for i in range(k, j) if ys[i] < mid <= ys[i + 1]), None)
        if i is None:  # the rise never crosses its own midpoint (noise): take its steepest
            i = max(range(k, j), key=lambda i: ys[i + 1] - ys[i])
        t = (mid - ys[i]) / (ys[i + 1] - ys[i]) if ys[i + 1] > ys[i] else 0.5
        t = min(1.0, max(0.0, t))
        x_star = xs[i] + t * (xs[i + 1] - xs[i])
        knees.append(
            Knee(
                capacity_bytes=2.0**x_star,
                lo_bytes=xs_b[i],
                hi_bytes=xs_b[i + 1],
                start_bytes=xs_b[k],
                end_bytes=xs_b[j],
                ratio=math.exp(hi_y - lo_y),
                slope=(ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]),
            )
        )
    return knees


def plateau(
    sizes: list[float],
    values: list[float],
    above: float,
    below: float,
    lo: list[float] | None = None,
    hi: list[float] | None = None,
) -> Level | None:
    """The plateau of the points with ``above`` < size < ``below``: their median, and
    their spread (interquartile range, widened to the median of the points' own
    intervals ``lo`` / ``hi``, e.g. 95% CIs). None if no point lies there."""
    idx = [i for i in sorted(range(len(sizes)), key=lambda i: sizes[i]) if above < sizes[i] < below]
    if not idx:
        return None
    vals = [values[i] for i in idx]
    los = [(lo or values)[i] for i in idx]
    his = [(hi or values)[i] for i in idx]
    return Level(
        from_bytes=sizes[idx[0]],
        to_bytes=sizes[idx[-1]],
        value=F.quantile(vals, 0.5),
        lo=min(F.quantile(vals, 0.25), F.quantile(los, 0.5)),
        hi=max(F.quantile(vals, 0.75), F.quantile(his, 0.5)),
        n_points=len(idx),
    )


def match_levels(
    knees: list[Knee], reported: list[tuple[str, float]], max_octaves: float = MAX_OCTAVES
) -> dict[str, Knee | None]:
    """Pair each reported (name, bytes) level with a knee: closest pairs first in log2
    distance, one knee per level, none farther than ``max_octaves``. Levels without a knee
    map to None."""
    pairs = sorted(
        (abs(math.log2(k.capacity_bytes) - math.log2(size)), ki, name)
        for ki, k in enumerate(knees)
        for name, size in reported
        if size and size > 0
    )
    out: dict[str, Knee | None] = {name: None for name, _ in reported}
    used: set[int] = set()
    for dist, ki, name in pairs:
        if dist > max_octaves or ki in used or out[name] is not None:
            continue
        out[name] = knees[ki]
        used.add(ki)
    return out


def rel_error(detected: float | None, reported: float | None) -> float | None:
    """(detected − reported) / reported; None if either is unknown."""
    if detected is None or not reported:
        return None
    return (detected - reported) / reported


def error_interval(knee: Knee, reported: float) -> tuple[float, float]:
    """The relative error's range given the knee's bracketing interval."""
    return (knee.lo_bytes - reported) / reported, (knee.hi_bytes - reported) / reported
