"""Decode profiling at each batch: TPOT, throughput, kernel inventory, GPU-Util (Lab 1a, §5)."""


rule decode_batch:
    """Decode at one batch: prefill, timed decode steps, a profiled window, NVML samples."""
    input:
        device=rules.device.output.device,
        manifest=rules.model.output.manifest,
        code=code(
            "decode", "model", "inventory", "ncu", "device", "formulas", "dtypes", "io"
        ),
    output:
        record=f"{RES}/decode/b{{batch}}.json",
        kernels=f"{RES}/decode/b{{batch}}.kernels.csv",
        trace=f"{RES}/decode/b{{batch}}.trace.json.gz",
    log:
        f"{RES}/logs/decode/b{{batch}}.log",
    conda:
        ENV
    threads: measure_threads
    resources:
        measure=1,
        gpu=gpus(),
    params:
        decode=decode_params,
        threads=config["threads"],
    script:
        "../scripts/decode_batch.py"


rule decode_tables:
    """Decode sweep table and figure, kernel inventory and class shares, Lab 1a summary."""
    input:
        records=decode_files("json"),
        kernels=decode_files("kernels"),
        traces=decode_files("trace"),
        peaks=rules.peaks.output.peaks,
        device=rules.device.output.device,
        hardware=rules.hardware.output.hardware,
        classes=repo_path(config["decode"]["kernel_classes"]),
        manifest=rules.model.output.manifest,
        graph=decode_files("json", "graph"),
        code=code(
            "catalog",
            "headlines",
            "napkin",
            "hierarchy/__init__",
            "hierarchy/knees",
            "hierarchy/table",
            "decode_tables",
            "inventory",
            "figures",
            "formulas",
            "io",
            "questions",
            "records",
        ),
    output:
        decode_csv=report(
            f"{RES}/tables/decode.csv",
            caption="../report/decode_table.rst",
            category="Lab 1a — Decode",
        ),
        decode_md=f"{RES}/tables/decode.md",
        inventory_csv=report(
            f"{RES}/tables/kernel_inventory.csv",
            caption="../report/kernel_inventory.rst",
            category="Lab 1a — Decode",
        ),
        classes_csv=f"{RES}/tables/kernel_classes.csv",
        lab1a_md=report(
            f"{RES}/tables/lab1a.md",
            caption="../report/lab1a.rst",
            category="Lab 1a — Decode",
        ),
        sweep_png=report(
            f"{RES}/figures/decode_sweep.png",
            caption="../report/decode_sweep.rst",
            category="Lab 1a — Decode",
        ),
        sweep_svg=f"{RES}/figures/decode_sweep.svg",
        classes_png=report(
            f"{RES}/figures/kernel_classes.png",
            caption="../report/kernel_classes.rst",
            category="Lab 1a — Decode",
        ),
        classes_svg=f"{RES}/figures/kernel_classes.svg",
    log:
        f"{RES}/logs/decode_tables.log",
    conda:
        ENV
    params:
        tables=decode_tables_params,
    script:
        "../scripts/decode_tables.py"
