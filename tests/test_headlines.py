"""Headline functions: the writeup's own RTX 5080 data must reach its Lab 2 conclusions, and
synthetic data must flip each statement where it should."""

import glob

import pandas as pd
import pytest
from helpers import REPO

from hwlab import headlines as H
from hwlab.io import read_json
from hwlab.roofline import best_from_table, build_table, run_ceilings

REF = REPO / "config" / "reference" / "rtx5080"


@pytest.fixture(scope="module")
def reference():
    peaks = read_json(REF / "peaks.json")
    points = glob.glob(str(REF / "gemm" / "**" / "*.json"), recursive=True)
    df = build_table((read_json(p) for p in points), peaks)
    return df, run_ceilings(peaks, best_from_table(df), "bf16")


def test_reference_ridge_at_M128(reference):
    f = H.ridge_finding(*reference)
    assert f.holds is True
    assert f.evidence["measured_ridge_M"] == 128
    assert f.evidence["measured_ridge_ai"] == pytest.approx(119.2, abs=0.1)
    assert f.evidence["dense_ridge"] == pytest.approx(117.3, abs=0.1)
    assert f.evidence["sparse_ridge"] == pytest.approx(234.5, abs=0.1)
    assert "M=128" in f.text and "117.3" in f.text


def test_reference_plateau(reference):
    f = H.plateau_finding(*reference)
    assert f.holds is True  # rules out the sparse peak
    assert 100 <= f.evidence["best_tflops"] <= 102
    assert f.evidence["low_tflops"] == pytest.approx(99.0, abs=0.1)
    assert f.evidence["best_M"] == 1024
    assert f.evidence["best_pct_dense"] == pytest.approx(90.2, abs=0.05)


def test_reference_sweet_spot_M64(reference):
    f = H.sweet_spot_finding(reference[0])
    assert f.evidence["M"] == 64


def test_reference_cache_effects(reference):
    f = H.cache_finding(reference[0])
    assert f.holds is True
    assert f.evidence["above_peak_M"] == [2, 4, 8, 16, 32, 64]


def test_reference_regimes(reference):
    f = H.regime_finding(*reference)
    seq = [x["regime"] for x in f.evidence["sequence"]]
    assert seq == [
        "below both ceilings (launch/overhead-bound)",
        "cache-assisted (L2)",
        "compute-bound",
    ]
    assert f.holds is True


def synthetic(tflops, pct_mem, ai, pct_dense=None, l2="warm"):
    n = len(tflops)
    return pd.DataFrame(
        {
            "status": ["ok"] * n,
            "l2": [l2] * n,
            "dtype": ["bf16"] * n,
            "M": [2**i for i in range(n)],
            "tflops": tflops,
            "pct_mem_peak": pct_mem,
            "ai": ai,
            "pct_dense_peak": pct_dense or [100 * t / 100 for t in tflops],
        }
    )


CEIL = {
    "peak_tflops": 100.0,
    "bw_gbps": 1000.0,
    "spec_sparse_tflops": 200.0,
    "spec_bw_gbps": 1000.0,
    "basis": "spec",
}


def test_ridge_not_bracketing_the_spec():
    # leaves the memory line at AI 20, long before the dense ridge at 100
    df = synthetic([1, 2, 4, 8], [95, 95, 40, 20], [5, 10, 20, 40])
    f = H.ridge_finding(df, CEIL)
    assert f.holds is False and f.evidence["measured_ridge_M"] == 4


def test_ridge_undetermined_when_never_off_the_line():
    df = synthetic([1, 2], [95, 96], [5, 10])
    assert H.ridge_finding(df, CEIL).holds is None


def test_plateau_near_the_sparse_peak_does_not_rule_it_out():
    df = synthetic([50, 150, 190], [90, 60, 40], [50, 200, 400])
    f = H.plateau_finding(df, CEIL)
    assert f.holds is False and "not ruled out" in f.text


def test_no_cache_effect_when_never_above_peak():
    df = synthetic([1, 2], [80, 90], [1, 2])
    assert H.cache_finding(df).holds is False


def test_cache_excess_not_explained_by_cold_points():
    warm = synthetic([1, 2], [120, 130], [1, 2])
    cold = synthetic([1, 2], [118, 125], [1, 2], l2="cold")
    f = H.cache_finding(pd.concat([warm, cold]))
    assert f.holds is False and "too low" in f.text


def test_regimes_out_of_order():
    # on the memory line first, then below both ceilings, then compute: not the order
    # overhead -> cache -> memory -> compute that the writeup describes
    df = synthetic([0.1, 0.2, 90], [95, 50, 10], [1, 5, 150])
    f = H.regime_finding(df, CEIL)
    assert [x["regime"] for x in f.evidence["sequence"]] == [
        "memory-bound",
        "below both ceilings (launch/overhead-bound)",
        "compute-bound",
    ]
    assert f.holds is False


# ---- the verdict core: four outcomes -------------------------------------------------------


def test_against_holds_fails_and_straddles():
    assert H.against(0.6, 0.7, 0.5) == H.HOLDS
    assert H.against(0.3, 0.4, 0.5) == H.FAILS
    assert H.against(0.4, 0.6, 0.5) == H.INCONCLUSIVE  # the spread straddles the threshold
    assert H.against(None, 0.6, 0.5) == H.NOT_EVALUABLE
    assert H.against(0.3, 0.4, 0.5, above=False) == H.HOLDS
    assert H.against(0.6, 0.7, 0.5, above=False) == H.FAILS


def test_overlap_and_all_of():
    assert H.overlap((1.0, 2.0), (1.9, 3.0)) and not H.overlap((1.0, 2.0), (2.1, 3.0))
    assert H.all_of(H.HOLDS, H.HOLDS) == H.HOLDS
    assert H.all_of(H.HOLDS, H.INCONCLUSIVE) == H.INCONCLUSIVE
    assert H.all_of(H.INCONCLUSIVE, H.FAILS) == H.FAILS
    assert H.all_of(H.INCONCLUSIVE, H.NOT_EVALUABLE) == H.NOT_EVALUABLE


def test_finding_accepts_bool_and_rejects_unknown_verdicts():
    assert H.Finding("k", "t", True, "x").verdict == H.HOLDS
    assert H.Finding("k", "t", None, "x").holds is None
    assert H.Finding("k", "t", H.INCONCLUSIVE, "x").as_dict()["holds"] is None
    with pytest.raises(ValueError):
        H.Finding("k", "t", "maybe", "x")
