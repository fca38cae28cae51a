"""Benchmark: wall time of the decode stage of the CPU default (model + batch jobs + tables).

    python benchmarks/bench_decode_stage.py [--configfile config/config.yaml] [--keep DIR]

Runs the real workflow in a scratch folder: first the backbone jobs the aggregation needs
(device, peaks; not counted), then, timed, the model rule, one decode job per batch and
the aggregation, exactly as `snakemake --cores 1 all` would. Prints the stage's wall time,
each decode job's measured window and the machine's load average (other processes on the
cores make CPU decode timings noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def smk(wd: Path, configfile: Path, *targets: str) -> None:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(wd)]
    cmd += [*targets, "--cores", "1", "--quiet", "rules", "--configfile", str(configfile)]
    subprocess.run(cmd, check=True, cwd=wd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--keep", help="run in this folder and keep it (default: a temp folder)")
    args = ap.parse_args()
    import yaml

    cfg = yaml.safe_load(Path(args.configfile).read_text())
    run = cfg.get("run", "cpu-default")
    res = f"results/{run}"
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(args.keep or tmp)
        wd.mkdir(parents=True, exist_ok=True)
        cfgfile = Path(args.configfile).resolve()
        print(f"load average before: {os.getloadavg()}")
        smk(wd, cfgfile, f"{res}/device.json", f"{res}/peaks.json")
        t0 = time.perf_counter()
        smk(wd, cfgfile, f"{res}/tables/decode.csv")
        wall = time.perf_counter() - t0
        n = len(cfg["decode"]["batches"])
        print(f"decode stage (model + {n} decode jobs + tables): {wall:.1f} s wall")
        for b in cfg["decode"]["batches"]:
            rec = json.loads((wd / res / "decode" / f"b{b}.json").read_text())
            w = rec["window"]
            print(
                f"  batch {b:>4}: job window {w['end'] - w['start']:5.1f} s, status "
                f"{rec['status']}, TPOT p50 {rec.get('tpot_ms_p50') or float('nan'):7.2f} ms "
                f"[p10 {rec.get('tpot_ms_p10') or float('nan'):.2f}, "
                f"p90 {rec.get('tpot_ms_p90') or float('nan'):.2f}]"
            )
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
