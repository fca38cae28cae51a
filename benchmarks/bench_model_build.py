"""Benchmark: build the Qwen2.5-3B architecture with seeded random weights on this machine.

    python benchmarks/bench_model_build.py [--arch config/models/qwen2.5-3b.json]
        [--dtype bf16] [--device cpu] [--naive]

Prints the construction time (modules under no_init_weights), the fill time (every unique
parameter from a seeded generator) and the total, the parameter count and the peak RSS.
--naive also times transformers' default construction with its own weight init, for
comparison (the issue's "40+ s").
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="config/models/qwen2.5-3b.json")
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--naive", action="store_true", help="also time the default init")
    args = ap.parse_args()

    t0 = time.perf_counter()
    import torch

    from hwlab import model as M

    print(f"import torch + hwlab.model: {time.perf_counter() - t0:.2f} s")
    print(f"torch threads: {torch.get_num_threads()}")
    arch = M.read_arch(args.arch)
    M.build_random(arch, dtype=args.dtype, device="meta")  # import transformers' model code

    t0 = time.perf_counter()
    model = M._construct(arch, args.dtype, args.device)
    t1 = time.perf_counter()
    M.fill_random(model, args.seed, float(arch.get("initializer_range", 0.02)))
    t2 = time.perf_counter()
    n = M.param_count(model)
    print(f"construct (no_init_weights): {t1 - t0:.2f} s")
    print(f"fill (seeded, per parameter): {t2 - t1:.2f} s")
    print(f"build total: {t2 - t0:.2f} s for {n:,} parameters ({n / 1e9:.3f} B), {args.dtype}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak RSS: {rss:.2f} GiB")
    del model

    if args.naive:
        from transformers import AutoModelForCausalLM

        t0 = time.perf_counter()
        naive = AutoModelForCausalLM.from_config(
            M._hf_config(arch), **M._dtype_kw(args.dtype), attn_implementation="sdpa"
        )
        print(f"naive from_config (default init): {time.perf_counter() - t0:.2f} s")
        del naive


if __name__ == "__main__":
    main()
