"""hwlab preflight on this CPU host: one process, CUDA rows skipped with the reason, the CPU
rows run the shared code (GEMM timing, a decode step, the AllReduce rank worker)."""

import json
import os
import subprocess
import sys

from helpers import REPO

from hwlab import preflight as P


def test_preflight_on_a_cpu_host(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "hwlab.cli", "preflight", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "preflight.json").read_text())
    rows = data["rows"]
    cuda = [r for r in rows if r["device"] == "cuda"]
    assert len(cuda) == len(P.CUDA_CHECKS) and all(r["status"] == "skipped" for r in cuda)
    assert "torch.cuda.is_available() is False" in data["versions"]["cuda_rows_skipped"]
    cpu = {r["check"]: r for r in rows if r["device"] == "cpu"}
    assert all(r["status"] == "pass" for r in cpu.values()), cpu
    decode = next(r for name, r in cpu.items() if name.startswith("decode step"))
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in decode["detail"]
    gloo = next(r for name, r in cpu.items() if "gloo" in name)
    assert "all exact" in gloo["detail"]
    md = (tmp_path / "preflight.md").read_text()
    assert "| check | device | status | seconds | detail |" in md and "- torch: " in md
    assert md == proc.stdout
    assert data["exit_code"] == 0


def test_a_failed_row_makes_the_exit_code_non_zero():
    rows = [P.Row("a", "cuda", P.SKIPPED, "no GPU"), P.Row("b", "cpu", P.PASS, "ok")]
    assert P.exit_code(rows) == 0
    rows.append(P.Row("c", "cuda", P.FAIL, "RuntimeError: boom"))
    assert P.exit_code(rows) == 1

    out: list[P.Row] = []

    def boom():
        raise RuntimeError("no kernel image is available\nmore")

    r = P.check(out, "x", "cuda", boom)
    assert r.status == P.FAIL and r.detail == "RuntimeError: no kernel image is available"

    def not_here():
        raise P.Skip("ncu not found")

    assert P.check(out, "y", "cuda", not_here).status == P.SKIPPED
