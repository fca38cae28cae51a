"""Lab 2: one job per GEMM sweep (shape x dtype x L2 mode), one record per point (M)."""


rule gemm_sweep:
    """Time every M of one GEMM sweep (warm or cold L2) on the run's device."""
    input:
        device=rules.device.output.device,
        code=code("gemm", "device", "formulas", "dtypes", "io"),
    output:
        points=gemm_sweep_outputs(),
    log:
        f"{RES}/logs/gemm/{{shape}}/{{dtype}}/{{l2}}.log",
    conda:
        ENV
    threads: measure_threads
    resources:
        measure=1,
        gpu=gpus(),
    params:
        sweep=gemm_sweep_params,
        threads=config["threads"],
    script:
        "../scripts/gemm_sweep.py"
