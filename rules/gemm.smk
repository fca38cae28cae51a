"""Lab 2: one job per GEMM sweep point (shape x dtype x L2 mode x M)."""


rule gemm_point:
    """Time one GEMM point (warm or cold L2) on the run's device."""
    input:
        device=rules.device.output.device,
        code=code("gemm", "device", "formulas", "dtypes", "io"),
    output:
        point=f"{RES}/gemm/{{shape}}/{{dtype}}/{{l2}}/m{{M}}.json",
    log:
        f"{RES}/logs/gemm/{{shape}}/{{dtype}}/{{l2}}/m{{M}}.log",
    conda:
        ENV
    threads: measure_threads
    resources:
        measure=1,
        gpu=gpus(),
    params:
        point=gemm_point_params,
        threads=config["threads"],
    script:
        "../scripts/gemm_point.py"
