"""tools/gpu-session.sh end to end on this CPU host with a stand-in $OUT: the install step
(from a wheelhouse), preflight, the smoke config through Snakemake, the lab skipped (no GPU),
one tarball. What comes back from a GPU session is exactly what this test looks at."""

import json
import os
import subprocess
import sys
import tarfile

import pytest
from helpers import REPO


@pytest.mark.slow
def test_gpu_session_script_on_a_cpu_host(tmp_path):
    out, wd, wheels = tmp_path / "out", tmp_path / "wd", tmp_path / "wheelhouse"
    wheels.mkdir()
    (wheels / "requirements.txt").write_text("jsonschema\n")  # satisfied: no wheel needed
    env = {
        **os.environ,
        "OUT": str(out),
        "HWLAB_WORKDIR": str(wd),
        "HWLAB_WHEELHOUSE": str(wheels),
        "PYTHON": sys.executable,
        "HWLAB_BUDGET_S": "900",
    }
    proc = subprocess.run(
        ["bash", str(REPO / "tools" / "gpu-session.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    log = (out / "log").read_text()
    assert proc.returncode == 0, log[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["hwlab-gpu-session.tar.gz", "log"]
    assert f"installing from {wheels}" in log
    assert "no GPU here: config/h100.yaml is not run" in log
    assert "config/gpu-smoke.yaml: exit 0" in log
    with tarfile.open(out / "hwlab-gpu-session.tar.gz") as tar:
        names = set(tar.getnames())
        res = "results/gpu-smoke"
        for f in (
            f"{res}/findings.md",
            f"{res}/env.json",
            f"{res}/tables/roofline.md",
            f"{res}/ncu/b1.json",
            "gpu-session/preflight/preflight.md",
            "gpu-session/preflight/preflight.json",
            "gpu-session/rules-smoke.txt",
        ):
            assert f in names, f

        def rec(path):
            return json.load(tar.extractfile(f"{res}/{path}"))

        warm = rec("gemm/ffn_gate_up/bf16/warm/m16.json")
        assert warm["status"] == "skipped" and "CUDA graph" in warm["reason"]
        cold = rec("gemm/ffn_gate_up/bf16/cold/m256.json")
        assert cold["status"] == "ok" and cold["timing_mode"] == "each"
        assert "warm L2 points only" in cold["timing_note"]
        assert rec("gemm/ffn_gate_up/fp8/cold/m16.json")["status"] == "skipped"
        assert rec("ncu/b1.json")["status"] == "skipped"
        assert rec("decode/b8.json")["sdpa_backend"] == "flash"
        pre = json.load(tar.extractfile("gpu-session/preflight/preflight.json"))
        assert pre["exit_code"] == 0
        rules = tar.extractfile("gpu-session/rules-smoke.txt").read().decode()
        assert "gemm_sweep" in rules and "decode_batch" in rules
