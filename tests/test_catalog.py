"""The hardware catalog: every device the writeup names, complete entries, matching."""

import pytest

from hwlab import catalog as cat
from hwlab import formulas as F

ENTRIES = cat.load()
WRITEUP_DEVICES = [
    "h100_sxm",
    "b200",
    "a100_80gb",
    "rtx5080",
    "m3_ultra",
    "jetson_orin_nano_8gb",
    "jetson_orin_nx_16gb",
    "jetson_agx_orin_64gb",
    "jetson_thor",
    "h200",
]


def test_every_device_present_with_fields():
    for key in WRITEUP_DEVICES:
        e = ENTRIES[key]
        for field in (
            "name",
            "memory_gb",
            "mem_bw_gbps",
            "peak_tflops",
            "l2_mb",
            "smem_per_sm_kb",
            "interconnect",
            "tdp_w",
            "sources",
        ):
            assert field in e, (key, field)
        assert e["sources"], key


def test_h100_has_the_memory_hierarchy_table():
    levels = [row["level"] for row in ENTRIES["h100_sxm"]["hierarchy"]]
    assert levels[:4] == ["Registers", "Shared memory (L1)", "L2 cache", "HBM3"]
    assert len(levels) == 6


@pytest.mark.parametrize(
    ("key", "dtype", "dense", "sparse"),
    [
        ("h100_sxm", "bf16", 989.4, 1978.9),
        ("h100_sxm", "fp8", 1978.9, 3957.8),
        ("h100_sxm", "int8", 1978.9, 3957.8),
        ("b200", "fp8", 4500, 9000),
        ("b200", "fp4", 9000, 18000),
        ("rtx5080", "bf16", 112.6, 225.1),
        ("a100_80gb", "fp16", 312, 624),
    ],
)
def test_peaks_from_the_writeup(key, dtype, dense, sparse):
    assert cat.peak_tflops(ENTRIES[key], dtype) == dense
    assert cat.peak_tflops(ENTRIES[key], dtype, sparse=True) == sparse


def test_no_fp4_on_hopper():
    assert cat.peak_tflops(ENTRIES["h100_sxm"], "fp4") is None


def test_fp8_is_exactly_twice_bf16_on_h100():
    e = ENTRIES["h100_sxm"]
    assert cat.peak_tflops(e, "fp8") == pytest.approx(2 * cat.peak_tflops(e, "bf16"), rel=1e-3)


def test_rtx5080_ridge():
    e = ENTRIES["rtx5080"]
    assert F.ridge_point(cat.peak_tflops(e, "bf16"), e["mem_bw_gbps"]) == pytest.approx(
        117, abs=0.5
    )


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100_sxm"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100-SXM4-80GB", "a100_80gb"),
        ("NVIDIA GeForce RTX 5080", "rtx5080"),
        ("NVIDIA B200", "b200"),
        ("NVIDIA H100 PCIe", None),
        ("Intel(R) Xeon(R) Processor", None),
    ],
)
def test_match(name, key):
    assert cat.match(name, ENTRIES) == key


def test_resolve():
    assert cat.resolve("auto", {"kind": "cpu", "name": "x"}, ENTRIES)[0] is None
    assert cat.resolve("auto", {"kind": "cuda", "name": "NVIDIA H200"}, ENTRIES)[0] == "h200"
    assert cat.resolve("rtx5080", {"kind": "cpu", "name": "x"}, ENTRIES)[0] == "rtx5080"
    with pytest.raises(KeyError):
        cat.resolve("nope", {"kind": "cpu", "name": "x"}, ENTRIES)
