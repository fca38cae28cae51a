"""Decode napkin (§4, §5, §7, §8) against the writeup's worked numbers, and its CLI."""

import subprocess
import sys

import pandas as pd
import pytest
from helpers import REPO

from hwlab import catalog as cat
from hwlab import napkin as N

ENTRIES = cat.load()


def row(device, params_b, prec="bf16", headroom=N.KV_HEADROOM):
    e = ENTRIES[device]
    p = N.precision(prec)
    return N.decode_napkin(
        params_b,
        p,
        e["memory_gb"],
        e["mem_bw_gbps"],
        N.compute_peak(e, p),
        N.compute_peak(e, p, sparse=True),
        kv_headroom=headroom,
        entry=e,
    )


def test_3b_bf16_on_h100_is_1_79_ms():
    r = row("h100_sxm", 3)
    assert r["weight_gb"] == 6
    assert r["step_ms"] == pytest.approx(1.79, abs=0.005)
    assert r["tokens_per_s"] == pytest.approx(1000 / 1.791, rel=1e-3)


def test_70b_bf16_fits_m3_ultra_not_a100():
    assert row("m3_ultra", 70)["fits"] is True
    a100 = row("a100_80gb", 70)
    # 80 GB less 20% for the KV cache and runtime = 64 GB: 70 GB per GPU at TP 2 is too much
    assert a100["fits"] is False and a100["min_tp"] == 4
    assert row("a100_80gb", 70, headroom=0)["min_tp"] == 2  # weights alone
    assert row("h100_sxm", 70)["fits"] is False


def test_fits_keeps_room_for_the_kv_cache():
    """70B bf16 (140 GB) on a 141 GB H200: the weights alone fit, with no room for a KV cache;
    with the default 20% headroom it needs TP 2."""
    assert row("h200", 70, headroom=0)["fits"] is True
    h200 = row("h200", 70)
    assert h200["fits"] is False and h200["min_tp"] == 2
    assert h200["usable_gb"] == pytest.approx(141 * 0.8)
    with pytest.raises(ValueError, match="kv_headroom"):
        row("h200", 70, headroom=1.0)


def test_tp_is_priced_with_its_allreduce_over_the_real_link():
    """An RTX 5080 has no NVLink: TP 16 crosses PCIe and nodes, and its AllReduces make it
    slower than an H100 at TP 4 over NVLink (not the fastest 70B device)."""
    rtx = row("rtx5080", 70)
    assert rtx["min_tp"] == 16 and rtx["link"].startswith("network across nodes")
    # 2 AllReduces x 80 layers x (47 us + tiny ring traffic at batch 1)
    assert rtx["allreduce_ms"] == pytest.approx(160 * 0.047, rel=0.02)
    assert rtx["step_ms"] == pytest.approx(rtx["weights_ms"] + rtx["allreduce_ms"])
    h100 = row("h100_sxm", 70)
    assert h100["min_tp"] == 4 and h100["link"] == "NVLink 4 per direction"
    assert h100["allreduce_ms"] == pytest.approx(160 * 0.006, rel=0.02)
    assert h100["step_ms"] < rtx["step_ms"]
    rows = [r for r in N.decode_table_rows(ENTRIES) if r["model"] == "70B" and r["dtype"] == "bf16"]
    fastest = min(rows, key=lambda r: r["step_ms"] or 1e9)
    assert fastest["device"] == "h100_sxm"
    # a card without NVLink, inside one node: PCIe at its per-direction rate
    link = N.tp_link(ENTRIES["rtx5080"], 4)
    assert link.name.startswith("PCIe Gen5 x16") and link.gbps == 64 and link.latency_us == 42
    assert N.tp_link(ENTRIES["h100_sxm"], 1) is None
    assert N.tp_allreduce_ms(70, 1, None) == 0


def test_rtx5080_ridge_117():
    r = row("rtx5080", 3)
    assert r["ridge_dense"] == pytest.approx(117.3, abs=0.1)
    assert r["ridge_sparse"] == pytest.approx(234.5, abs=0.1)


def test_b200_decode_2_4x_h100():
    assert row("h100_sxm", 3)["step_ms"] / row("b200", 3)["step_ms"] == pytest.approx(
        2.39, abs=0.01
    )


def test_precisions_halve_the_bytes():
    assert row("h100_sxm", 70, "fp8")["weight_gb"] == 70
    assert row("h100_sxm", 70, "int4")["weight_gb"] == 35
    assert row("h100_sxm", 70, "fp8")["fits"] is False  # 70 GB > 64 GB usable
    assert row("h100_sxm", 70, "fp8", headroom=0.1)["fits"] is True
    # fp8 math uses the fp8 peak: twice bf16's on Hopper, so twice the ridge
    assert row("h100_sxm", 3, "fp8")["ridge_dense"] == pytest.approx(
        2 * row("h100_sxm", 3)["ridge_dense"], rel=1e-3
    )
    with pytest.raises(ValueError):
        N.precision("fp6")


def test_min_tp():
    assert N.min_tp_to_fit(140, 80) == 2
    assert N.min_tp_to_fit(810, 80) == 16
    assert N.min_tp_to_fit(10, 80) == 1
    assert N.min_tp_to_fit(1e6, 1) is None


def test_table_covers_every_device_model_precision():
    df = pd.DataFrame(N.decode_table_rows(ENTRIES))
    assert len(df) == len(ENTRIES) * len(N.NAPKIN_MODELS_B) * len(N.PRECISIONS)
    for col in (
        "device",
        "model",
        "params_b",
        "dtype",
        "weight_gb",
        "fits",
        "min_tp",
        "step_ms",
        "tokens_per_s",
    ):
        assert col in df.columns


def test_writeup_claims_checked():
    checks = {c["claim"][:14]: c for c in N.writeup_decode_check(ENTRIES)}
    assert all(c["follows"] for k, c in checks.items() if "30 tok/s" not in c["claim"])
    m3 = next(c for c in checks.values() if "30 tok/s" in c["claim"])
    assert m3["follows"] is False and "5.71 tok/s" in m3["napkin"]
    # the explanation is computed: 30 x 141 GB of bf16 weights, int4's cap from its bytes
    assert "cannot be bf16 decode" in m3["explanation"] and "TB/s" in m3["explanation"]
    w = N.decode_napkin(70, N.precision("bf16"), 1, 1)["weight_gb"]
    assert f"30 x {w:.3g} GB = {30 * w / 1e3:.3g} TB/s" in m3["explanation"]
    assert (
        "fits: H100 and B200" in next(c for c in checks.values() if "B200" in c["claim"])["napkin"]
    )


def test_writeup_m3_claim_follows_on_a_faster_m3():
    """With 10x the bandwidth the same check follows, and its explanation says so."""
    fast = {**ENTRIES, "m3_ultra": {**ENTRIES["m3_ultra"]}}
    fast["m3_ultra"]["mem_bw_gbps"] = 10 * ENTRIES["m3_ultra"]["mem_bw_gbps"]
    m3 = next(c for c in N.writeup_decode_check(fast) if "30 tok/s" in c["claim"])
    assert m3["follows"] is True
    assert "within the napkin" in m3["explanation"] and "cannot" not in m3["explanation"]


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "hwlab.cli", "napkin", "decode", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_cli_one_device_steps():
    p = _cli("--params-b", "3", "--device", "h100_sxm")
    assert p.returncode == 0, p.stderr
    assert "6 GB / 3350 GB/s = 1.79 ms" in p.stdout
    assert "ridge point" in p.stdout


def test_cli_all_devices_and_custom():
    p = _cli("--params-b", "70", "--dtype", "int4")
    assert p.returncode == 0 and "jetson_thor" in p.stdout and "h100_sxm" in p.stdout
    p = _cli("--params-b", "7", "--bandwidth", "100", "--memory", "20")
    assert p.returncode == 0 and "14 GB / 100 GB/s = 140 ms" in p.stdout
    p = _cli("--params-b", "7", "--bandwidth", "100", "--memory", "16")  # 12.8 GB usable
    assert p.returncode == 0 and "14 GB / TP 2 / 100 GB/s = 70 ms" in p.stdout
    assert "ms of TP AllReduces (network (no GPU link on this device)" in p.stdout
    p = _cli("--params-b", "7", "--bandwidth", "100", "--memory", "16", "--kv-headroom", "0")
    assert p.returncode == 0 and "14 GB / 100 GB/s = 140 ms" in p.stdout


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--params-b", "nan"], "argument --params-b: must be a finite number, got 'nan'"),
        (["--params-b", "inf"], "argument --params-b: must be a finite number, got 'inf'"),
        (["--params-b", "0"], "argument --params-b: must be > 0"),
        (
            ["--params-b", "7", "--memory", "-1", "--bandwidth", "1"],
            "argument --memory: must be > 0",
        ),
        (["--params-b", "7", "--kv-headroom", "1"], "argument --kv-headroom: must be in [0, 1)"),
    ],
)
def test_cli_bad_numbers_are_one_line(args, msg):
    p = _cli(*args)
    assert p.returncode == 2 and msg in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_markdown_shows_the_writeup_checks():
    md = N.decode_markdown(N.decode_table_rows(ENTRIES), N.writeup_decode_check(ENTRIES))
    assert "The writeup's decode claims against the napkin" in md
    assert "M3 Ultra runs 70B bf16 at ~30 tok/s" in md and "**NO**" in md
    assert "5.71 tok/s" in md
    assert "TP links (AllReduce latency" in md and "NVIDIA/nccl#1530" in md


def test_cli_bad_input():
    p = _cli("--params-b", "7", "--device", "tpu")
    assert p.returncode == 2 and "'tpu' is not in the catalog" in p.stderr
    p = _cli("--params-b", "7", "--bandwidth", "100")
    assert p.returncode == 2 and "go together" in p.stderr
