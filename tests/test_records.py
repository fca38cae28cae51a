"""Validated reading of intermediate records (hwlab/records.py): a truncated, misplaced or
incomplete record is refused with one line naming the file and the command that redoes it."""

import json
import os

import pytest

from hwlab import records as R
from hwlab.roofline import write_roofline

POINT = {
    "status": "ok",
    "reason": None,
    "shape": "small",
    "M": 16,
    "N": 512,
    "K": 256,
    "dtype": "fp32",
    "l2": "warm",
    "gpu_time_us": 10.0,
    "tflops": 0.2,
    "eff_gbps": 40.0,
    "ai": 4.5,
    "flops": 4194304.0,
    "bytes": 600000,
    "window": {"start": 1.0, "end": 2.0},
}


def _point(tmp_path, rec=POINT, rel="results/r/gemm/small/fp32/warm/m16.json"):
    p = tmp_path / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(rec) if isinstance(rec, dict) else rec)
    return p


def test_kind_and_keys_from_the_path():
    assert R.kind_of("results/x/gemm/ffn_gate_up/bf16/cold/m256.json") == (
        "gemm_point",
        {"shape": "ffn_gate_up", "dtype": "bf16", "l2": "cold", "M": 256},
    )
    assert R.kind_of("results/x/ncu/gemm/s/fp16/m8.json") == (
        "ncu_gemm",
        {"shape": "s", "dtype": "fp16", "M": 8},
    )
    assert R.kind_of("results/x/decode/b4.kernels.csv") == ("decode_kernels", {"batch": 4})
    assert R.kind_of("results/x/allreduce/auto-w2.json") == (
        "allreduce",
        {"backend_requested": "auto", "world_size": 2},
    )
    assert R.kind_of("results/x/tables/roofline.csv") is None


def test_a_good_record_reads(tmp_path):
    assert R.read(_point(tmp_path))["M"] == 16


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (json.dumps(POINT)[:120], "not valid JSON"),
        ("", "not valid JSON"),
        (json.dumps({**POINT, "M": 1}), "its M is 1 but its path says 16"),
        (json.dumps({**POINT, "l2": "cold"}), "its l2 is 'cold' but its path says 'warm'"),
        (json.dumps({k: v for k, v in POINT.items() if k != "tflops"}), "'tflops' is a required"),
        (json.dumps({**POINT, "status": "fine"}), "status: 'fine' is not one of"),
        (json.dumps({**POINT, "M": 16.0}), "16.0 is not of type 'integer'"),
        (json.dumps([1, 2]), "is not of type 'object'"),
    ],
    ids=["truncated", "empty", "copy", "wrong-l2", "incomplete", "status", "float-M", "list"],
)
def test_a_bad_record_is_one_line_naming_file_and_fix(tmp_path, content, words):
    p = _point(tmp_path, content)
    assert words in R.problem(p)
    with pytest.raises(R.RecordError) as e:
        R.read(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p} is ")
    assert f"--forcerun {p}" in msg


def test_a_skipped_record_needs_no_timing(tmp_path):
    rec = {k: v for k, v in POINT.items() if k not in ("gpu_time_us", "tflops")}
    assert R.problem(_point(tmp_path, {**rec, "status": "skipped", "reason": "fp8"})) is None


def test_missing_and_directory(tmp_path):
    assert R.problem(tmp_path / "results/r/gemm/s/fp32/warm/m1.json") == "missing"
    d = tmp_path / "results/r/decode/b1.json"
    d.mkdir(parents=True)
    assert "directory" in R.problem(d)


def test_kernels_csv(tmp_path):
    p = tmp_path / "results/r/decode/b2.kernels.csv"
    p.parent.mkdir(parents=True)
    good = "phase,kernel,rows,calls,time_us,share\ndecode,aten::mm,1,34,152.5,0.8\n"
    p.write_text(good)
    assert R.read(p) == [
        {
            "phase": "decode",
            "kernel": "aten::mm",
            "rows": 1,
            "calls": 34,
            "time_us": 152.5,
            "share": 0.8,
        }
    ]
    p.write_text(good[:-9])  # cut inside the last row
    assert R.problem(p) is not None
    p.write_text("phase,kernel\n")
    assert "header lacks" in R.problem(p)
    p.write_text("")
    assert "empty" in R.problem(p)


def test_device_and_peaks_carry_the_catalog_match(tmp_path):
    dev = {"kind": "cuda", "name": "NVIDIA H100", "torch_device": "cuda:0", "index": 0}
    (tmp_path / "device.json").write_text(json.dumps(dev))
    (tmp_path / "peaks.json").write_text(json.dumps({"device": dev, "measured": {}}))
    hw = {"catalog_key": "h100_sxm", "catalog_reason": "matched", "spec": {"mem_bw_gbps": 3350}}
    (tmp_path / "hardware.json").write_text(json.dumps(hw))
    merged = R.read_run_device(tmp_path)
    assert merged["catalog_key"] == "h100_sxm" and merged["name"] == "NVIDIA H100"
    peaks = R.read_run_peaks(tmp_path)
    assert peaks["spec_key"] == "h100_sxm" and peaks["spec"]["mem_bw_gbps"] == 3350
    (tmp_path / "hardware.json").unlink()  # an older run: device.json as it is
    assert "catalog_key" not in R.read_run_device(tmp_path)


def test_the_aggregation_refuses_a_copied_point(tmp_path):
    """A copy of another point would be a silently duplicated row: refused, one line."""
    dev = {"kind": "cpu", "name": "cpu", "torch_device": "cpu", "index": 0}
    (tmp_path / "device.json").write_text(json.dumps(dev))
    (tmp_path / "peaks.json").write_text(json.dumps({"device": dev, "measured": {}}))
    good = _point(tmp_path, {**POINT, "M": 1}, "results/r/gemm/small/fp32/warm/m1.json")
    copy = _point(tmp_path, {**POINT, "M": 1}, "results/r/gemm/small/fp32/warm/m16.json")
    out = {k: str(tmp_path / f"t.{k}") for k in ("csv", "md", "png", "svg")}
    with pytest.raises(R.RecordError, match="m16.json is invalid: its M is 1"):
        write_roofline(
            [str(good), str(copy)],
            peaks_json=str(tmp_path / "peaks.json"),
            device_json=str(tmp_path / "device.json"),
            **out,
        )
    assert not any((tmp_path / f"t.{k}").exists() for k in out)


@pytest.mark.parametrize("flags", [["-n"], ["-pn"], ["--summary"], ["--list-changes", "code"]])
def test_a_command_that_runs_no_job_moves_no_record(tmp_path, flags):
    """`snakemake -n`, --summary ...: an invalid record is reported, left in place, and no
    stale temporary file is swept (a real run moves it aside: test_workflow_reliability)."""
    from helpers import smk, write_config

    cfg = write_config(tmp_path / "c.yaml", {"run": "dry", "gemm": {"dtypes": ["fp32"]}})
    rec = _point(tmp_path, rel="results/dry/gemm/ffn_gate_up/fp32/warm/m16.json")
    rec.write_text(rec.read_text()[:20])  # truncated
    tmp = rec.with_name(".m1.json.abc.tmp")
    tmp.write_text("{")
    os.utime(tmp, (0, 0))  # old: a real run sweeps it
    proc = smk(tmp_path, *flags, configfile=cfg, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{rec.relative_to(tmp_path)} is not valid JSON" in proc.stderr, proc.stderr[-3000:]
    assert "a run that executes jobs (not this one) moves it aside" in proc.stderr
    assert rec.is_file() and not rec.with_name(".m16.json.invalid").exists()
    assert tmp.is_file()
