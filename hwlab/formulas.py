"""Pure functions for every number the lab derives from a measurement or a spec sheet.

Nothing here measures or reads files: each function is arithmetic on its arguments, so the
writeup's worked numbers can be checked against it in unit tests. Units are in the names
(``_s`` seconds, ``_us`` microseconds, ``_gbps`` 1e9 bytes/s, ``_tflops`` 1e12 FLOP/s).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# --------------------------------------------------------------------------------------
# GEMM / roofline (writeup Lab 2)
# --------------------------------------------------------------------------------------


def gemm_flops(m: int, n: int, k: int) -> float:
    """FLOPs of C[m,n] = A[m,k] @ B[k,n]: one multiply and one add per (m, n, k)."""
    return 2.0 * m * n * k


def gemm_bytes(m: int, n: int, k: int, a_bytes: float, b_bytes: float, c_bytes: float) -> float:
    """Analytic bytes moved by one GEMM: A, B and C each touched once (no reuse, no cache).

    This is the writeup's "Effective GB/s" byte count; real DRAM traffic can be lower
    (L2 hits) or higher (re-reads of tiles), which is what NCU's dram__bytes measures.
    """
    return m * k * a_bytes + n * k * b_bytes + m * n * c_bytes


def arithmetic_intensity(flops: float, nbytes: float) -> float:
    """FLOP per byte."""
    return flops / nbytes


def tflops(flops: float, seconds: float) -> float:
    """Achieved TFLOP/s (1e12)."""
    return flops / seconds / 1e12


def gbps(nbytes: float, seconds: float) -> float:
    """Achieved GB/s (1e9 bytes per second, as nccl-tests and NVIDIA spec sheets count)."""
    return nbytes / seconds / 1e9


def pct(value: float | None, peak: float | None) -> float | None:
    """``value`` as a percentage of ``peak``; None when either is unknown."""
    if value is None or peak is None or peak == 0:
        return None
    return 100.0 * value / peak


def ridge_point(peak_tflops: float, mem_bw_gbps: float) -> float:
    """Arithmetic intensity (FLOP/byte) at which the compute and memory ceilings meet."""
    return peak_tflops * 1e12 / (mem_bw_gbps * 1e9)


def roofline_tflops(ai: float, peak_tflops: float, mem_bw_gbps: float) -> float:
    """Attainable TFLOP/s at intensity ``ai``: min(compute ceiling, ai x bandwidth)."""
    return min(peak_tflops, ai * mem_bw_gbps * 1e9 / 1e12)


# --------------------------------------------------------------------------------------
# Decode (writeup §5 and Week 1's batch sweep)
# --------------------------------------------------------------------------------------


def weight_bytes(params: float, bytes_per_param: float) -> float:
    """Bytes of the weights that every decode step must stream from memory."""
    return params * bytes_per_param


def kv_cache_bytes(
    batch: int,
    seq_len: int,
    layers: int,
    kv_heads: int,
    head_dim: int,
    bytes_per_el: float,
) -> float:
    """Bytes of K and V for ``seq_len`` cached positions: 2 x layers x kv_heads x head_dim."""
    return 2.0 * batch * seq_len * layers * kv_heads * head_dim * bytes_per_el


def decode_step_napkin_s(weight_nbytes: float, kv_nbytes: float, mem_bw_gbps: float) -> float:
    """Lower bound for one decode step: every weight and every cached K/V byte read once.

    The writeup's §5: 6 GB / 3.35 TB/s = 1.79 ms for a 3B bf16 model on an H100.
    """
    return (weight_nbytes + kv_nbytes) / (mem_bw_gbps * 1e9)


def scaling_efficiency(tok_s_batch: float, batch: int, tok_s_batch1: float) -> float:
    """Throughput at ``batch`` relative to ``batch`` independent batch-1 streams."""
    return tok_s_batch / (batch * tok_s_batch1)


# --------------------------------------------------------------------------------------
# Collectives (nccl-tests' definitions, writeup §6)
# --------------------------------------------------------------------------------------


def algbw_gbps(size_bytes: float, seconds: float) -> float:
    """Algorithm bandwidth: message size over time (nccl-tests)."""
    return gbps(size_bytes, seconds)


def allreduce_busbw_factor(world_size: int) -> float:
    """nccl-tests' AllReduce bus-bandwidth factor 2(n-1)/n: bytes each rank sends per byte."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return 2.0 * (world_size - 1) / world_size


def busbw_gbps(algbw: float, world_size: int) -> float:
    """AllReduce bus bandwidth: algbw x 2(n-1)/n, comparable with the link's line rate."""
    return algbw * allreduce_busbw_factor(world_size)


def tp_allreduce_bytes(batch: int, seq_len: int, d_model: int, bytes_per_el: float = 2) -> float:
    """Message of one tensor-parallel AllReduce: the activations batch x seq x d_model."""
    return bytes_per_el * batch * seq_len * d_model


def ring_traffic_bytes(message_bytes: float, world_size: int) -> float:
    """Bytes each GPU sends in a ring AllReduce of ``message_bytes``."""
    return message_bytes * allreduce_busbw_factor(world_size)


# --------------------------------------------------------------------------------------
# Statistics used by every measuring stage
# --------------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default method) of a non-empty sequence."""
    if not values:
        raise ValueError("quantile of an empty sequence")
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def rel_spread(values: Sequence[float]) -> float:
    """(max - min) / median: how far the repeats of one measurement disagree."""
    m = median(values)
    return (max(values) - min(values)) / m if m else float("inf")


def rel_iqr(values: Sequence[float]) -> float:
    """Interquartile range over the median: a spread that, unlike (max - min), does not
    grow with the number of repeats."""
    m = median(values)
    return (quantile(values, 0.75) - quantile(values, 0.25)) / m if m else float("inf")


def median_ci(values: Sequence[float], conf: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (order statistics).

    With n sorted samples, [x_(k), x_(n+1-k)] (1-based) covers the population median with
    probability 1 - 2 P(Bin(n, 1/2) <= k - 1); k is the largest rank keeping that at least
    ``conf``. Below 6 samples no pair reaches 95%: the interval is [min, max] (coverage
    1 - 2^(1-n), 94% at n = 5)."""
    import math

    xs = sorted(values)
    n = len(xs)
    if not n:
        raise ValueError("median_ci of an empty sequence")
    k = 1
    # grow k while the next interval [x_(k+1), x_(n-k)] still has coverage >= conf
    while k + 1 <= (n + 1) // 2:
        tail = sum(math.comb(n, j) for j in range(k + 1)) / 2.0**n  # P(Bin <= k)
        if 1.0 - 2.0 * tail < conf:
            break
        k += 1
    return xs[k - 1], xs[n - k]


def rel_ci(values: Sequence[float], conf: float = 0.95) -> float:
    """Relative width of the median's confidence interval: how well the median is known
    (shrinks like 1/sqrt(n) as repeats are added; the adaptive stopping rule uses it)."""
    lo, hi = median_ci(values, conf)
    m = median(values)
    return (hi - lo) / m if m else float("inf")


def point_range(value: Any, t_med: Any, t_min: Any, t_max: Any) -> tuple[Any, Any]:
    """(lo, hi) of a rate (TFLOP/s, GB/s, busbw) measured as ``value`` at median time
    ``t_med``: a rate is inversely proportional to time, so at the slowest repeat it is
    value x t_med / t_max and at the fastest value x t_med / t_min; (value, value) when a
    time is missing, NaN or not positive (no spread recorded)."""
    try:
        v, tm, t0, t1 = (float(x) for x in (value, t_med, t_min, t_max))
    except (TypeError, ValueError):
        return value, value
    if not all(x == x and x > 0 for x in (v, tm, t0, t1)):
        return value, value
    return v * tm / t1, v * tm / t0
