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


def test_graph_step_prefill_resets_the_static_cache_outside_the_timer(tiny, monkeypatch):
    """The static cache is zeroed by reset(), which a timed prefill is preceded by; a prefill
    on a cache holding a run resets it itself, so repeated prefills give the same ids."""
    from hwlab.decode_graph import GraphStep

    step = GraphStep(tiny, Device("cpu"), max_cache_len=16)  # torch.compile is lazy
    ids = D.random_prompt(2, 8, tiny.config.vocab_size, 0, "cpu")
    resets = []
    real = step.cache.reset
    monkeypatch.setattr(step.cache, "reset", lambda: (resets.append(1), real())[1])
    first = step.prefill(ids)
    assert not resets  # nothing to zero before the first run
    step.reset()
    assert len(resets) == 1
    again = step.prefill(ids)  # the caller reset it: no second memset inside the prefill
    assert len(resets) == 1 and torch.equal(first, again)
    assert torch.equal(step.prefill(ids), first) and len(resets) == 2
    _, eager = D.prefill(tiny, ids)
    assert torch.equal(first, eager)


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


# ---- NVML GPU-Util: the sampler thread against a stand-in of NVML's Python interface -------
class _NvmlStandIn:
    """The part of nvidia-ml-py's ``pynvml`` the sampler uses, with the same names (there
    is no ``nvmlDeviceGetHandleByPciBusId_v2`` in it: that is the C symbol the Python
    function calls). NVML cannot run on a CPU host; this is the one place for a stand-in."""

    class NVMLError(Exception):
        pass

    class _Util:
        def __init__(self, gpu):
            self.gpu, self.memory = gpu, 0

    def __init__(self, bus_ids=(), uuids=()):
        self.bus_ids, self.uuids = set(bus_ids), set(uuids)
        self.calls = []
        self.n = 0

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        if bus not in self.bus_ids:
            raise self.NVMLError("Not Found")
        return ("bus", bus)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid not in self.uuids:
            raise self.NVMLError("Not Found")
        return ("uuid", uuid)

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("index", index)

    def nvmlDeviceGetUtilizationRates(self, handle):
        self.n += 1
        return self._Util(40 + self.n % 3)


def _fake_cuda():
    from types import SimpleNamespace

    return SimpleNamespace(is_cuda=True, torch_device=torch.device("cuda", 0))


def test_stand_in_has_the_real_modules_names():
    pynvml = pytest.importorskip("pynvml")
    for name in (
        "nvmlInit",
        "nvmlShutdown",
        "nvmlDeviceGetHandleByPciBusId",
        "nvmlDeviceGetHandleByUUID",
        "nvmlDeviceGetHandleByIndex",
        "nvmlDeviceGetUtilizationRates",
        "NVMLError",
    ):
        assert hasattr(pynvml, name), name
    assert not hasattr(pynvml, "nvmlDeviceGetHandleByPciBusId_v2")


def test_sampler_thread_reads_gpu_util_by_pci_bus_id():
    import time

    nvml = _NvmlStandIn(bus_ids={"00000000:3b:00.0"})
    s = D.UtilSampler(_fake_cuda(), 2, nvml=nvml, identity=("00000000:3b:00.0", "abc"))
    s.prepare()
    assert s.reason is None and s.found_by == "PCI bus id 00000000:3b:00.0"
    s.start()
    time.sleep(0.05)
    out = s.stop()
    assert out["gpu_util_samples"] >= 3 and out["gpu_util_reason"] is None
    assert 40 <= out["gpu_util_mean_pct"] <= 42 and out["gpu_util_max_pct"] in (41, 42)
    assert out["gpu_util_device"] == "PCI bus id 00000000:3b:00.0"
    assert nvml.calls == ["init", "shutdown"]


def test_sampler_falls_back_to_uuid_then_index():
    s = D.UtilSampler(_fake_cuda(), 5, nvml=_NvmlStandIn(uuids={"GPU-abc"}), identity=("x", "abc"))
    s.prepare()
    assert s.found_by == "UUID GPU-abc"
    s = D.UtilSampler(_fake_cuda(), 5, nvml=_NvmlStandIn(), identity=("x", None))
    s.prepare()
    assert s.found_by.startswith("index 0 (not found by PCI bus id x: Not Found")
    assert s.stop()["gpu_util_reason"] == "no NVML sample was taken during the timed steps"


# ---- the attention backend -----------------------------------------------------------------
def _run_tiny(tmp_path, backend):
    from hwlab import model as hwmodel
    from hwlab.device import detect
    from hwlab.io import read_json, write_json

    dev_json = tmp_path / "device.json"
    write_json(dev_json, detect("cpu"))
    man = tmp_path / "manifest.json"
    hwmodel.write_manifest(str(man), name="tiny", source="random", arch_file=TINY_ARCH, seed=0)
    D.run_batch(
        out_json=str(tmp_path / f"{backend}.json"),
        out_kernels=str(tmp_path / f"{backend}.kernels.csv"),
        out_trace=str(tmp_path / f"{backend}.trace.json.gz"),
        device_json=str(dev_json),
        manifest=str(man),
        threads=0,
        batch=1,
        prompt_len=8,
        new_tokens=3,
        warmup_steps=1,
        profile_steps=1,
        memory_cap_mb=0,
        nvml_interval_ms=20,
        dtype="fp32",
        seed=0,
        sdpa_backend=backend,
    )
    return read_json(tmp_path / f"{backend}.json")


def test_sdpa_backend_is_applied_and_recorded(tmp_path):
    """math forces the math kernel (torch's own choice on a CPU is its flash kernel); a
    backend the CPU has no kernel for is a skipped record with torch's reason."""
    math = _run_tiny(tmp_path, "math")
    assert math["status"] == "ok" and math["sdpa_backend"] == "math"
    assert math["attention_ops"] == ["aten::_scaled_dot_product_attention_math"]
    flash = _run_tiny(tmp_path, "flash")
    assert flash["attention_ops"] == ["aten::_scaled_dot_product_flash_attention_for_cpu"]
    assert "cudnn_version" in flash
    eff = _run_tiny(tmp_path, "efficient")
    assert eff["status"] == "skipped"
    assert eff["reason"].startswith("decode.sdpa_backend efficient: no such attention kernel")
    with pytest.raises(ValueError, match="sdpa_backend"):
        D.sdpa_context("fastest")


def test_attention_used_reads_ops_and_kernels():
    traits = "<Flash_fwd_kernel_traits<128, 64, 128, 4>, false>(pytorch_flash::Flash_fwd_params)"
    names = [
        ("cpu_op", "aten::scaled_dot_product_attention"),
        ("cpu_op", "aten::_scaled_dot_product_flash_attention"),
        ("kernel", f"void pytorch_flash::flash_fwd_splitkv_kernel{traits}"),
        ("kernel", f"void pytorch_flash::flash_fwd_splitkv_combine_kernel{traits}"),
        ("kernel", "nvjet_tst_64x8_64x16_4x1_v_bz_TNT"),
    ]
    trace = {"traceEvents": [{"ph": "X", "cat": c, "name": n} for c, n in names]}
    used = D.attention_used(trace)
    assert used["attention_ops"] == ["aten::_scaled_dot_product_flash_attention"]
    assert used["attention_kernels_short"] == {
        "flash_fwd_splitkv_kernel": 1,
        "flash_fwd_splitkv_combine_kernel": 1,
    }
