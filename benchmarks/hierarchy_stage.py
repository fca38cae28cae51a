"""Benchmark: the §1 memory job on the embedded default's settings, outside Snakemake.

Prints the time of each part (buffer, read, copy, chase) and the knees against the sizes
the machine reports. Run under the shared lock on a shared machine:

    flock /tmp/hwlab-cpu.lock python benchmarks/hierarchy_stage.py
"""

import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwlab.device import write_device_json  # noqa: E402
from hwlab.hierarchy import measure, table  # noqa: E402


def main() -> None:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    h = cfg["hierarchy"]
    p = {k: v for k, v in h.items() if k not in ("gpu", "link_max_bytes")}
    p.update({f"gpu_{k}": v for k, v in h["gpu"].items()}, seed=cfg["seed"])
    with tempfile.TemporaryDirectory() as d:
        dev = f"{d}/device.json"
        write_device_json(dev, requested="auto", hardware="auto",
                          catalog_path=str(ROOT / "config" / "hardware.yaml"))  # fmt: skip
        t0 = time.perf_counter()
        rec = measure.write_memory_json(f"{d}/memory.json", device_json=dev, threads=0, **p)
        wall = time.perf_counter() - t0
    print(f"memory job: {wall:.1f} s in-process ({rec['status']})")
    for k, v in (rec.get("timings_s") or {}).items():
        print(f"  {k:10s} {v:6.2f} s")
    if rec["status"] != "ok":
        print(rec["reason"])
        return
    for name, a in table.analyse(rec).items():
        for lv, x in a["levels"].items():
            k = x.get("knee")
            if k and x.get("reported_bytes"):
                print(f"  {name:6s} {lv:5s} knee {table.fmt_bytes(k['capacity_bytes']):>10s} "
                      f"vs {table.fmt_bytes(x['reported_bytes']):>8s} "
                      f"({100 * x['error']:+.0f}%)")  # fmt: skip


if __name__ == "__main__":
    main()
