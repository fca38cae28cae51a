"""Lab 3: AllReduce sweep through torchrun (gloo on CPU, NCCL on GPUs), TP napkin math (§6)."""


localrules:
    allreduce_table,
    napkin_tp,


rule allreduce:
    """One AllReduce sweep over message sizes for one backend and world size."""
    input:
        device=rules.device.output.device,
        code=code("allreduce", "device", "formulas", "io"),
    output:
        sweep=f"{RES}/allreduce/{{backend}}-w{{world}}.json",
        csv=f"{RES}/allreduce/{{backend}}-w{{world}}.csv",
    log:
        f"{RES}/logs/allreduce/{{backend}}-w{{world}}.log",
    conda:
        ENV
    threads: measure_threads
    resources:
        **allreduce_cluster_resources(),
        measure=1,
        gpu=allreduce_gpus,
        nodes=config["allreduce"]["nodes"],
    params:
        sweep=allreduce_params,
        threads=config["threads"],
    script:
        "../scripts/allreduce.py"


rule allreduce_table:
    """Lab 3 table, alpha-beta fit and knee, busbw figure from every sweep."""
    input:
        sweeps=allreduce_files(),
        code=code(
            "allreduce_table", "alphabeta", "figures", "formulas", "io", "records"
        ),
    output:
        csv=report(
            f"{RES}/tables/allreduce.csv",
            caption="../report/allreduce_table.rst",
            category="Lab 3 — AllReduce",
        ),
        md=f"{RES}/tables/allreduce.md",
        fit=report(
            f"{RES}/tables/allreduce_fit.csv",
            caption="../report/allreduce_fit.rst",
            category="Lab 3 — AllReduce",
        ),
        png=report(
            f"{RES}/figures/allreduce.png",
            caption="../report/allreduce.rst",
            category="Lab 3 — AllReduce",
        ),
        svg=f"{RES}/figures/allreduce.svg",
    log:
        f"{RES}/logs/allreduce_table.log",
    conda:
        ENV
    script:
        "../scripts/allreduce_table.py"


rule napkin_tp:
    """§6: TP AllReduce traffic per forward pass, priced at the writeup's, the catalog's and
    this run's bus bandwidth."""
    input:
        fit=rules.allreduce_table.output.fit,
        device=rules.device.output.device,
        hardware=rules.hardware.output.hardware,
        catalog=repo_path("config/hardware.yaml"),
        code=code("napkin", "formulas", "catalog", "io", "records"),
    output:
        csv=report(
            f"{RES}/tables/napkin_tp.csv",
            caption="../report/napkin_tp.rst",
            category="§6 — TP communication",
        ),
        md=f"{RES}/tables/napkin_tp.md",
    log:
        f"{RES}/logs/napkin_tp.log",
    conda:
        ENV
    params:
        napkin=napkin_tp_params,
    script:
        "../scripts/napkin_tp.py"
