"""Shared fixtures (helpers live in helpers.py)."""

from __future__ import annotations

import pytest
from helpers import TINY, smk, write_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The backbone on the tiny config, run once per test session (real torch, CPU)."""
    wd = tmp_path_factory.mktemp("tiny")
    cfg = write_config(wd / "tiny.yaml", TINY)
    proc = smk(wd, "all", configfile=cfg)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return wd, cfg, wd / "results" / "tiny"
