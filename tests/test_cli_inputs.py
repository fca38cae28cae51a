"""Bad input to any hwlab command: one line naming what is wrong, exit code 2, never a
traceback (the generic guard in hwlab/cli.py, and clear messages where the input is read)."""

import gzip
import json
import subprocess
import sys

import pytest
from helpers import REPO

from hwlab.cli import main

BAD_YAML = "rules:\n  - {class: gemm, pattern: [mm\n  dtypes: [fp32]\n"
AT = "invalid YAML at line 3, column 9"


@pytest.fixture
def files(tmp_path):
    trace = json.dumps({"traceEvents": [{"ph": "X", "cat": "cpu_op", "name": "aten::mm"}]})
    (tmp_path / "ok.json.gz").write_bytes(gzip.compress(trace.encode()))
    (tmp_path / "truncated.json.gz").write_bytes(gzip.compress(trace.encode() * 50)[:40])
    (tmp_path / "bad.json.gz").write_bytes(b"\x1f\x8bthis is not gzip at all")
    (tmp_path / "array.json").write_text("[1, 2, 3]")
    (tmp_path / "events.json").write_text(json.dumps({"traceEvents": [{"ph": "X"}, "x", None]}))
    (tmp_path / "bad.yaml").write_text(BAD_YAML)
    (tmp_path / "dir").mkdir()
    return tmp_path


CASES = [
    (["inventory", "{d}/truncated.json.gz"], "truncated or corrupt gzip"),
    (["inventory", "{d}/bad.json.gz"], "truncated or corrupt gzip"),
    (["inventory", "{d}/dir"], "is a directory"),
    (["inventory", "{d}/missing.json"], "no such file"),
    (["inventory", "{d}/array.json"], "traceEvents[0] is int"),
    (["inventory", "{d}/events.json"], "traceEvents[1] is str"),
    (["inventory", "{d}/ok.json.gz", "--classes", "{d}/bad.yaml"], AT),
    (["inventory", "{d}/ok.json.gz", "--classes", "{d}/dir"], "is a directory"),
    (["device", "--file", "{d}/dir"], "is a directory, not a hardware catalog"),
    (["device", "--file", "{d}/bad.yaml"], AT),
    (["ncu-summary", "{d}/x.ncu-rep", "--metrics", "{d}/bad.yaml"], AT),
    (["ncu-summary", "{d}/dir"], "no such Nsight Compute report"),
    (["check-config", "{d}/bad.yaml"], f"bad.yaml: {AT}"),
    (["check-config", "{d}/array.json"], "a mapping of keys at top level"),
]


@pytest.mark.parametrize(("argv", "words"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_and_exit_2(files, capsys, argv, words):
    rc = main([a.format(d=files) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith(f"hwlab {argv[0]}: "), err
    assert words in err, err


def test_device_cuda_without_a_gpu(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    assert main(["device", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwlab device: device cuda was asked for") and err.count("\n") == 1


def test_no_traceback_from_an_unexpected_error(capsys, monkeypatch):
    """Anything a command raises ends as one line (HWLAB_DEBUG=1 shows the traceback)."""
    import hwlab.inventory

    def boom(path):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(hwlab.inventory, "load_trace", boom)
    assert main(["inventory", "x.json"]) == 2
    assert capsys.readouterr().err == "hwlab inventory: ZeroDivisionError: division by zero\n"
    monkeypatch.setenv("HWLAB_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["inventory", "x.json"])


def test_the_installed_command_prints_no_traceback(files):
    proc = subprocess.run(
        [sys.executable, "-m", "hwlab.cli", "inventory", str(files / "truncated.json.gz")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_check_config_accepts_a_good_config(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("run: mine\ngemm:\n  M: [1, 8]\n")
    assert main(["check-config", str(tmp_path / "c.yaml")]) == 0
    assert "valid (run 'mine')" in capsys.readouterr().out
    (tmp_path / "m.yaml").write_text("gemm:\n  M: [16.0]\n")
    assert main(["check-config", str(tmp_path / "m.yaml")]) == 2
    assert "gemm.M[0]: 16.0 is not of type 'integer'" in capsys.readouterr().err
