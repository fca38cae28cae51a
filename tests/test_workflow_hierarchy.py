"""The hierarchy stage end to end through Snakemake on a tiny config (real numba kernels)."""

import json

import pandas as pd
import pytest
import yaml
from helpers import TINY, planned_jobs, smk, write_config

from hwlab.hierarchy.cpu import reported_levels

pytestmark = pytest.mark.slow

TARGETS = [
    "results/tiny/tables/hierarchy.csv",
    "results/tiny/tables/hierarchy.md",
    "results/tiny/figures/hierarchy.png",
]


@pytest.fixture(scope="module")
def hierarchy_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("hier")
    cfg = write_config(wd / "tiny.yaml", TINY)
    proc = smk(wd, *TARGETS, configfile=cfg)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return wd, cfg, wd / "results" / "tiny"


def test_records(hierarchy_run):
    res = hierarchy_run[2]
    mem = json.loads((res / "hierarchy" / "memory.json").read_text())
    assert mem["status"] == "ok" and mem["device_kind"] == "cpu"
    assert set(mem["sweeps"]) == {"read", "copy", "chase"}
    for sw in mem["sweeps"].values():
        sizes = [p["size_bytes"] for p in sw["points"]]
        assert sizes[0] == 4096 and sizes[-1] <= 8 << 20 and len(sizes) >= 10
    assert mem["params"]["points_per_octave"] == 2  # the config reached the job
    link = json.loads((res / "hierarchy" / "link.json").read_text())
    assert link["status"] == "skipped" and "CUDA GPU" in link["reason"]
    for f in ("tables/hierarchy_points.csv", "figures/hierarchy.svg", "hierarchy/analysis.json"):
        assert (res / f).is_file(), f


def test_table(hierarchy_run):
    res = hierarchy_run[2]
    t = pd.read_csv(res / "tables" / "hierarchy.csv")
    reported = [lv["name"] for lv in reported_levels([0], 1)]
    assert list(t.level) == [*reported, "DRAM", "Host link", "Peer link", "Registers"]
    caches = t[t.level.isin(reported)]
    assert (caches.read_gbps > 0).all() and (caches.latency_ns > 0).all()
    assert caches.latency_ns.is_monotonic_increasing  # slower the farther from the core
    # the sweep stops at 8 MiB: no point lies an octave past the last cache
    assert pd.isna(t[t.level == "DRAM"].latency_ns.iloc[0])
    l1 = t[t.level == "L1d"].iloc[0] if "L1d" in reported else None
    if l1 is not None:  # the L1d knee, 2 points per octave: within a grid step
        assert 0.6 < l1.latency_knee_bytes / l1.reported_bytes < 1.6
    skipped = t[t.level.isin(["Host link", "Peer link"])]
    assert (skipped.status == "skipped").all() and skipped.reason.str.contains("CUDA").all()
    assert t[t.level == "L2"].writeup_latency.iloc[0] == "~150 cycles"
    md = (res / "tables" / "hierarchy.md").read_text()
    assert "Beside the writeup's H100 row" in md and "perf_counter_ns" in md


def test_noop_and_param_reruns(hierarchy_run):
    wd, cfg, _ = hierarchy_run
    proc = smk(wd, *TARGETS, "-n", configfile=cfg)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    changed = yaml.safe_load(yaml.safe_dump(TINY))
    changed["hierarchy"]["points_per_octave"] = 3
    cfg2 = write_config(wd / "changed.yaml", changed)
    proc = smk(wd, *TARGETS, "-n", "--rerun-triggers", "params", configfile=cfg2)
    assert planned_jobs(proc) == {"hierarchy_memory": 1, "hierarchy_table": 1}
    changed["hierarchy"]["repeats"] = 4  # the link job repeats its copies too
    cfg3 = write_config(wd / "changed3.yaml", changed)
    proc = smk(wd, *TARGETS, "-n", "--rerun-triggers", "params", configfile=cfg3)
    assert planned_jobs(proc) == {"hierarchy_memory": 1, "hierarchy_link": 1, "hierarchy_table": 1}


def test_bad_config_names_the_key(tmp_path):
    bad = yaml.safe_load(yaml.safe_dump(TINY))
    bad["hierarchy"]["max_bytes"] = 1024
    cfg = write_config(tmp_path / "bad.yaml", bad)
    proc = smk(tmp_path, "-n", configfile=cfg)
    assert proc.returncode == 1
    assert "hierarchy.max_bytes: 1024 is below hierarchy.min_bytes" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_findings_sections(tiny_run):
    """The backbone's findings carry §1, §3/§5 and §8 (the tiny run includes the stage)."""
    res = tiny_run[2]
    md = (res / "findings.md").read_text()
    for header in ("## §1 — Memory hierarchy", "## §3 and §5", "## §8 — The four questions"):
        assert header in md, header
    assert md.index("## §1 — Memory hierarchy") < md.index("## Lab 1a")
    s1 = md.split("\n## §1 — Memory hierarchy\n")[1].split("\n## ")[0]
    assert "![bandwidth and latency by working set](figures/hierarchy.png)" in s1
    assert "Beside the writeup's H100 row" in s1
    s8 = md.split("## §8")[1]
    for q in ("1. **Napkin", "2. **GPU-Util", "3. **TP degree", "4. **Cost-efficient"):
        assert q in s8, q
    assert "★" in s8 and "No prices are in the catalog" in s8
    data = json.loads((res / "findings.json").read_text())
    by = {f["key"]: f for f in data["findings"]}
    assert by["precision_ratio"]["verdict"] == "not evaluable"
    assert by["prefill_mfu"]["verdict"] == "not evaluable"  # a 21 M-parameter model
    assert by["hierarchy_principle"]["verdict"] in ("holds", "does not hold", "inconclusive")
    dec = pd.read_csv(res / "tables" / "decode.csv")
    assert (dec.loc[dec.status == "ok", "prefill_mfu_pct"] > 0).all()
    assert "prefill MFU (%)" in (res / "tables" / "decode.md").read_text()
