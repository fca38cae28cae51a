"""Decode step mechanics and the numbers derived from a decode measurement."""

import pytest
import torch
from helpers import REPO

from hwlab import decode as D
from hwlab import decode_tables as T
from hwlab import formulas as F
from hwlab.device import Device
from hwlab.model import build_random

TINY_ARCH = REPO / "config" / "models" / "qwen2-tiny.json"


@pytest.fixture(scope="module")
def tiny():
    return build_random(TINY_ARCH, dtype="fp32", device="cpu", seed=0)


def test_random_prompt_is_seeded():
    a = D.random_prompt(3, 7, 100, 1, "cpu")
    assert a.shape == (3, 7) and a.dtype == torch.int64
    assert int(a.min()) >= 0 and int(a.max()) < 100
    assert torch.equal(a, D.random_prompt(3, 7, 100, 1, "cpu"))
    assert not torch.equal(a, D.random_prompt(3, 7, 100, 2, "cpu"))


def test_cached_greedy_decode_matches_full_recompute(tiny):
    """Decoding with the KV cache gives the tokens a full forward pass over the sequence
    picks: the cache really holds the context, and it grows by one per step."""
    ids = D.random_prompt(2, 12, tiny.config.vocab_size, 0, "cpu")
    cache, nxt = D.prefill(tiny, ids)
    assert nxt.shape == (2, 1)
    seq = torch.cat([ids, nxt], dim=1)
    for _ in range(3):
        nxt = D.decode_step(tiny, cache, nxt)
        with torch.inference_mode():
            full = tiny(input_ids=seq).logits[:, -1, :].argmax(-1, keepdim=True)
        assert torch.equal(nxt, full)
        seq = torch.cat([seq, nxt], dim=1)
    assert cache.get_seq_length() == seq.shape[1] - 1


def test_tpot_stats():
    steps = [0.5, 0.4, 0.010, 0.012, 0.011, 0.013, 0.020]  # two warmup steps, then five
    s = D.tpot_stats(steps, 2, batch=4)
    assert s["timed_steps"] == 5
    assert s["tpot_ms_p50"] == pytest.approx(12.0)
    assert s["tpot_ms_p10"] == pytest.approx(F.quantile([10, 12, 11, 13, 20], 0.1))
    assert s["tpot_ms_p90"] == pytest.approx(F.quantile([10, 12, 11, 13, 20], 0.9))
    assert s["tokens_per_s"] == pytest.approx(4 / 0.012)
    with pytest.raises(ValueError, match="warmup_steps"):
        D.tpot_stats(steps[:2], 2, batch=1)


def test_napkin_bytes_of_the_writeups_3b_model():
    """Qwen2.5-3B bf16: ~6.2 GB of weights per step; the K/V of the context on top."""
    geo = {"layers": 36, "kv_heads": 2, "head_dim": 128}
    nb = D.napkin_bytes(
        param_count=3_085_938_688,
        dtype="bf16",
        batch=1,
        prompt_len=128,
        kept_steps=range(8, 64),
        geometry=geo,
    )
    assert nb["weight_bytes"] == 2 * 3_085_938_688
    mean_ctx = 128 + (9 + 64) / 2  # steps 8..63 read 137..192 positions
    assert nb["kv_bytes_per_step"] == pytest.approx(2 * mean_ctx * 36 * 2 * 128 * 2)
    # the writeup: 6 GB / 3.35 TB/s = 1.79 ms on an H100
    assert T.napkin_ms(6e9, 0, 3350) == pytest.approx(1.79, abs=0.005)
    assert T.overhead_ratio(12.0, 1.79) == pytest.approx(6.7, abs=0.01)
    assert T.napkin_ms(6e9, 0, None) is None


def test_bandwidth_basis():
    spec = {
        "spec_key": "h100_sxm",
        "spec": {"mem_bw_gbps": 3350},
        "measured": {"mem_bw_gbps": 2900},
    }
    assert T.bandwidth(spec) == (3350.0, "spec (h100_sxm)")
    cpu = {"spec_key": None, "spec": None, "measured": {"mem_bw_gbps": 21.5}}
    assert T.bandwidth(cpu) == (21.5, "measured (peaks.json, STREAM-like)")


def _rec(batch, status="ok", tok=None, tpot=None):
    r = {
        "batch": batch,
        "status": status,
        "reason": None if status == "ok" else "out of memory",
        "dtype": "fp32",
        "prompt_len": 8,
        "weight_bytes": 4e6,
        "kv_bytes_per_step": 1e6,
    }
    if status == "ok":
        r.update(tokens_per_s=tok, tpot_ms_p50=tpot, tpot_ms_p10=tpot, tpot_ms_p90=tpot)
    return r


def test_decode_table_scaling_and_oom_rows():
    peaks = {"spec": None, "measured": {"mem_bw_gbps": 10.0}}
    df = T.decode_table(
        [_rec(4, tok=200.0, tpot=20.0), _rec(1, tok=100.0, tpot=10.0), _rec(64, "oom")], peaks
    )
    assert list(df.batch) == [1, 4, 64]
    assert df.scaling_efficiency.iloc[0] == pytest.approx(1.0)
    assert df.scaling_efficiency.iloc[1] == pytest.approx(200 / (4 * 100))
    assert df.napkin_ms.iloc[0] == pytest.approx(5e6 / 10e9 * 1e3)
    assert df.overhead_ratio.iloc[0] == pytest.approx(10.0 / 0.5)
    oom = df.iloc[2]
    assert oom.status == "oom" and pd_isna(oom.tokens_per_s) and pd_isna(oom.overhead_ratio)


def pd_isna(x):
    import pandas as pd

    return pd.isna(x)


def test_cpu_allocation_failure_is_oom():
    """torch's CPU allocator raises RuntimeError("... can't allocate memory ...")."""
    dev = Device("cpu")
    with pytest.raises(RuntimeError) as e:
        torch.empty(2**50, dtype=torch.uint8)  # 1 PiB: refused at once
    assert D.is_oom(e.value, dev)
    assert D.is_oom(MemoryError(), dev)
    assert not D.is_oom(RuntimeError("shape mismatch"), dev)


def test_nvml_field_on_cpu_is_empty_with_reason():
    s = D.UtilSampler(Device("cpu"), 20)
    s.prepare()
    s.start()
    out = s.stop()
    assert out["gpu_util_mean_pct"] is None and out["gpu_util_samples"] == 0
    assert "CPU" in out["gpu_util_reason"]
