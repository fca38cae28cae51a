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
    assert f.evidence["M"] == 64 and f.verdict == H.HOLDS


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
    assert f.holds is True  # 3 of 4 stages in order over 12 points spanning the ridge


def synthetic(tflops, pct_mem, ai, pct_dense=None, l2="warm", spread=0.0, Ms=None, dtype="bf16"):
    """A roofline table; ``spread``: relative half-width of every point's repeats (so each
    quantity reads value x (1 -/+ spread))."""
    n = len(tflops)
    pct_dense = pct_dense or [100 * t / 100 for t in tflops]
    sp = spread if isinstance(spread, list) else [spread] * n
    df = pd.DataFrame(
        {
            "status": ["ok"] * n,
            "l2": [l2] * n,
            "dtype": [dtype] * n,
            "M": Ms or [2**i for i in range(n)],
            "tflops": tflops,
            "pct_mem_peak": pct_mem,
            "ai": ai,
            "pct_dense_peak": pct_dense,
        }
    )
    for col, lo, hi in (("tflops", "tflops_lo", "tflops_hi"),
                        ("pct_mem_peak", "pct_mem_lo", "pct_mem_hi"),
                        ("pct_dense_peak", "pct_dense_lo", "pct_dense_hi")):  # fmt: skip
        df[lo] = [v * (1 - s) for v, s in zip(df[col], sp, strict=True)]
        df[hi] = [v * (1 + s) for v, s in zip(df[col], sp, strict=True)]
    return df


CEIL = {
    "peak_tflops": 100.0,
    "bw_gbps": 1000.0,
    "spec_sparse_tflops": 200.0,
    "spec_bw_gbps": 1000.0,
    "basis": "spec",
}
NO_SPARSE = {"peak_tflops": 100.0, "bw_gbps": 1000.0, "basis": "measured"}


# ---- ridge ----------------------------------------------------------------------------------


def test_ridge_holds_with_spread():
    df = synthetic([5, 10, 50, 80, 95], [95, 96, 95, 40, 10], [5, 10, 50, 150, 400], spread=0.02)
    f = H.ridge_finding(df, CEIL)  # dense ridge 100: [50, 150] brackets it, not sparse 200
    assert f.verdict == H.HOLDS and f.evidence["measured_ridge_M"] == 8


def test_ridge_not_bracketing_the_spec():
    # leaves the memory line at AI 20, long before the dense ridge at 100
    df = synthetic([1, 2, 4, 8], [95, 95, 40, 20], [5, 10, 20, 40])
    f = H.ridge_finding(df, CEIL)
    assert f.verdict == H.FAILS and f.evidence["measured_ridge_M"] == 4


def test_ridge_too_noisy():
    # every point's %mem range straddles the 90% line: nothing is clearly on it
    df = synthetic([1, 2, 4, 8], [92, 91, 89, 88], [5, 10, 50, 150], spread=0.05)
    f = H.ridge_finding(df, CEIL)
    assert f.verdict == H.INCONCLUSIVE and "straddles 90.0%" in f.text
    # a coarse sweep whose transition brackets both ridges cannot tell them apart
    df = synthetic([5, 80, 95], [95, 40, 10], [50, 250, 400])
    assert H.ridge_finding(df, CEIL).verdict == H.INCONCLUSIVE


def test_ridge_undetermined_when_never_off_the_line():
    df = synthetic([1, 2], [95, 96], [5, 10])
    assert H.ridge_finding(df, CEIL).verdict == H.NOT_EVALUABLE
    df = synthetic([1, 2], [50, 60], [5, 10])
    f = H.ridge_finding(df, CEIL)
    assert f.verdict == H.NOT_EVALUABLE and "No point reaches 90%" in f.text


# ---- plateau ----------------------------------------------------------------------------------


def test_plateau_rules_out_the_sparse_peak():
    df = synthetic([50, 90, 92], [90, 60, 40], [50, 200, 400], spread=0.01)
    f = H.plateau_finding(df, CEIL)
    assert f.verdict == H.HOLDS and f.evidence["Ms"] == [2, 4]


def test_plateau_near_the_sparse_peak_does_not_rule_it_out():
    df = synthetic([50, 150, 190, 188], [90, 60, 40, 30], [50, 200, 400, 800])
    f = H.plateau_finding(df, CEIL)
    assert f.verdict == H.FAILS and "not ruled out" in f.text


def test_plateau_too_noisy():
    # best 118 +/- 5%: straddles 0.6 x 200 = 120
    df = synthetic([50, 116, 118], [90, 60, 40], [50, 200, 400], spread=0.05)
    f = H.plateau_finding(df, CEIL)
    assert f.verdict == H.INCONCLUSIVE and "within noise" in f.text and "straddles 120" in f.text


def test_plateau_needs_more_than_one_point():
    df = synthetic([1, 5, 40], [90, 60, 40], [5, 50, 400])  # the best is the last, alone
    f = H.plateau_finding(df, CEIL)
    assert f.verdict == H.NOT_EVALUABLE and "No plateau" in f.text and "extend gemm.M" in f.text
    f = H.plateau_finding(synthetic([50, 90, 92], [90, 60, 40], [50, 200, 400]), NO_SPARSE)
    assert f.verdict == H.NOT_EVALUABLE and "no sparse peak" in f.text


def test_circular_peak_is_said():
    ceil = {**NO_SPARSE, "peak_independent": False}
    f = H.plateau_finding(synthetic([1, 5, 40], [90, 60, 40], [5, 50, 400]), ceil)
    assert "not independent of the sweep" in f.text


# ---- sweet spot ---------------------------------------------------------------------------


def sweep(dense, mem, spread=0.0):
    Ms = [1, 4, 16, 64, 256][: len(dense)]
    return synthetic([d for d in dense], mem, [0.5, 2, 8, 31, 111][: len(dense)],
                     pct_dense=dense, spread=spread, Ms=Ms)  # fmt: skip


def test_sweet_spot_holds_at_m64():
    f = H.sweet_spot_finding(sweep([1, 4, 15, 70, 80], [60, 80, 100, 100, 40]))
    assert f.verdict == H.HOLDS and f.evidence["M"] == 64 and f.evidence["tied_M"] == [64]


def test_sweet_spot_elsewhere_fails():
    f = H.sweet_spot_finding(sweep([1, 4, 15, 30, 80], [60, 80, 100, 60, 90]))
    assert f.verdict == H.FAILS and f.evidence["M"] == 256 and "not M=64" in f.text


def test_sweet_spot_too_noisy():
    # M=64 scores 170, M=256 168: with 5% spread they are tied
    f = H.sweet_spot_finding(sweep([1, 4, 15, 70, 78], [60, 80, 100, 100, 90], spread=0.05))
    assert f.verdict == H.INCONCLUSIVE and f.evidence["noise_limited"]
    assert set(f.evidence["tied_M"]) == {64, 256}


def test_sweet_spot_not_evaluable_without_m64():
    f = H.sweet_spot_finding(sweep([1, 4, 15], [60, 80, 100]))
    assert f.verdict == H.NOT_EVALUABLE and "no M=64" in f.text


# ---- cache ----------------------------------------------------------------------------------


def test_cache_excess_explained_by_cold_points():
    warm = synthetic([1, 2], [120, 130], [1, 2])
    cold = synthetic([1, 2], [80, 90], [1, 2], l2="cold")
    assert H.cache_finding(pd.concat([warm, cold])).verdict == H.HOLDS


def test_no_cache_effect_when_never_above_peak():
    df = synthetic([1, 2], [80, 90], [1, 2])
    assert H.cache_finding(df).verdict == H.FAILS


def test_cache_excess_not_explained_by_cold_points():
    warm = synthetic([1, 2], [120, 130], [1, 2])
    cold = synthetic([1, 2], [118, 125], [1, 2], l2="cold")
    f = H.cache_finding(pd.concat([warm, cold]))
    assert f.verdict == H.FAILS and "too low" in f.text


def test_cache_too_noisy():
    df = synthetic([1, 2], [97, 99], [1, 2], spread=0.05)
    f = H.cache_finding(df)
    assert f.verdict == H.INCONCLUSIVE and "straddles 100.0%" in f.text


def test_cache_ncu_dram_rate_reads_as_prose():
    warm = synthetic([1, 2], [120, 130], [1, 2], Ms=[64, 128])
    ncu = pd.DataFrame({"M": [64, 128], "dram_read_gbps": [812.3456, 1234.5]})
    text = H.cache_finding(warm, ncu).text
    assert "M=64: 812 GB/s, M=128: 1,234 GB/s." in text
    assert "{" not in text and "e+" not in text


def test_cache_not_evaluable():
    df = synthetic([1, 2], [1.0, 1.0], [1, 2])
    df["pct_mem_peak"] = float("nan")
    assert H.cache_finding(df).verdict == H.NOT_EVALUABLE


# ---- regime transition ----------------------------------------------------------------------

FOUR_STAGES = dict(
    tflops=[0.2, 1, 3, 8, 60, 90],
    pct_mem=[50, 120, 110, 95, 30, 10],
    ai=[1, 4, 16, 40, 150, 400],  # dense ridge 100: compute from AI 90
)


def test_regimes_four_stages_hold():
    df = synthetic(FOUR_STAGES["tflops"], FOUR_STAGES["pct_mem"], FOUR_STAGES["ai"], spread=0.01)
    f = H.regime_finding(df, CEIL)
    assert [x["regime"] for x in f.evidence["sequence"]] == list(H.STAGES)
    assert f.verdict == H.HOLDS


def test_regimes_out_of_order():
    # on the memory line first, then below both ceilings, then compute
    df = synthetic([0.1, 0.2, 0.3, 80, 90], [95, 50, 40, 20, 10], [1, 5, 10, 150, 400])
    f = H.regime_finding(df, CEIL)
    assert [x["regime"] for x in f.evidence["sequence"]][:2] == [
        "memory-bound",
        "below both ceilings (launch/overhead-bound)",
    ]
    assert f.verdict == H.FAILS and "order" in f.text


def test_regimes_two_stages_do_not_hold():
    """The defect: 2 of 4 stages read as 'holds'. Over a sweep spanning the ridge, overhead
    -> compute alone is not the writeup's transition."""
    df = synthetic([0.1, 0.2, 0.4, 60, 80], [40, 30, 20, 10, 5], [1, 5, 20, 150, 400])
    f = H.regime_finding(df, CEIL)
    assert f.evidence["stages_seen"] == [H.STAGES[0], H.STAGES[3]]
    assert f.verdict == H.FAILS and "only 2 of its 4 stages" in f.text


def test_regimes_too_noisy():
    # the M=4 point reads 92% of the memory peak +/- 12%: below both ceilings, memory-bound or
    # cache-assisted: within noise whether the sweep shows a third stage
    df = synthetic([0.1, 0.2, 0.4, 60, 80], [40, 30, 92, 10, 5], [1, 5, 20, 150, 400],
                   spread=[0, 0, 0.12, 0, 0])  # fmt: skip
    f = H.regime_finding(df, CEIL)
    assert f.verdict == H.INCONCLUSIVE and f.evidence["uncertain_M"] == [4]
    assert "uncertain (" in f.text and "within noise" in f.text


def test_regimes_need_enough_points_and_the_ridge():
    df = synthetic([0.1, 0.2, 90], [95, 50, 10], [1, 5, 150])
    f = H.regime_finding(df, CEIL)
    assert f.verdict == H.NOT_EVALUABLE and "3 points, at least 5" in f.text
    df = synthetic([0.1, 0.2, 0.3, 0.4, 0.5], [40, 30, 20, 10, 5], [1, 2, 3, 4, 5])
    f = H.regime_finding(df, CEIL)
    assert f.verdict == H.NOT_EVALUABLE and "does not span the ridge" in f.text


def test_regimes_circular_compute_stage_is_inconclusive():
    ceil = {**CEIL, "peak_independent": False}
    # compute-bound only at the best point, which is 100% of a peak taken from the sweep
    df = synthetic([0.2, 1, 3, 8, 40, 100], [50, 120, 110, 95, 92, 10],
                   FOUR_STAGES["ai"])  # fmt: skip
    f = H.regime_finding(df, ceil)
    assert f.verdict == H.INCONCLUSIVE and "circular" in f.text


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
