"""Imported first by every script job.

- Makes the hwlab package beside scripts/ importable whether or not it is installed (and
  this checkout's copy win over an installed one).
- A measuring job (its rule declares ``resources: measure=1``) takes the machine-wide
  measurement lock here, before it imports torch or measures anything, so every such rule
  gets it without code of its own; every other job takes the lock shared (see
  hwlab/lock.py). The kernel releases it when the job's process ends, however it ends.
- With HWLAB_JOB_TIMES=DIR set (benchmarks/bench_rules.py), the job also records its wall
  time there when it exits (hwlab/jobtimes.py).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import __main__  # noqa: E402
from hwlab import lock as _lock  # noqa: E402

MEASURE_LOCK = _lock.for_job(getattr(__main__, "snakemake", None))

if os.environ.get("HWLAB_JOB_TIMES"):
    from hwlab import jobtimes

    jobtimes.install(os.environ["HWLAB_JOB_TIMES"])
