"""§6 TP napkin: the writeup's worked example step by step, its arithmetic checked against
its own formula, the parallelism table's models, and the ``hwlab napkin tp`` command."""

import json

import pytest
from helpers import REPO

from hwlab import catalog as cat
from hwlab import napkin as N
from hwlab.cli import main


def test_worked_example_intermediates():
    c = N.tp_comm(d_model=8192, layers=80, batch=32, seq_len=2048, tp=8)
    assert c.message_bytes == 2 * 32 * 2048 * 8192 == 1_073_741_824  # 1.07 GB, not 2.15
    assert c.allreduces_per_pass == 160
    assert c.message_per_pass_bytes / 1e9 == pytest.approx(171.8, abs=0.05)
    assert c.ring_factor == 1.75
    assert c.ring_traffic_bytes / 1e9 == pytest.approx(1.879, abs=5e-4)
    assert c.ring_traffic_per_pass_bytes / 1e9 == pytest.approx(300.6, abs=0.05)
    assert c.time_s(750) * 1e3 == pytest.approx(400.9, abs=0.05)
    assert c.time_s(450) * 1e3 == pytest.approx(668.1, abs=0.05)


def test_writeup_numbers_follow_only_with_a_factor_two():
    """The writeup's 2.15 GB, 344 GB and ~460 ms: which follow from its formula."""
    w = N.WRITEUP_TP
    # its own chain, reproduced: 2.15 GB x 160 = 344 GB; 344 GB / 750 GB/s = 458.7 ms
    assert pytest.approx(w["stated_per_pass_gb"]) == 2.15 * 160
    assert pytest.approx(458.7, abs=0.05) == 344 / 750 * 1e3
    check = {r["quantity"]: r for r in N.writeup_tp_check()}
    msg = check["bytes per AllReduce"]
    assert msg["follows"] is False
    assert msg["ratio"] == pytest.approx(2.0, rel=0.01)
    assert "fp32" in msg["explanation"] and "ring factor of 2" in msg["explanation"]
    assert "per-GPU traffic at n = 8" not in msg["explanation"]  # 1.879 GB is not 2.15
    assert check["bytes per forward pass"]["follows"] is True  # from its 2.15 GB
    assert check["communication per pass"]["follows"] is True  # from its 344 GB
    assert check["communication per pass"]["ratio"] == pytest.approx(460 / 400.86, rel=1e-3)


def test_tp1_has_no_allreduce():
    c = N.tp_comm(4096, 32, 32, 2048, tp=1)
    assert c.allreduces_per_pass == 0 and c.ring_traffic_per_pass_bytes == 0
    assert c.time_s(750) == 0
    assert "no tensor-parallel AllReduce" in N.tp_steps(c, [("x", 750)])[-1]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="tp"):
        N.tp_comm(8192, 80, 32, 2048, tp=0)
    with pytest.raises(ValueError, match="bus bandwidth"):
        N.tp_comm_time_s(1e9, 0)


def test_catalog_nvlink_is_priced_per_direction():
    entries = cat.load()
    bw = N.catalog_bandwidth("h100_sxm", entries["h100_sxm"])
    assert bw.busbw_gbps == 450 and "900" in bw.source
    assert N.catalog_bandwidth("b200", entries["b200"]).busbw_gbps == 900
    assert N.catalog_bandwidth("rtx5080", entries["rtx5080"]).busbw_gbps is None


def test_parallelism_table_rows():
    bws = [N.writeup_bandwidth(), N.Bandwidth("none", None, "skipped")]
    rows = N.tp_table_rows(N.TP_MODELS, 32, 2048, bws)
    assert len(rows) == len(N.TP_MODELS) * 2
    assert {r["writeup_row"] for r in rows} == {"≤ 7B", "13–30B", "70B", "175B+", "405B+"}
    ex = next(r for r in rows if r["d_model"] == 8192 and r["bandwidth"] == "writeup")
    assert ex["comm_ms"] == pytest.approx(400.9, abs=0.05)
    assert "2.15 GB" in ex["note"] and "does NOT follow" in ex["note"]
    assert all(r["comm_ms"] is None for r in rows if r["bandwidth"] == "none")
    big = next(r for r in rows if r["d_model"] == 16384 and r["bandwidth"] == "writeup")
    assert big["ring_traffic_per_pass_gb"] == pytest.approx(
        2 * 32 * 2048 * 16384 * 1.75 * 2 * 126 / 1e9
    )


def test_measured_bandwidths_from_fit_rows():
    rows = [
        {"backend": "gloo", "world_size": 2, "dtype": "fp32", "status": "ok",
         "busbw_at_max_gbps": 0.7, "beta_busbw_gbps": 0.8, "max_size_bytes": 2**28},
        {"backend": "nccl", "world_size": 2, "dtype": "fp32", "status": "skipped",
         "reason": "no GPUs"},
    ]  # fmt: skip
    bws = N.measured_bandwidths(rows)
    assert [b.busbw_gbps for b in bws] == [0.7, 0.8, None]
    assert "skipped" in bws[2].label and bws[2].source == "no GPUs"


def test_cli_prints_the_intermediates(capsys):
    assert main(["napkin", "tp", "--writeup-check", "--hardware", "h100_sxm"]) == 0
    out = capsys.readouterr().out
    for s in ("1,073,741,824 B", "= 160", "171.8 GB", "1.75", "1.879 GB", "300.6 GB",
              "400.9 ms", "668.1 ms", "DOES NOT FOLLOW"):  # fmt: skip
        assert s in out, s


def test_cli_any_model_and_json(capsys):
    args = ["napkin", "tp", "--d-model", "5120", "--layers", "40", "--batch", "8", "--seq",
            "1024", "--tp", "2", "--busbw", "100", "--busbw", "200", "--json"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["message_bytes"] == 2 * 8 * 1024 * 5120
    assert out["allreduces_per_pass"] == 80
    ring = out["ring_traffic_per_pass_bytes"]
    assert out["comm_ms"]["100 GB/s"] == pytest.approx(ring / 100e9 * 1e3)
    assert out["comm_ms"]["200 GB/s"] == pytest.approx(ring / 200e9 * 1e3)


def _exit_code(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse rejects a bad value before the napkin runs
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--tp", "0"], "argument --tp: must be an integer >= 1, got '0'"),
        (["--busbw", "-5"], "argument --busbw: must be > 0, got '-5'"),
        (["--busbw", "nan"], "argument --busbw: must be a finite number, got 'nan'"),
        (["--bytes-per-el", "0"], "argument --bytes-per-el: must be > 0, got '0'"),
        (["--allreduces-per-layer", "-1"], "argument --allreduces-per-layer: must be an integer"),
        (["--d-model", "x"], "argument --d-model: 'x' is not an integer"),
        (["--hardware", "nope"], "not in the catalog"),
    ],
)
def test_cli_bad_input_is_a_clear_error(argv, msg, capsys):
    code, err = _exit_code(["napkin", "tp", *argv], capsys)
    assert code == 2 and msg in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_tp_help_has_every_default():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "hwlab.cli", "napkin", "tp", "--help"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    ).stdout  # fmt: skip
    flat = " ".join(out.split()).split("options:")[1]
    for opt, default in (("--d-model", "8192"), ("--layers", "80"), ("--batch", "32"),
                         ("--seq", "2048"), ("--tp", "8"), ("--bytes-per-el", "2"),
                         ("--allreduces-per-layer", "2")):  # fmt: skip
        i = flat.index(f"{opt} {opt[2:].upper().replace('-', '_')}")
        assert f"(default: {default})" in flat[i : i + 200], opt
    assert "--busbw" in flat and "none given: the writeup's ~750 GB/s" in flat
    assert "(default: None)" not in flat


def test_formatters_never_print_exponents():
    """napkin's ms cells and io.fmt_sig: no exponent where rounding reaches 10**digits."""
    from hwlab.io import finite, fmt_sig

    assert fmt_sig(999.7) == "1,000" and fmt_sig(3350.0) == "3,350" and fmt_sig(9.91) == "9.91"
    assert N._ms(9999.7) == "10,000" and N._ms(1.7914) == "1.791" and N._ms(1234.4) == "1,234"
    assert finite("x") is None and finite(float("inf")) is None and finite("2.5") == 2.5


def test_geometry_and_parameters_come_from_tp_models():
    """One table: the napkin's (d_model, layers) and §8's parameter counts are TP_MODELS'."""
    for m in N.TP_MODELS:
        assert N.geometry(m.params_b) == (m.d_model, m.layers)
    assert N.geometry(30) == (6656, 60)  # the '30B' row is LLaMA-33B
    assert N.geometry(3) == (2048, 36)  # Qwen2.5-3B, not a TP_MODELS row
