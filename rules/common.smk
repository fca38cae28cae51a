"""Validation, paths, wildcard constraints, input and params functions shared by all rules."""

import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from hwlab import config as hwconfig
from hwlab import host as hwhost
from hwlab import lock as hwlock
from hwlab import records as hwrecords

ROOT = Path(workflow.basedir)


# ---- validation: before any job, one paragraph naming the key, no traceback ----------
def _fail(lines):
    print(
        "hwlab: invalid configuration — nothing was run.\n  "
        + "\n  ".join(lines)
        + "\nSee config/schema.yaml for every key, its meaning and its default.",
        file=sys.stderr,
    )
    sys.exit(1)


# the schema (types, ranges, defaults filled in), then every cross-key rule: the same
# checks as `hwlab check-config` (hwlab/config.py, config_errors), all reported at once
_errors = hwconfig.config_errors(config, ROOT)
if _errors:
    _fail(_errors)


# ---- the host: what the jobs would only find out after Snakemake removed their outputs ----
# Run from `onstart` (Snakefile): after the DAG is built and the executor known, before
# any job starts (so before Snakemake removes any output); not in dry-runs.
def _host_fail(line):
    print(f"hwlab: {line} — nothing was run.", file=sys.stderr)
    sys.exit(1)


def host_checks():
    """device: cuda on a host without CUDA; an interpreter path Snakemake cannot start."""
    local = workflow.local_exec
    if config["device"] == "cuda" and local:
        why = hwhost.cuda_problem()
        if why:
            _host_fail(
                f"device: cuda, but this host cannot run CUDA: {why}. Use device: auto "
                "(or cpu) here, or send the measuring jobs to a GPU node "
                "(--profile profiles/slurm)"
            )
    why = hwhost.interpreter_path_problem(sys.executable)
    if why and local:
        # start script jobs through a link without the space (same venv)
        try:
            sys.executable = hwhost.space_free_interpreter()
        except (OSError, RuntimeError) as e:
            _host_fail(
                f"{why}, and no link around it could be made ({e}). Create the venv "
                "at a path without spaces (python3 -m venv ~/.venvs/hwlab) and run from it"
            )
    elif why:
        _host_fail(
            f"{why}; cluster jobs would fail. Create the venv at a path without spaces "
            "(python3 -m venv ~/.venvs/hwlab) and run from it"
        )


# ---- measuring jobs never overlap --------------------------------------------------
# Every measuring rule takes one unit of `measure`; unless the user (or a profile) sets
# it, the whole run has one unit, so `--cores N` never runs two benchmarks at once. Across
# Snakemake processes (two runs, two folders) the lock taken in scripts/_setup.py keeps
# them apart (hwlab/lock.py).
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
    backend="auto|gloo|nccl",
    world=r"\d+",


def repo_path(path):
    """A path from the config, relative to the workflow folder unless absolute."""
    p = Path(path)
    return str(p if p.is_absolute() else ROOT / p)


def code(*modules):
    """Package modules a rule's result depends on: editing one reruns the rule (mtime).

    Each rule lists the hwlab modules its job imports, transitively within hwlab, lazy
    imports in the functions it runs included ("hierarchy/table" names a subpackage's
    module). Not listed: hwlab/config.py (jobs use only its YAML reader: a change there
    changes no number) and the job plumbing every script loads (lock, logs, jobtimes).
    """
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


def _given_cores():
    try:
        return workflow.cores
    except WorkflowError:  # a cluster run without --cores
        return None


def measure_threads(wildcards=None):
    """Threads a measuring job claims: every core it uses, and when Snakemake runs it on
    this host, every core Snakemake was given (--cores above the CPU count included), so no
    light job (aggregation, figures) of this run is scheduled beside a measurement."""
    used = config["threads"] or len(os.sched_getaffinity(0))
    given = _given_cores() if workflow.local_exec else None
    return max(used, given or 0)


# ---- GEMM sweep ----------------------------------------------------------------------
def gemm_shapes():
    """Configured GEMM shapes by name."""
    return {s["name"]: s for s in config["gemm"]["shapes"]}


def gemm_point_files():
    g = config["gemm"]
    return [
        f"{RES}/gemm/{shape}/{dtype}/{l2}/m{m}.json"
        for shape in gemm_shapes()
        for dtype in g["dtypes"]
        for l2 in g["l2"]
        for m in g["M"]
    ]


def gemm_sweep_outputs():
    """One record per M of a sweep; the sweep's wildcards stay open (shape, dtype, l2)."""
    return [
        f"{RES}/gemm/{{shape}}/{{dtype}}/{{l2}}/m{m}.json" for m in config["gemm"]["M"]
    ]


def _adaptive(section):
    return {k: section[k] for k in ("target_spread", "budget_s", "max_repeats")}


def gemm_sweep_params(wildcards):
    """Everything a sweep's records depend on (M in the order of the outputs)."""
    g = config["gemm"]
    shape = gemm_shapes()[wildcards.shape]
    return dict(
        shape=wildcards.shape,
        M=list(g["M"]),
        N=shape["N"],
        K=shape["K"],
        dtype=wildcards.dtype,
        l2=wildcards.l2,
        warmup=g["warmup"],
        repeats=g["repeats"],
        iters=g["iters"],
        flush_mb=g["flush_mb"],
        timing=g["timing"],
        seed=config["seed"],
        **_adaptive(g),
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
        **_adaptive(p),
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
        sdpa_backend=d["sdpa_backend"],
        dtype=config["model"]["dtype"],
        seed=config["seed"],
    )


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


# ---- graph-mode decode and the decode model (rules/decode_model.smk) -------------------
from hwlab import decode_graph as hwgraph
from hwlab import decode_ops as hwops


def graph_batches():
    """Batches decoded in graph mode too (none unless decode.mode has graph)."""
    return hwgraph.graph_batches(config["decode"])


def decode_files(kind, mode="eager"):
    """Per-batch decode files of one mode: kind json, kernels or trace."""
    suffix = {"json": "json", "kernels": "kernels.csv", "trace": "trace.json.gz"}[kind]
    if mode == "graph":
        return [f"{RES}/decode/graph/b{b}.{suffix}" for b in graph_batches()]
    return [f"{RES}/decode/b{b}.{suffix}" for b in config["decode"]["batches"]]


def decode_graph_params(wildcards):
    """What a graph-mode decode job depends on: the eager job's settings but the memory cap."""
    p = decode_params(wildcards)
    p.pop("memory_cap_mb")
    return p


def decode_model_batches():
    """Batches whose linears and attention are measured alone: 1 (the weights floor), every
    decode batch and every predicted one."""
    d, m = config["decode"], config["decode_model"]
    return sorted({1, *d["batches"], *m["predict_batches"]})


def decode_ops_params(wildcards=None):
    d, m = config["decode"], config["decode_model"]
    ctx = hwops.eager_context_len(d["prompt_len"], d["warmup_steps"], d["new_tokens"])
    static = hwgraph.cache_len(d["prompt_len"], d["new_tokens"], d["profile_steps"])
    attention = [
        dict(mode="eager", batch=b, kv_len=ctx, masked=False, cold=False)
        for b in decode_model_batches()
    ]
    attention += [
        dict(mode="graph", batch=b, kv_len=static, masked=True, cold=True)
        for b in graph_batches()
    ]
    return dict(
        dtype=config["model"]["dtype"],
        gemm_M=decode_model_batches(),
        attention=attention,
        warmup=m["warmup"],
        repeats=m["repeats"],
        iters=m["iters"],
        **_adaptive(m),
        seed=config["seed"],
    )


def decode_model_params(wildcards=None):
    m = config["decode_model"]
    return dict(
        fit_batches=hwgraph.fit_batches(config["decode"], m),
        predict_batches=m["predict_batches"],
        goal_pct=m["goal_pct"],
    )


def decode_model_targets():
    return [
        f"{RES}/tables/decode_model.csv",
        f"{RES}/tables/decode_model.md",
        f"{RES}/figures/decode_model.png",
        f"{RES}/figures/decode_model.svg",
    ]


# ---- Nsight Compute (Lab 1b) -----------------------------------------------------------
NCU_METRICS = repo_path("config/ncu_metrics.yaml")


def ncu_code():
    """Modules the capture job and its target process run."""
    return code(
        "ncu_capture",
        "ncu_target",
        "ncu",
        "formulas",
        "gemm",
        "dtypes",
        "device",
        "io",
        "model",
        "decode",
    )


def ncu_capture_files():
    return [f"{RES}/ncu/b{b}.json" for b in config["ncu"]["batches"]]


def ncu_gemm_files():
    g = config["gemm"]
    return [
        f"{RES}/ncu/gemm/{shape}/{dtype}/m{m}.json"
        for shape in gemm_shapes()
        for dtype in g["dtypes"]
        for m in config["ncu"]["gemm_M"]
    ]


def _ncu_common():
    n = config["ncu"]
    return dict(
        launch_count=n["launch_count"],
        clock_control=n["clock_control"],
        cache_control=n["cache_control"],
        ncu_path=n["ncu_path"],
        seed=config["seed"],
    )


def ncu_capture_params(wildcards):
    d, m = config["decode"], config["model"]
    return dict(
        batch=int(wildcards.batch),
        prompt_len=d["prompt_len"],
        warmup_steps=d["warmup_steps"],
        decode_steps=config["ncu"]["decode_steps"],
        model=m["name"],
        dtype=m["dtype"],
        sdpa_backend=d["sdpa_backend"],
        kernel_regex=config["ncu"]["kernel_regex"],
        **_ncu_common(),
    )


def ncu_gemm_params(wildcards):
    shape = gemm_shapes()[wildcards.shape]
    return dict(
        shape=wildcards.shape,
        M=int(wildcards.M),
        N=shape["N"],
        K=shape["K"],
        dtype=wildcards.dtype,
        **_ncu_common(),
    )


def ncu_targets():
    out = [f"{RES}/tables/{t}" for t in ("ncu.csv", "ncu_lab1b.md", "ncu_lab1b.csv")]
    out += [f"{RES}/figures/ncu_lab1b.png", f"{RES}/figures/ncu_lab1b.svg"]
    if config["ncu"]["gemm_M"]:
        out += [f"{RES}/tables/ncu_gemm.csv", f"{RES}/tables/ncu_gemm.md"]
    return out


# ---- AllReduce (Lab 3, §6) -------------------------------------------------------------
# One sweep per configured backend x world size. The file keeps the configured backend
# name (auto stays auto: it is decided at run time from device.json, nccl on a CUDA GPU,
# gloo otherwise); the record inside says which backend ran.


def allreduce_files():
    a = config["allreduce"]
    return [
        f"{RES}/allreduce/{b}-w{n}.json"
        for b in a["backends"]
        for n in a["world_sizes"]
    ]


def allreduce_uses_gpus(backend):
    """Whether a sweep will run on GPUs (NCCL), as far as the config tells at parse time."""
    return backend == "nccl" or (backend == "auto" and config["device"] == "cuda")


def allreduce_gpus(wildcards):
    """GPUs the sweep job asks its executor for: one per rank (all nodes) under NCCL."""
    return int(wildcards.world) if allreduce_uses_gpus(wildcards.backend) else 0


def allreduce_cluster_resources():
    """Several nodes: the job is started once (SLURM 'mpi' job, no srun around it) and
    starts one torchrun per node with srun itself; see README 'AllReduce across nodes'.
    """
    nodes = config["allreduce"]["nodes"]
    if nodes == 1:
        return {}
    return {"tasks": nodes, "tasks_per_gpu": 0, "mpi": "srun"}


def allreduce_params(wildcards):
    a = config["allreduce"]
    return dict(
        backend=wildcards.backend,
        world_size=int(wildcards.world),
        nodes=a["nodes"],
        dtype=a["dtype"],
        min_bytes=a["min_bytes"],
        max_bytes=a["max_bytes"],
        warmup=a["warmup"],
        iters=a["iters"],
        min_iters=a["min_iters"],
        budget_mb=a["budget_mb"],
        timeout_s=a["timeout_s"],
        rdzv_endpoint=a["rdzv_endpoint"],
    )


def napkin_tp_params(wildcards):
    return dict(config["allreduce"]["tp_napkin"])


def allreduce_targets():
    return [
        f"{RES}/tables/allreduce.csv",
        f"{RES}/tables/allreduce.md",
        f"{RES}/tables/allreduce_fit.csv",
        f"{RES}/figures/allreduce.png",
        f"{RES}/figures/allreduce.svg",
        f"{RES}/tables/napkin_tp.csv",
        f"{RES}/tables/napkin_tp.md",
    ]


# ---- memory hierarchy (§1) -------------------------------------------------------------


def hierarchy_code(*modules):
    """Modules of the hwlab.hierarchy subpackage a rule runs (editing one reruns it)."""
    return code("device", "formulas", "io") + [
        str(ROOT / "hwlab" / "hierarchy" / f"{m}.py") for m in ("__init__", *modules)
    ]


def hierarchy_params(wildcards=None):
    """Every hierarchy setting of the memory job (the GPU ones prefixed gpu_)."""
    h = config["hierarchy"]
    p = {k: v for k, v in h.items() if k not in ("gpu", "link_max_bytes")}
    p.update({f"gpu_{k}": v for k, v in h["gpu"].items()})
    p["seed"] = config["seed"]
    # one key order whatever the config file's: Snakemake compares params as written
    return dict(sorted(p.items()))


def hierarchy_link_params(wildcards=None):
    h = config["hierarchy"]
    return dict(
        link_max_bytes=h["link_max_bytes"],
        gpu_link_bytes=h["gpu"]["link_bytes"],
        repeats=h["repeats"],
    )


def hierarchy_targets():
    return [
        f"{RES}/tables/hierarchy.csv",
        f"{RES}/tables/hierarchy.md",
        f"{RES}/tables/hierarchy_points.csv",
        f"{RES}/figures/hierarchy.png",
        f"{RES}/figures/hierarchy.svg",
    ]


# ---- findings (the regenerated writeup) ------------------------------------------------


def compare_folder():
    """findings.compare_with as a path: relative to the working directory if it exists
    there, else to the workflow folder (config/reference/... ships with it); '' if unset.
    """
    cw = config["findings"]["compare_with"]
    if not cw or Path(cw).is_dir():
        return cw
    return repo_path(cw)


def compare_inputs(wildcards):
    """The other run's data files, so a change there reruns the comparison figures."""
    folder = compare_folder()
    return sorted(
        str(p)
        for p in Path(folder).rglob("*")
        if p.is_file() and p.suffix in (".json", ".csv") and "logs" not in p.parts
    )


def findings_targets():
    out = [f"{RES}/findings.md", f"{RES}/findings.json"]
    if config["findings"]["compare_with"]:
        out += [f"{RES}/figures/compare/{name}.png" for name in COMPARE_FIGURES]
    return out


COMPARE_FIGURES = (
    "roofline",
    "decode_sweep",
    "kernel_classes",
    "ncu_lab1b",
    "allreduce",
)


# ---- targets -------------------------------------------------------------------------
def analysis_targets():
    """Every stage's tables and figures, and the GEMM point records the findings also read:
    what the findings are written from. Being requested (through rule all), a deleted point
    record makes its sweep rerun even though the roofline table still exists."""
    return [
        f"{RES}/env.json",
        *gemm_point_files(),
        f"{RES}/tables/roofline.csv",
        f"{RES}/tables/roofline.md",
        f"{RES}/figures/roofline.png",
        f"{RES}/figures/roofline.svg",
        f"{RES}/tables/peaks.csv",
        f"{RES}/tables/peaks.md",
        f"{RES}/tables/napkin_decode.csv",
        f"{RES}/tables/napkin_decode.md",
        *decode_targets(),
        *decode_model_targets(),
        *ncu_targets(),
        *allreduce_targets(),
        *hierarchy_targets(),
    ]


def all_outputs():
    """The targets of the all rule: every stage's outputs and the regenerated writeup."""
    return [*analysis_targets(), *findings_targets()]


# ---- repair: what is missing or invalid is regenerated by the next run ----------------
# Snakemake regenerates a missing file only if a job that needs it has to run, or if it is
# a target: delete gemm/.../m16.json and, its table being up to date, Snakemake says
# "Nothing to be done" while the table keeps the old row. So every record an aggregation
# reads (the inputs of rules without wildcards under this run's folder that
# hwlab/records.py knows) is also a target of `all`: a missing one is regenerated, then
# what is made from it. Before the DAG is built, each existing record is validated (it
# parses, fits its schema, its keys match its path); an invalid one (truncated, a copy of
# another point) is moved aside (.NAME.invalid, kept for inspection, never deleted) and
# so regenerated the same way.


def _static_inputs(r):
    for f in r.input:
        if isinstance(f, str) and not callable(f):
            yield str(f)


def record_files():
    """Every record of this run an aggregation reads (see above), in rule order."""
    prefix, out = f"{RES}/", {}
    for r in workflow.rules:
        if r.has_wildcards() or r.name == "all":
            continue
        for path in _static_inputs(r):
            if path.startswith(prefix) and hwrecords.kind_of(path):
                out.setdefault(path, None)
    return list(out)


# Snakemake commands that parse the workflow but execute no job: nothing is moved or
# removed for them. At parse time Snakemake 9 tells only a dry run (output_settings); the
# others are read from the command line, as written in full (short flags also in a
# cluster such as -pS).
_NO_EXEC_FLAGS = set("""
    --dry-run --dryrun --touch --summary --detailed-summary --list-changes --lc
    --list-input-changes --li --list-params-changes --lp --list-untracked --lu
    --list-rules --list --list-target-rules --lt --dag --rulegraph --filegraph --d3dag
    --lint --print-compilation --archive --delete-all-output --delete-temp-output
    --unlock --cleanup-metadata --cm --cleanup-shadow --list-conda-envs
    --conda-create-envs-only --conda-cleanup-envs --container-cleanup-images
    --containerize --export-cwl --generate-unit-tests --report
    """.split())
_NO_EXEC_SHORT, _BOOL_SHORT = set("ntlSD"), set("hkfFvpa")


def executes_jobs(argv=None):
    """Whether this Snakemake command may execute jobs (not -n, --summary, --dag ...)."""
    settings = getattr(workflow, "output_settings", None)
    if settings is not None and settings.dryrun:
        return False
    for arg in sys.argv[1:] if argv is None else argv:
        if arg.split("=", 1)[0] in _NO_EXEC_FLAGS:
            return False
        if arg.startswith("-") and not arg.startswith("--"):
            for c in arg[1:]:  # a cluster of flags ends at the first that takes a value
                if c in _NO_EXEC_SHORT:
                    return False
                if c not in _BOOL_SHORT:
                    break
    return True


def repair_records():
    """Move invalid records aside so that this run regenerates them; returns them.

    A command that executes no job (a dry run, --summary ...) only says what a run would
    move aside, and sweeps nothing."""
    if not workflow.is_main_process:
        return {}
    if not executes_jobs():
        bad = {}
        for path in record_files():
            problem = hwrecords.problem(path)
            if problem not in (None, "missing"):
                bad[path] = problem
                print(
                    f"hwlab: {path} is {hwrecords.phrase(problem)}: a run that executes "
                    f"jobs (not this one) moves it aside to .{Path(path).name}.invalid "
                    "and regenerates it, then what is made from it.",
                    file=sys.stderr,
                )
        return bad
    # half-written files of jobs killed mid-write (atomic writes leave only .NAME.*.tmp,
    # never a partial result; one an hour old has no writer left)
    for f in hwlock.sweep_stale_files(RES, ".*.tmp", min_age_s=3600):
        print(
            f"hwlab: removed {f}, left by a job killed while writing.", file=sys.stderr
        )
    # scratch folders of AllReduce jobs killed by SIGKILL (their owner's flock is gone)
    for d in hwlock.sweep_stale(f"{RES}/allreduce", ".allreduce-"):
        print(
            f"hwlab: removed {d}, the scratch folder of a killed AllReduce job.",
            file=sys.stderr,
        )
    bad = {}
    for path in record_files():
        problem = hwrecords.problem(path)
        if problem is None or problem == "missing":
            continue
        aside = Path(path).with_name(f".{Path(path).name}.invalid")
        try:
            os.replace(path, aside)
        except OSError as e:
            _host_fail(
                f"{path} is {problem}, and it cannot be moved aside ({e.strerror})"
            )
        bad[path] = problem
        print(
            f"hwlab: {path} is {hwrecords.phrase(problem)}: moved aside to {aside.name}; this run "
            "regenerates it, then what is made from it.",
            file=sys.stderr,
        )
    return bad
