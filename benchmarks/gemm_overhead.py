"""Harness overhead: the pipeline's timing of one GEMM point vs a bare loop of the same op.

Both run in this process on the same tensors, interleaved (bare, harness, bare, ...) so
drift in clocks or load hits both alike. Prints the median time per call of each and how
far apart they are (target: <= 3%).

    python benchmarks/gemm_overhead.py [--device cpu|cuda] [--M 64] [--dtype fp32]
"""

from __future__ import annotations

import argparse
import statistics
import time

from hwlab import gemm
from hwlab.device import Device


def bare_loop(dev: Device, fn, iters: int) -> float:
    dev.synchronize()
    t0 = time.perf_counter_ns()
    for _ in range(iters):
        fn()
    dev.synchronize()
    return (time.perf_counter_ns() - t0) / 1e9 / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--M", type=int, default=64)
    ap.add_argument("--N", type=int, default=11008)
    ap.add_argument("--K", type=int, default=2048)
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()

    dev = Device(a.device)
    fn = gemm.make_op(dev, a.dtype, a.M, a.N, a.K)
    for _ in range(5):
        fn()
    bare, harness = [], []
    for _ in range(a.rounds):
        bare.append(bare_loop(dev, fn, a.iters))
        t = gemm.time_op(dev, fn, l2="warm", warmup=0, repeats=1, iters=a.iters)
        harness.append(t.device_s[0])
    b, h = statistics.median(bare), statistics.median(harness)
    print(
        f"device={a.device} dtype={a.dtype} M={a.M} N={a.N} K={a.K} iters={a.iters} "
        f"rounds={a.rounds}"
    )
    print(f"bare loop      : {b * 1e6:10.1f} us/call (min {min(bare) * 1e6:.1f})")
    print(f"pipeline timer : {h * 1e6:10.1f} us/call (min {min(harness) * 1e6:.1f})")
    print(f"difference     : {100 * (h - b) / b:+.2f} %")


if __name__ == "__main__":
    main()
