"""Derived numbers against the writeup's worked numbers (Lab 2 table, §5, §6)."""

import pytest

from hwlab import formulas as F
from hwlab.gemm import derived

# The writeup's Lab 2 table (RTX 5080, bf16, K=2048, N=11008):
# M, GPU time (us), TFLOPS, Effective GB/s, AI (FLOP/byte)
WRITEUP_LAB2 = [
    (1, 68.7, 0.7, 656, 1.0),
    (2, 39.5, 2.3, 1142, 2.0),
    (4, 39.6, 4.6, 1142, 4.0),
    (8, 40.9, 8.8, 1108, 8.0),
    (16, 43.3, 16.7, 1052, 15.9),
    (32, 36.0, 40.0, 1274, 31.4),
    (64, 36.6, 78.8, 1276, 61.7),
    (128, 66.0, 87.5, 734, 119.2),
    (256, 123.0, 93.9, 421, 222.9),
    (512, 233.1, 99.0, 251, 394.9),
    (1024, 454.8, 101.5, 158, 642.8),
    (2048, 927.4, 99.6, 106, 936.9),
]
RTX5080_DENSE, RTX5080_SPARSE, RTX5080_BW = 112.6, 225.1, 960


@pytest.mark.parametrize(("m", "us", "tflops", "gbps", "ai"), WRITEUP_LAB2)
def test_lab2_table_reproduces(m, us, tflops, gbps, ai):
    d = derived(m, 11008, 2048, "bf16", us * 1e-6)
    assert round(d["ai"], 1) == pytest.approx(ai, abs=0.05)
    # the writeup rounds its GPU times to 0.1 us: allow that rounding through
    assert d["tflops"] == pytest.approx(tflops, rel=0.002, abs=0.05)
    assert d["eff_gbps"] == pytest.approx(gbps, rel=0.002, abs=1)


@pytest.mark.parametrize(("m", "us", "tflops"), [(r[0], r[1], r[2]) for r in WRITEUP_LAB2])
def test_lab2_pct_of_dense_peak(m, us, tflops):
    # writeup: M=1024 -> 90.2 %, M=64 -> 70.0 %, M=128 -> 77.7 %
    pct = F.pct(derived(m, 11008, 2048, "bf16", us * 1e-6)["tflops"], RTX5080_DENSE)
    assert pct == pytest.approx(100 * tflops / RTX5080_DENSE, abs=0.1)


def test_lab2_specific_percentages():
    pct = {
        m: F.pct(derived(m, 11008, 2048, "bf16", us * 1e-6)["tflops"], RTX5080_DENSE)
        for m, us, *_ in WRITEUP_LAB2
    }
    assert round(pct[1024], 1) == 90.2
    assert round(pct[64], 1) == 70.0
    assert round(pct[128], 1) == 77.7
    mem = F.pct(derived(32, 11008, 2048, "bf16", 36.0e-6)["eff_gbps"], RTX5080_BW)
    assert round(mem) == 133


def test_ridge_points():
    assert F.ridge_point(RTX5080_DENSE, RTX5080_BW) == pytest.approx(117.3, abs=0.1)
    assert F.ridge_point(RTX5080_SPARSE, RTX5080_BW) == pytest.approx(234.5, abs=0.1)
    # the roofline is continuous at the ridge
    r = F.ridge_point(RTX5080_DENSE, RTX5080_BW)
    assert F.roofline_tflops(r, RTX5080_DENSE, RTX5080_BW) == pytest.approx(RTX5080_DENSE)
    assert F.roofline_tflops(r / 2, RTX5080_DENSE, RTX5080_BW) == pytest.approx(RTX5080_DENSE / 2)


def test_gemm_flops_and_bytes():
    assert F.gemm_flops(1, 11008, 2048) == 2 * 11008 * 2048
    assert F.gemm_bytes(1, 11008, 2048, 2, 2, 2) == 2 * (2048 + 11008 * 2048 + 11008)
    # fp8 in, bf16 out
    assert F.gemm_bytes(16, 64, 32, 1, 1, 2) == 16 * 32 + 64 * 32 + 2 * 16 * 64


def test_decode_napkin_h100():
    # §5: 3B BF16 on H100: 6 GB / 3.35 TB/s = 1.79 ms
    s = F.decode_step_napkin_s(F.weight_bytes(3e9, 2), 0, 3350)
    assert s * 1e3 == pytest.approx(1.79, abs=0.005)


def test_scaling_efficiency():
    assert F.scaling_efficiency(3297, 64, 3297 / 40) == pytest.approx(40 / 64)
    assert F.scaling_efficiency(100, 1, 100) == 1.0


def test_busbw_nccl_tests_definitions():
    assert F.allreduce_busbw_factor(2) == 1.0
    assert F.allreduce_busbw_factor(8) == pytest.approx(1.75)
    assert F.busbw_gbps(100.0, 4) == pytest.approx(150.0)
    assert F.algbw_gbps(1e9, 0.5) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        F.allreduce_busbw_factor(0)


def test_tp_message_and_ring_traffic():
    # §6's formula for 70B: 2 bytes x 32 x 2048 x 8192 = 1.07 GB (the writeup prints 2.15)
    msg = F.tp_allreduce_bytes(32, 2048, 8192)
    assert msg == 2 * 32 * 2048 * 8192
    assert msg / 1e9 == pytest.approx(1.074, abs=0.001)
    assert F.ring_traffic_bytes(msg, 8) == pytest.approx(msg * 1.75)


def test_kv_cache_bytes():
    # Qwen2.5-3B: 36 layers, 2 KV heads, head_dim 128, bf16 -> 36,864 bytes per token
    assert F.kv_cache_bytes(1, 1, 36, 2, 128, 2) == 36864


def test_statistics():
    assert F.median([3, 1, 2]) == 2
    assert F.median([1, 2, 3, 4]) == 2.5
    assert F.quantile([0, 10], 0.1) == pytest.approx(1.0)
    assert F.rel_spread([9, 10, 11]) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        F.quantile([], 0.5)
