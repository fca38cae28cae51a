"""The CPU kernels for real (numba, small working sets), the permutation ring, and the
skipped paths: no numba, no GPU (link), no Triton."""

import json

import numpy as np
import pytest

from hwlab.device import Device
from hwlab.hierarchy import cpu, gpu, measure
from hwlab.io import SKIPPED

KiB, MiB = 1024, 1024**2


def test_permutation_ring_is_one_cycle():
    nxt = np.zeros(1000 * 8, dtype=np.int64)
    start = cpu.permutation_ring(nxt, 1000, 8, np.random.default_rng(0))
    seen, i = set(), start
    for _ in range(1000):
        assert i % 8 == 0  # one line (8 int64 = 64 B) per hop
        seen.add(i)
        i = int(nxt[i])
    assert i == start and len(seen) == 1000


@pytest.fixture(scope="module")
def buf():
    b = cpu.Buffer(64 * MiB)
    yield b
    b.close()


def test_bandwidth_sweep_counts_bytes(buf):
    dev = Device("cpu", threads=2)
    pts = cpu.bandwidth_sweep(dev, buf, [16 * KiB, 4 * MiB], kernel="read", threads=2,
                              target_ms=0.3, repeats=3, target_spread=0)  # fmt: skip
    assert [p["size_bytes"] for p in pts] == [16 * KiB, 4 * MiB]
    for p in pts:
        assert p["bytes_per_call"] == p["passes"] * p["size_bytes"]
        assert p["gbps_lo"] <= p["gbps"] <= p["gbps_hi"] and p["gbps"] > 0
        assert p["threads"] == 2 and p["n_repeats"] == 3
    cp = cpu.bandwidth_sweep(dev, buf, [64 * KiB], kernel="copy", threads=2,
                             target_ms=0.3, repeats=3, target_spread=0)  # fmt: skip
    # copy: src and dst each half of the working set, read + write counted
    assert cp[0]["bytes_per_call"] == cp[0]["passes"] * 64 * KiB
    with pytest.raises(ValueError, match="kernel"):
        cpu.bandwidth_sweep(dev, buf, [4096], kernel="triad", threads=1, target_ms=0.1,
                            repeats=1, target_spread=0)  # fmt: skip


def test_latency_sweep_cache_vs_memory(buf):
    """One line per hop over a random ring: an L1-sized ring is far faster per hop than a
    64 MiB one (x70 on this machine; any cache hierarchy gives several x)."""
    dev = Device("cpu", threads=1)
    small, big = cpu.latency_sweep(dev, buf, [16 * KiB, 64 * MiB], line_bytes=64,
                                   llc_bytes=32 * MiB, target_ms=0.5, repeats=3,
                                   target_spread=0, seed=0)  # fmt: skip
    assert small["size_bytes"] == 16 * KiB and big["size_bytes"] == 64 * MiB
    assert small["ns_lo"] <= small["ns"] <= small["ns_hi"]
    assert big["ns"] > 3 * small["ns"]
    assert buf.f64[123] == 1.0  # the buffer is float data again for the next sweep


def test_no_numba_is_a_skipped_record(tmp_path, monkeypatch):
    def missing():
        raise ImportError(cpu.NUMBA_MISSING)

    monkeypatch.setattr(cpu, "kernels", missing)
    rec = measure.cpu_memory({"kind": "cpu", "name": "x"}, {}, 1)
    assert rec["status"] == SKIPPED and "numba" in rec["reason"]


def test_link_on_a_cpu_host_is_skipped(tmp_path):
    dev = tmp_path / "device.json"
    dev.write_text(json.dumps({"kind": "cpu", "name": "AMD EPYC"}))
    rec = measure.write_link_json(str(tmp_path / "link.json"), device_json=str(dev))
    assert rec["status"] == SKIPPED and "CUDA GPU" in rec["reason"]
    assert json.loads((tmp_path / "link.json").read_text())["window"]


@pytest.mark.skipif(gpu.triton is not None, reason="triton is installed here")
def test_no_triton_is_a_skipped_record():
    rec = gpu.gpu_memory({"kind": "cuda", "name": "NVIDIA H200"}, {})
    assert rec["status"] == SKIPPED and "triton" in rec["reason"]


def test_config_errors():
    assert measure.config_errors({"hierarchy": {"min_bytes": 4096, "max_bytes": 1024}}) == [
        "hierarchy.max_bytes: 1024 is below hierarchy.min_bytes = 4096."
    ]
    assert measure.config_errors({"hierarchy": {}}) == []
    assert measure.auto_max_bytes(0, 32 * MiB) == 1 << 30
    assert measure.auto_max_bytes(0, 512 * MiB) == 2 << 30
    assert measure.auto_max_bytes(8 * MiB, 32 * MiB) == 8 * MiB
