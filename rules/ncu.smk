"""Lab 1b: Nsight Compute capture of the attention kernel, parsed with ncu_report.

Captures run on GPU hosts with ncu; anywhere else each writes a record saying why it
skipped. The .ncu-rep beside a record exists only when it captured, so the record (always
written) is the declared output and names its report; the table rules read both.
"""


localrules:
    ncu_tables,
    ncu_gemm_table,
    ncu_figure,


rule ncu_capture:
    """Decode steps at one batch under ncu (attention kernels), or the reason it skipped."""
    input:
        device=rules.device.output.device,
        metrics=NCU_METRICS,
        manifest=rules.model.output.manifest,
        code=ncu_code(),
    output:
        record=f"{RES}/ncu/b{{batch}}.json",
    log:
        f"{RES}/logs/ncu/b{{batch}}.log",
    conda:
        ENV
    threads: measure_threads
    resources:
        measure=1,
        gpu=gpus("gpu_only"),
    params:
        capture=ncu_capture_params,
    script:
        "../scripts/ncu_capture.py"


rule ncu_gemm_capture:
    """One GEMM sweep point's kernels under ncu (true DRAM bytes), or why not."""
    input:
        device=rules.device.output.device,
        metrics=NCU_METRICS,
        code=ncu_code(),
    output:
        record=f"{RES}/ncu/gemm/{{shape}}/{{dtype}}/m{{M}}.json",
    log:
        f"{RES}/logs/ncu/gemm/{{shape}}/{{dtype}}/m{{M}}.log",
    conda:
        ENV
    threads: measure_threads
    resources:
        measure=1,
        gpu=gpus("gpu_only"),
    params:
        capture=ncu_gemm_params,
    script:
        "../scripts/ncu_gemm_capture.py"


rule ncu_tables:
    """tables/ncu.csv (tidy, every captured launch) and the Lab 1b table."""
    input:
        records=ncu_capture_files(),
        metrics=NCU_METRICS,
        code=code("dtypes", "ncu", "formulas", "io", "records"),
    output:
        csv=report(
            f"{RES}/tables/ncu.csv",
            caption="../report/ncu.rst",
            category="Lab 1b — Nsight Compute",
        ),
        md=f"{RES}/tables/ncu_lab1b.md",
        lab1b=report(
            f"{RES}/tables/ncu_lab1b.csv",
            caption="../report/ncu_lab1b.rst",
            category="Lab 1b — Nsight Compute",
        ),
    log:
        f"{RES}/logs/ncu_tables.log",
    conda:
        ENV
    script:
        "../scripts/ncu_tables.py"


rule ncu_gemm_table:
    """tables/ncu_gemm.csv: true DRAM bytes of the captured GEMM points."""
    input:
        records=ncu_gemm_files(),
        metrics=NCU_METRICS,
        code=code("ncu", "formulas", "dtypes", "io", "records"),
    output:
        csv=report(
            f"{RES}/tables/ncu_gemm.csv",
            caption="../report/ncu_gemm.rst",
            category="Lab 2 — Roofline",
        ),
        md=f"{RES}/tables/ncu_gemm.md",
    log:
        f"{RES}/logs/ncu_gemm_table.log",
    conda:
        ENV
    script:
        "../scripts/ncu_gemm_table.py"


rule ncu_figure:
    """Lab 1b figure: Speed-of-Light per batch and the batch-over-batch multipliers."""
    input:
        lab1b=rules.ncu_tables.output.lab1b,
        records=ncu_capture_files(),
        code=code("ncu_plot", "figures", "io", "records"),
    output:
        png=report(
            f"{RES}/figures/ncu_lab1b.png",
            caption="../report/ncu_figure.rst",
            category="Lab 1b — Nsight Compute",
        ),
        svg=f"{RES}/figures/ncu_lab1b.svg",
    log:
        f"{RES}/logs/ncu_figure.log",
    conda:
        ENV
    script:
        "../scripts/ncu_figure.py"
