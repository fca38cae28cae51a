"""The §1 headlines on constructed tables: each of the four verdicts."""

import pandas as pd
import pytest

from hwlab import headlines as H
from hwlab.hierarchy import report as R

MiB = 1024**2


def table(levels, spread=0.0, **extra):
    """Rows like tables/hierarchy.csv: (level, read GB/s, latency ns) with a relative spread."""
    rows = []
    for name, bw, lat in levels:
        rows.append(
            {
                "level": name,
                "status": "ok",
                "read_gbps": bw,
                "read_gbps_lo": bw * (1 - spread),
                "read_gbps_hi": bw * (1 + spread),
                "latency_ns": lat,
                "latency_ns_lo": lat * (1 - spread),
                "latency_ns_hi": lat * (1 + spread),
                "method": "numba",
                **extra.get(name, {}),
            }
        )
    return pd.DataFrame(rows)


# ---- the order-of-magnitude principle ----------------------------------------------------


def test_principle_holds():
    # each drop and jump within half a decade of each other (this CPU's shape)
    t = table([("L1d", 360, 1.9), ("L2", 220, 4.7), ("L3", 185, 15.0), ("DRAM", 35, 146)])
    f = R.principle_finding(t)
    assert f.verdict == H.HOLDS
    assert [s["verdict"] for s in f.evidence["steps"]] == [H.HOLDS] * 3
    assert "L1d → L2: bandwidth ÷1.64, latency ×2.47" in f.text


def test_principle_fails_on_the_writeups_own_h100_row():
    # writeup §1: shared 10 TB/s ~20 cycles, L2 ~12 TB/s ~150 cycles, HBM 3.35 TB/s ~600
    t = table([("L1", 10_000, 20), ("L2", 12_000, 150), ("HBM", 3350, 600)])
    f = R.principle_finding(t)
    assert f.verdict == H.FAILS
    s1, s2 = f.evidence["steps"]
    # L1 → L2: bandwidth rises (÷0.833) while latency rises 7.5x: 0.95 decades apart
    assert s1["decades_apart"] == pytest.approx(0.954, abs=1e-3)
    assert s1["verdict"] == H.FAILS and s2["verdict"] == H.HOLDS
    assert "L1→L2" in f.text and "those that do: L2→HBM" in f.text


def test_principle_too_noisy():
    # 0.45 decades apart, a 20% spread on every number straddles the 0.5 tolerance
    t = table([("L1d", 100, 1.0), ("L2", 10, 28.2)], spread=0.2)
    f = R.principle_finding(t)
    assert f.verdict == H.INCONCLUSIVE
    assert "too noisy" in f.text


def test_principle_not_evaluable():
    f = R.principle_finding(None, "skipped: numba is not installed")
    assert f.verdict == H.NOT_EVALUABLE and "numba" in f.text
    f = R.principle_finding(table([("L1d", 100, 1.0)]))
    assert f.verdict == H.NOT_EVALUABLE


# ---- knees against the reported sizes ------------------------------------------------------


def knee_table(det_l3, lo_l3=None, hi_l3=None):
    def k(det, rep, lo=None, hi=None):
        return {
            "reported_bytes": rep,
            "latency_knee_bytes": det,
            "latency_knee_lo": lo or det,
            "latency_knee_hi": hi or det,
        }

    return table(
        [("L1d", 360, 1.9), ("L2", 220, 4.7), ("L3", 185, 15.0), ("DRAM", 35, 146)],
        **{
            "L1d": k(33 * 1024, 32 * 1024, 32 * 1024, 36 * 1024),
            "L2": k(1.02 * MiB, MiB),
            "L3": k(det_l3, 32 * MiB, lo_l3, hi_l3),
            "DRAM": {"reported_bytes": 24 << 30},
        },
    )


def test_knees_hold():
    f = R.knees_finding(knee_table(30 * MiB))
    assert f.verdict == H.HOLDS
    assert [c["level"] for c in f.evidence["checks"]] == ["L1d", "L2", "L3"]


def test_knees_fail():
    f = R.knees_finding(knee_table(10 * MiB))
    assert f.verdict == H.FAILS
    assert "L3: 10 MiB by the latency sweep vs 32 MiB reported (-69%, does not hold)" in f.text


def test_knees_inconclusive_when_the_bracket_straddles():
    # the L3 knee lies between 26 and 29 MiB: -19% .. -9%, across the 15% line
    f = R.knees_finding(knee_table(27.5 * MiB, 26 * MiB, 29 * MiB))
    assert f.verdict == H.INCONCLUSIVE


def test_knees_missing_knee_fails_and_none_is_not_evaluable():
    t = knee_table(30 * MiB)
    t.loc[t.level == "L2", "latency_knee_bytes"] = None
    f = R.knees_finding(t)
    assert f.verdict == H.FAILS and "L2: no knee near 1 MiB" in f.text
    assert R.knees_finding(None).verdict == H.NOT_EVALUABLE


def test_section_without_stage(tmp_path):
    lines = R.section(tmp_path, {})
    assert "## §1 — Memory hierarchy" in lines
    assert any("no hierarchy stage in this run" in x for x in lines)
    assert [f.verdict for f in R.headlines(tmp_path)] == [H.NOT_EVALUABLE] * 2
