"""Graph-mode decode (one job per graph batch), the decode step's operations measured alone
(one job), and the decode model: where decode time goes (§5)."""


localrules:
    decode_model,


rule decode_graph:
    """Graph-mode decode at one batch: the step compiled over a static cache (CUDA graphs on
    a GPU); compile time recorded apart from TPOT."""
    input:
        device=rules.device.output.device,
        manifest=rules.model.output.manifest,
        code=code(
            "ncu",
            "decode_graph",
            "decode",
            "model",
            "inventory",
            "device",
            "formulas",
            "dtypes",
            "io",
        ),
    output:
        record=f"{RES}/decode/graph/b{{batch}}.json",
        kernels=f"{RES}/decode/graph/b{{batch}}.kernels.csv",
        trace=f"{RES}/decode/graph/b{{batch}}.trace.json.gz",
    log:
        f"{RES}/logs/decode/graph/b{{batch}}.log",
    conda:
        ENV
    threads: measure_threads
    resources:
        measure=1,
        gpu=gpus(),
    params:
        decode=decode_graph_params,
        threads=config["threads"],
    script:
        "../scripts/decode_graph.py"


rule decode_ops:
    """Every linear of the model at M = each decode batch and SDPA at each decode shape,
    timed alone with the GEMM stage's op and timer (the decode model's inputs)."""
    input:
        device=rules.device.output.device,
        manifest=rules.model.output.manifest,
        code=code("decode_ops", "gemm", "device", "formulas", "dtypes", "io"),
    output:
        ops=f"{RES}/decode_model/ops.json",
    log:
        f"{RES}/logs/decode_model/ops.log",
    conda:
        ENV
    threads: measure_threads
    resources:
        measure=1,
        gpu=gpus(),
    params:
        ops=decode_ops_params,
        threads=config["threads"],
    script:
        "../scripts/decode_ops.py"


rule decode_model:
    """Where decode time goes: predicted terms per batch, fitted and held-out errors."""
    input:
        records=decode_files("json"),
        kernels=decode_files("kernels"),
        traces=decode_files("trace"),
        graph_records=decode_files("json", "graph"),
        graph_kernels=decode_files("kernels", "graph"),
        graph_traces=decode_files("trace", "graph"),
        ops=rules.decode_ops.output.ops,
        peaks=rules.peaks.output.peaks,
        hardware=rules.hardware.output.hardware,
        classes=repo_path(config["decode"]["kernel_classes"]),
        code=code(
            "catalog",
            "dtypes",
            "headlines",
            "napkin",
            "questions",
            "hierarchy/__init__",
            "hierarchy/knees",
            "hierarchy/table",
            "decode_model",
            "decode_tables",
            "inventory",
            "figures",
            "formulas",
            "io",
            "records",
        ),
    output:
        csv=report(
            f"{RES}/tables/decode_model.csv",
            caption="../report/decode_model_table.rst",
            category="Lab 1a — Decode",
        ),
        md=f"{RES}/tables/decode_model.md",
        png=report(
            f"{RES}/figures/decode_model.png",
            caption="../report/decode_model.rst",
            category="Lab 1a — Decode",
        ),
        svg=f"{RES}/figures/decode_model.svg",
    log:
        f"{RES}/logs/decode_model/model.log",
    conda:
        ENV
    params:
        model=decode_model_params,
    script:
        "../scripts/decode_model.py"
