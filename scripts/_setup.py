"""Imported first by every script job: makes the hwlab package beside scripts/ importable
whether or not it is installed (and this checkout's copy win over an installed one).
With HWLAB_JOB_TIMES=DIR set (benchmarks/bench_rules.py), the job also records its wall
time there when it exits (hwlab/jobtimes.py)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if os.environ.get("HWLAB_JOB_TIMES"):
    from hwlab import jobtimes

    jobtimes.install(os.environ["HWLAB_JOB_TIMES"])
