"""Benchmark: what graph-mode decode costs to compile, cold and warm, and what it buys.

    python benchmarks/bench_graph_compile.py [--arch config/models/qwen2-tiny.json]
        [--dtype fp32] [--batches 1,16] [--prompt-len 64] [--steps 24]

For each batch, in a fresh process per measurement (so dynamo's in-memory caches do not
carry over): compile the decode step over a StaticCache (hwlab.decode_graph.GraphStep, the
pipeline's own code) with an empty inductor cache directory (cold) and again with the one
just filled (warm), and print the compile-run time (the three warm-up calls), the graph TPOT
(median of the timed steps) and the eager TPOT (DynamicCache) of the same model. This is
the measurement behind the CPU default compiling batch 1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import torch
from hwlab import model as hwmodel
from hwlab.decode import decode_step, prefill, random_prompt
from hwlab.decode_graph import GraphStep, cache_len
from hwlab.device import Device
from hwlab.formulas import median

dev = Device("cuda" if torch.cuda.is_available() else "cpu")
m = hwmodel.build_random({arch!r}, dtype={dtype!r}, device=str(dev.torch_device), seed=0)
ids = random_prompt({batch}, {prompt}, int(m.config.vocab_size), 0, dev.torch_device)
step = GraphStep(m, dev, cache_len({prompt}, {steps}, 3))
nxt = step.prefill(ids)
t0 = time.perf_counter()
for _ in range(3):
    nxt = step(nxt)
dev.synchronize()
compile_s = time.perf_counter() - t0
nxt = step.prefill(ids)
ts = []
for _ in range({steps}):
    t = time.perf_counter(); nxt = step(nxt); dev.synchronize(); ts.append(time.perf_counter() - t)
cache, n2 = prefill(m, ids)
es = []
for _ in range({steps}):
    t = time.perf_counter(); n2 = decode_step(m, cache, n2); dev.synchronize()
    es.append(time.perf_counter() - t)
print(json.dumps({{"compile_s": compile_s, "graph_ms": median(ts[4:]) * 1e3,
                  "eager_ms": median(es[4:]) * 1e3}}))
"""


def run(args, batch: int, cache_dir: str) -> dict:
    code = CHILD.format(
        repo=str(REPO),
        arch=args.arch,
        dtype=args.dtype,
        batch=batch,
        prompt=args.prompt_len,
        steps=args.steps,
    )
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default=str(REPO / "config" / "models" / "qwen2-tiny.json"))
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=24)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (other processes make CPU timings noisy)")
    print(f"{'batch':>5} {'cache':>5} {'compile s':>9} {'graph ms':>9} {'eager ms':>9}")
    for b in (int(x) for x in args.batches.split(",")):
        with tempfile.TemporaryDirectory(prefix="inductor-") as d:
            for label in ("cold", "warm"):
                r = run(args, b, d)
                print(
                    f"{b:>5} {label:>5} {r['compile_s']:>9.2f} {r['graph_ms']:>9.3f} "
                    f"{r['eager_ms']:>9.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
