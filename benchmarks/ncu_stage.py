"""How much the Nsight Compute stage costs where it cannot capture, and how fast it parses.

    python benchmarks/ncu_stage.py [REPORT.ncu-rep]

Prints: (1) the wall time of one skipped capture job's work in a fresh Python process
(start, imports, the skip decision, the record) — what each `ncu_capture` job adds to the
CPU default run besides Snakemake's own job overhead; (2) the time to read a report with
ncu_report (median of repeats), per report and per launch. Default report: the test
fixture (tests/fixtures/ncu/README.md).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hwlab import ncu  # noqa: E402

REPEATS = 7


def skip_job_s() -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        dev = Path(tmp) / "device.json"
        dev.write_text(json.dumps({"kind": "cpu", "name": "cpu"}))
        code = (
            "from hwlab.ncu_capture import capture_decode\n"
            f"capture_decode({str(Path(tmp) / 'b1.json')!r}, device_json={str(dev)!r}, "
            f"mapping_path={str(ncu.DEFAULT_METRICS)!r}, manifest=None, batch=1, "
            "prompt_len=8, warmup_steps=1, decode_steps=1, model='m', dtype='fp32', seed=0, "
            "kernel_regex='flash_fwd', launch_count=1, clock_control='base', "
            "cache_control='all')\n"
        )
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
            times.append(time.perf_counter() - t0)
    return times


def parse_s(report: Path) -> tuple[list[float], int]:
    mapping = ncu.load_mapping()
    n = len(ncu.read_report(report, mapping))  # warm: shared library loaded
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        ncu.read_report(report, mapping)
        times.append(time.perf_counter() - t0)
    return times, n


def main() -> None:
    report = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else (REPO / "tests" / "fixtures" / "ncu" / "addConstDouble.ncu-rep")
    )
    t = skip_job_s()
    print(
        f"skipped capture (fresh process, no torch): median {statistics.median(t) * 1e3:.0f} ms "
        f"(min {min(t) * 1e3:.0f}, max {max(t) * 1e3:.0f}; {REPEATS} runs)"
    )
    if not report.is_file():
        print(f"no report at {report}: parse timing skipped")
        return
    t, n = parse_s(report)
    med = statistics.median(t)
    print(
        f"read_report {report.name} ({report.stat().st_size:,} bytes, {n} launches): "
        f"median {med * 1e3:.2f} ms ({med / n * 1e3:.2f} ms per launch; "
        f"min {min(t) * 1e3:.2f}, max {max(t) * 1e3:.2f} ms; {REPEATS} runs)"
    )


if __name__ == "__main__":
    main()
