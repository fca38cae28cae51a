"""Graph-mode decode beside eager and the decode model, through Snakemake on the tiny config
(real torch.compile with inductor on this CPU; the skip path with no C++ compiler)."""

import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import TINY, planned_jobs, smk, write_config

# inductor's on-disk cache shared by test sessions: the first session compiles (~20 s on 2
# cores), later ones load the compiled graph; what is tested (a compiled, replayed step
# and its records) is the same either way
INDUCTOR_CACHE = Path(tempfile.gettempdir()) / "hwlab-test-torchinductor"


def _second_run(tiny_run, tmp_path, name, decode, env=None):
    """A run beside the tiny run (shared model manifest, its device.json and peaks.json
    copied) with ``decode`` merged into the tiny config's decode section."""
    wd, _, tiny_res = tiny_run
    res = wd / "results" / name
    res.mkdir(parents=True, exist_ok=True)
    for f in ("device.json", "peaks.json"):  # copy2 keeps mtimes: up to date, not rerun
        shutil.copy2(tiny_res / f, res / f)
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["run"] = name
    cfg["decode"].update(decode)
    cfgfile = write_config(tmp_path / f"{name}.yaml", cfg)
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        proc = smk(
            wd,
            f"results/{name}/tables/decode.csv",
            f"results/{name}/tables/decode_model.csv",
            configfile=cfgfile,
        )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, res


@pytest.fixture(scope="module")
def graph_run(tiny_run, tmp_path_factory):
    return _second_run(
        tiny_run,
        tmp_path_factory.mktemp("graph"),
        "graph",
        {"mode": ["eager", "graph"], "graph_batches": [1], "batches": [1, 2, 4]},
        env={"TORCHINDUCTOR_CACHE_DIR": str(INDUCTOR_CACHE)},
    )


def test_graph_and_eager_records(graph_run):
    proc, res = graph_run
    jobs = planned_jobs(proc)
    assert jobs.get("decode_graph") == 1 and jobs.get("decode_batch") == 3
    assert jobs.get("decode_ops") == 1 and jobs.get("decode_model") == 1
    assert "model" not in jobs and "peaks" not in jobs
    g = json.loads((res / "decode" / "graph" / "b1.json").read_text())
    assert g["status"] == "ok", g["reason"]
    assert g["mode"] == "graph" and g["fullgraph"] is True and g["recompiles"] == 0
    assert g["graphs_compiled"] == 1  # prefill's next ids guard like every step's output
    assert g["compile_s"] > 0 and len(g["warm_calls_s"]) == 3
    assert g["compile_s"] == pytest.approx(sum(g["warm_calls_s"]))
    assert g["compile_backend"].startswith("inductor") and g["cache"].endswith("StaticCache")
    assert g["max_cache_len"] == 16 + 6  # prompt + the longest run of steps
    assert g["timed_steps"] == 6 - 2 and 0 < g["tpot_ms_p10"] <= g["tpot_ms_p50"]
    assert g["inductor_cache_dir"] == str(INDUCTOR_CACHE)
    # the graph trace has the profiled compiled steps under hwlab's annotations
    with gzip.open(res / "decode" / "graph" / "b1.trace.json.gz", "rt") as fh:
        names = {e.get("name") for e in json.load(fh)["traceEvents"]}
    assert "hwlab::decode_step" in names
    assert not pd.read_csv(res / "decode" / "graph" / "b1.kernels.csv").empty
    # read from that trace as in the eager record: the attention the compiled steps ran
    assert isinstance(g["attention_ops"], list) and isinstance(g["attention_kernels"], dict)
    # the eager layout is unchanged and has no graph record for batches 2 and 4
    e = json.loads((res / "decode" / "b1.json").read_text())
    assert e["status"] == "ok" and "mode" not in e and "compile_s" not in e
    assert not (res / "decode" / "graph" / "b2.json").exists()


def test_decode_table_pairs_eager_and_graph(graph_run):
    _, res = graph_run
    df = pd.read_csv(res / "tables" / "decode.csv").set_index("batch")
    r = df.loc[1]
    assert r["graph_status"] == "ok" and r["graph_tpot_ms_p50"] > 0
    assert r["graph_speedup"] == pytest.approx(r["tpot_ms_p50"] / r["graph_tpot_ms_p50"])
    assert r["graph_overhead_ratio"] == pytest.approx(r["graph_tpot_ms_p50"] / r["napkin_ms"])
    assert r["graph_compile_s"] > 0
    assert pd.isna(df.loc[2, "graph_tpot_ms_p50"]) and pd.isna(df.loc[2, "graph_status"])
    md = (res / "tables" / "decode.md").read_text()
    assert "graph TPOT p50 (ms)" in md and "napkin (ms)" in md and "never in TPOT" in md


def test_decode_model_table_and_figure(graph_run):
    _, res = graph_run
    df = pd.read_csv(res / "tables" / "decode_model.csv")
    eager = df[df["mode"] == "eager"].set_index("batch")
    # tiny: batches 1, 2, 4 -> fit on 1 and 4, 2 held out
    assert eager["role"].to_dict() == {1: "fit", 2: "held out", 4: "fit"}
    assert (eager["predicted_ms"] > 0).all() and eager["error_pct"].notna().all()
    for t in ("matmul_ms", "weights_ms", "attention_ms", "overhead_ms", "trace_matmul_ms"):
        assert (eager[t] >= 0).all(), t
    assert (eager["matmul_ms"] == eager["weights_ms"] + eager["compute_ms"]).all()
    assert eager["bound"].notna().all() and (eager["ops_per_step"] > 100).all()
    graph = df[df["mode"] == "graph"]
    assert list(graph["batch"]) == [1] and graph["role"].iloc[0] == "fit"
    ops = json.loads((res / "decode_model" / "ops.json").read_text())
    assert ops["status"] == "ok" and {g["M"] for g in ops["gemm"]} == {1, 2, 4}
    assert len(ops["gemm"]) == 5 * 3  # distinct (N, K) of qwen2-tiny x batches
    assert {(s["mode"], s["batch"]) for s in ops["sdpa"]} == {
        ("eager", 1),
        ("eager", 2),
        ("eager", 4),
        ("graph", 1),
    }
    md = (res / "tables" / "decode_model.md").read_text()
    assert "held out" in md and "µs per op" in md and "goal |error| <= 15%" in md
    assert (res / "figures" / "decode_model.png").stat().st_size > 0
    assert (res / "figures" / "decode_model.svg").stat().st_size > 0


def test_graph_mode_without_a_cxx_compiler_is_skipped(tiny_run, tmp_path):
    proc, res = _second_run(
        tiny_run,
        tmp_path,
        "nocxx",
        {"mode": ["eager", "graph"], "graph_batches": [], "batches": [1], "lab1a_batches": [1, 1]},
        env={"CXX": "/nonexistent/c++"},
    )
    g = json.loads((res / "decode" / "graph" / "b1.json").read_text())
    assert g["status"] == "skipped" and "C++ compiler" in g["reason"]
    assert pd.read_csv(res / "decode" / "graph" / "b1.kernels.csv").empty
    df = pd.read_csv(res / "tables" / "decode.csv")
    assert df["graph_status"].iloc[0] == "skipped"
    assert "graph batch 1: skipped" in (res / "tables" / "decode.md").read_text()
    model = pd.read_csv(res / "tables" / "decode_model.csv").set_index("mode")
    assert model.loc["graph", "status"] == "skipped" and pd.isna(model.loc["graph", "predicted_ms"])
    assert "graph batch 1: skipped" in (res / "tables" / "decode_model.md").read_text()


def test_graph_only_is_refused(tiny_run, tmp_path):
    wd, _, _ = tiny_run
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["decode"]["mode"] = ["graph"]
    proc = smk(wd, "all", "-n", configfile=write_config(tmp_path / "g.yaml", cfg))
    assert proc.returncode != 0 and "decode.mode" in proc.stderr
    assert "Traceback" not in proc.stderr
    cfg["decode"].update(mode=["eager", "graph"], graph_batches=[7])
    proc = smk(wd, "all", "-n", configfile=write_config(tmp_path / "g.yaml", cfg))
    assert proc.returncode != 0 and "decode.graph_batches: [7] not in" in proc.stderr


@pytest.mark.slow
def test_graph_mode_falls_back_when_the_backend_has_no_kernel(tiny_run, tmp_path):
    """decode.sdpa_backend with no kernel here (efficient attention on a CPU): the eager
    record is skipped with torch's reason; graph mode compiles again with torch's own choice
    and says so, instead of failing the job."""
    proc, res = _second_run(
        tiny_run,
        tmp_path,
        "nokernel",
        {
            "mode": ["eager", "graph"],
            "graph_batches": [1],
            "batches": [1],
            "lab1a_batches": [1, 1],
            "sdpa_backend": "efficient",
        },
        env={"TORCHINDUCTOR_CACHE_DIR": str(INDUCTOR_CACHE)},
    )
    e = json.loads((res / "decode" / "b1.json").read_text())
    assert e["status"] == "skipped" and "sdpa_backend efficient" in e["reason"]
    g = json.loads((res / "decode" / "graph" / "b1.json").read_text())
    assert g["status"] == "ok", g["reason"]
    assert g["sdpa_backend"] == "efficient" and g["sdpa_backend_used"] == "auto"
    assert "torch's own choice" in g["sdpa_backend_note"]
