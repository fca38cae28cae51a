"""Validation, paths, wildcard constraints, input and params functions shared by all rules."""

import os
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from hwlab import config as hwconfig

ROOT = Path(workflow.basedir)
SCHEMA = "../config/schema.yaml"


# ---- validation: before any job, one paragraph naming the key, no traceback ----------
def _fail(lines):
    print(
        "hwlab: invalid configuration — nothing was run.\n  "
        + "\n  ".join(lines)
        + "\nSee config/schema.yaml for every key, its meaning and its default.",
        file=sys.stderr,
    )
    sys.exit(1)


try:
    validate(config, SCHEMA)
except WorkflowError as e:
    cause = e.__context__ or e
    with open(ROOT / "config" / "schema.yaml") as fh:
        _fail([hwconfig.schema_error_message(cause, yaml.safe_load(fh))])

with open(ROOT / "config" / "hardware.yaml") as fh:
    CATALOG_KEYS = list(yaml.safe_load(fh))
_errors = hwconfig.semantic_errors(config, ROOT, CATALOG_KEYS)
if _errors:
    _fail(_errors)

# ---- measuring jobs never overlap --------------------------------------------------
# Every measuring rule takes one unit of `measure`; unless the user (or a profile) sets
# it, the whole run has one unit, so `--cores N` never runs two benchmarks at once.
if "measure" not in workflow.global_resources:
    workflow.register_resource("measure", 1)

RUN = config["run"]
RES = f"results/{RUN}"
GEMM_DTYPES = "fp32|tf32|fp16|bf16|fp8|int8"


wildcard_constraints:
    shape="[A-Za-z0-9][A-Za-z0-9_.-]*",
    dtype=GEMM_DTYPES,
    l2="warm|cold",
    M=r"\d+",
    batch=r"\d+",


def repo_path(path):
    """A path from the config, relative to the workflow folder unless absolute."""
    p = Path(path)
    return str(p if p.is_absolute() else ROOT / p)


def code(*modules):
    """Package modules a rule's result depends on: editing one reruns the rule (mtime)."""
    return [str(ROOT / "hwlab" / f"{m}.py") for m in ("__init__", *modules)]


ENV = "../envs/hwlab.yaml"


def gpus(kind="capable"):
    """GPUs a job asks its executor for (resource `gpu`, e.g. sbatch --gpus).

    capable: rules that measure on whichever device the run uses (device, peaks, gemm,
    decode) ask for one GPU when the config says device: cuda. gpu_only: rules that need a
    GPU to do anything (ncu) ask for one unless the config says device: cpu.
    """
    if kind == "gpu_only":
        return 0 if config["device"] == "cpu" else 1
    return 1 if config["device"] == "cuda" else 0


def measure_threads(wildcards=None):
    """Measuring jobs claim every core they will use, so nothing is scheduled beside them."""
    return config["threads"] or len(os.sched_getaffinity(0))


# ---- GEMM sweep ----------------------------------------------------------------------
def gemm_point_files():
    g = config["gemm"]
    return [
        f"{RES}/gemm/{shape}/{dtype}/{l2}/m{m}.json"
        for shape in g["shapes"]
        for dtype in g["dtypes"]
        for l2 in g["l2"]
        for m in g["M"]
    ]


def gemm_point_params(wildcards):
    g = config["gemm"]
    shape = g["shapes"][wildcards.shape]
    return dict(
        shape=wildcards.shape,
        M=int(wildcards.M),
        N=shape["N"],
        K=shape["K"],
        dtype=wildcards.dtype,
        l2=wildcards.l2,
        warmup=g["warmup"],
        repeats=g["repeats"],
        iters=g["iters"],
        flush_mb=g["flush_mb"],
        seed=config["seed"],
    )


def peaks_params(wildcards):
    p = config["peaks"]
    dtypes = list(dict.fromkeys([*config["gemm"]["dtypes"], config["model"]["dtype"]]))
    return dict(
        dtypes=dtypes,
        gemm_sizes=p["gemm_sizes"],
        stream_mb=p["stream_mb"],
        warmup=p["warmup"],
        repeats=p["repeats"],
        iters=p["iters"],
        seed=config["seed"],
    )


# ---- model and decode (Lab 1a, §5) ---------------------------------------------------
MODEL_DIR = f"resources/models/{config['model']['name']}"


def model_inputs(wildcards=None):
    """Files the model manifest depends on: the architecture file for source random."""
    m = config["model"]
    return {"arch": repo_path(m["arch"])} if m["source"] == "random" else {}


def model_params(wildcards=None):
    """Only what identifies the model: the seed matters for random weights, not for hub."""
    m = config["model"]
    p = dict(name=m["name"], source=m["source"])
    if m["source"] == "random":
        p.update(arch=m["arch"], seed=config["seed"])
    else:
        p.update(repo=m["repo"], revision=m["revision"])
    return p


def decode_params(wildcards):
    d = config["decode"]
    return dict(
        batch=int(wildcards.batch),
        prompt_len=d["prompt_len"],
        new_tokens=d["new_tokens"],
        warmup_steps=d["warmup_steps"],
        profile_steps=d["profile_steps"],
        memory_cap_mb=d["memory_cap_mb"],
        nvml_interval_ms=d["nvml_interval_ms"],
        dtype=config["model"]["dtype"],
        seed=config["seed"],
    )


def decode_batch_files(kind):
    """Per-batch files of the sweep: kind json or kernels."""
    suffix = {"json": "json", "kernels": "kernels.csv"}[kind]
    return [f"{RES}/decode/b{b}.{suffix}" for b in config["decode"]["batches"]]


def decode_tables_params(wildcards=None):
    return dict(lab1a_batches=config["decode"]["lab1a_batches"])


def decode_targets():
    return [
        f"{RES}/tables/{t}"
        for t in (
            "decode.csv",
            "decode.md",
            "kernel_inventory.csv",
            "kernel_classes.csv",
            "lab1a.md",
        )
    ] + [
        f"{RES}/figures/{f}.{ext}"
        for f in ("decode_sweep", "kernel_classes")
        for ext in ("png", "svg")
    ]


# ---- Nsight Compute (Lab 1b) -----------------------------------------------------------


def ncu_targets():
    return []


# ---- AllReduce (Lab 3, §6) -------------------------------------------------------------


def allreduce_targets():
    return []


# ---- findings (the regenerated writeup) ------------------------------------------------


def findings_targets():
    return []


# ---- targets -------------------------------------------------------------------------
def all_outputs():
    """The targets of the all rule: the backbone, then each stage's own list."""
    return [
        f"{RES}/env.json",
        f"{RES}/tables/roofline.csv",
        f"{RES}/tables/roofline.md",
        f"{RES}/figures/roofline.png",
        f"{RES}/figures/roofline.svg",
        *decode_targets(),
        *ncu_targets(),
        *allreduce_targets(),
        *findings_targets(),
    ]
