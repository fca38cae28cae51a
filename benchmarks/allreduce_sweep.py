"""Benchmark: wall time of the default AllReduce sweep job (target: under ~25 s on 2 cores).

Runs the same function as the Snakemake job (hwlab.allreduce.measure) with the
allreduce section of config/config.yaml (or --config FILE), in a temporary folder, and
prints the job's wall time, the measuring window, and the fitted alpha, beta and knee.

    python benchmarks/allreduce_sweep.py [--config config/config.yaml] [--backend auto]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwlab.allreduce import measure  # noqa: E402
from hwlab.allreduce_table import fits, fmt_bytes, table  # noqa: E402
from hwlab.device import detect  # noqa: E402
from hwlab.io import write_json  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    ap.add_argument("--backend", default=None, help="override allreduce.backends[0]")
    ap.add_argument("--world-size", type=int, default=None)
    args = ap.parse_args()
    a = yaml.safe_load(Path(args.config).read_text())["allreduce"]
    with tempfile.TemporaryDirectory() as tmp:
        dev = Path(tmp) / "device.json"
        write_json(dev, detect("auto"))
        t0 = time.perf_counter()
        rec = measure(
            str(Path(tmp) / "sweep.json"),
            str(Path(tmp) / "sweep.csv"),
            device_json=str(dev),
            backend=args.backend or a["backends"][0],
            world_size=args.world_size or a["world_sizes"][0],
            nodes=a.get("nodes", 1),
            dtype=a["dtype"],
            min_bytes=a["min_bytes"],
            max_bytes=a["max_bytes"],
            warmup=a["warmup"],
            iters=a["iters"],
            min_iters=a.get("min_iters", 3),
            budget_mb=a.get("budget_mb", 0),
            timeout_s=a.get("timeout_s", 600),
        )
        wall = time.perf_counter() - t0
    print(f"status {rec['status']} backend {rec['backend']} n={rec['world_size']} {rec['dtype']}")
    if rec["status"] != "ok":
        print(f"reason: {rec['reason']}")
        return 0
    window = rec["window"]["end"] - rec["window"]["start"]
    df = table([rec])
    f = fits(df).iloc[0]
    print(f"job wall time            {wall:6.1f} s   (target < 25 s on 2 cores)")
    print(f"measuring window         {window:6.1f} s   (torchrun start + all sizes)")
    print(
        f"sizes                    {len(df)} ({fmt_bytes(df.size_bytes.min())} .. "
        f"{fmt_bytes(df.size_bytes.max())}), all correct: {bool(df.correct.all())}"
    )
    print(f"alpha                    {f.alpha_us:8.1f} us")
    print(f"beta (busbw)             {f.beta_busbw_gbps:8.3f} GB/s")
    print(f"knee n* = alpha*beta     {fmt_bytes(f.knee_bytes)}")
    print(f"busbw at largest size    {f.busbw_at_max_gbps:8.3f} GB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
