"""hwlab preflight on this CPU host: one process, CUDA rows skipped with the reason, the CPU
rows run the shared code (GEMM timing, a decode step, the AllReduce rank worker)."""

import json
import os
import subprocess
import sys

from helpers import REPO

from hwlab import preflight as P


def cuda_checks_rows(arch=P.ARCH_3B) -> list[str]:
    """The row names cuda_checks makes, read off it without running a check (each check's
    body is not called: nothing here needs a GPU)."""
    seen: list[str] = []

    def record(rows, name, device, fn):
        assert device == "cuda" and callable(fn)
        seen.append(name)

    P.cuda_checks([], None, ncu_path="", arch=arch, workdir=REPO, run_check=record)
    return seen


def test_cuda_rows_are_named_from_one_list():
    names = cuda_checks_rows()
    assert len(names) == len(set(names)) == 15
    assert names[0] == "CUDA events" and names[-1] == "memory statistics"
    assert f"decode step of {P.ARCH_3B.stem} (built on the GPU)" in names
    assert P.cuda_check_names() == names
    assert P.cuda_check_names(P.ARCH_TINY) == cuda_checks_rows(P.ARCH_TINY)


def test_lab_shape_is_the_3b_ffn_projection():
    arch = json.loads(P.ARCH_3B.read_text())
    assert P.lab_shape() == {"N": arch["intermediate_size"], "K": arch["hidden_size"]}


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
    assert all(r["status"] == "skipped" for r in cuda)
    assert [r["check"] for r in cuda] == cuda_checks_rows()
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
