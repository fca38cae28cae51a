"""Logging for script jobs: stderr (Python's and C libraries') and ``logging`` go to the
job's log file, so a failed job's reason is in ``logs/`` and the console stays readable."""

from __future__ import annotations

import logging
import os
import sys


def to_log(path: str) -> logging.Logger:
    fh = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    os.dup2(fh.fileno(), 2)
    sys.stderr = fh
    logging.basicConfig(
        stream=fh,
        level=logging.INFO,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return logging.getLogger("hwlab")
