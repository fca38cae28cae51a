"""§1: the memory hierarchy measured by working set, knees, the table and figure."""


localrules:
    hierarchy_table,


rule hierarchy_memory:
    """Bandwidth (read, copy) and latency (pointer chase) by working set on the run's device."""
    input:
        device=rules.device.output.device,
        code=hierarchy_code("measure", "cpu", "gpu"),
    output:
        memory=f"{RES}/hierarchy/memory.json",
    log:
        f"{RES}/logs/hierarchy/memory.log",
    conda:
        ENV
    threads: measure_threads
    resources:
        measure=1,
        gpu=gpus(),
    params:
        sweep=hierarchy_params,
        threads=config["threads"],
    script:
        "../scripts/hierarchy_memory.py"


rule hierarchy_link:
    """Host↔device (pinned, pageable) and peer-to-peer copies; skipped on a CPU host."""
    input:
        device=rules.device.output.device,
        code=hierarchy_code("measure", "gpu"),
    output:
        link=f"{RES}/hierarchy/link.json",
    log:
        f"{RES}/logs/hierarchy/link.log",
    conda:
        ENV
    threads: measure_threads
    resources:
        measure=1,
        gpu=gpus(),
    params:
        link=hierarchy_link_params,
    script:
        "../scripts/hierarchy_link.py"


rule hierarchy_table:
    """§1 table (CSV + Markdown) beside the writeup's H100 row, every point, the figure."""
    input:
        memory=rules.hierarchy_memory.output.memory,
        link=rules.hierarchy_link.output.link,
        device=rules.device.output.device,
        hardware=rules.hardware.output.hardware,
        catalog=repo_path("config/hardware.yaml"),
        code=hierarchy_code("table", "knees")
        + code("figures", "catalog", "io", "records"),
    output:
        csv=report(
            f"{RES}/tables/hierarchy.csv",
            caption="../report/hierarchy_table.rst",
            category="§1 — Memory hierarchy",
        ),
        md=f"{RES}/tables/hierarchy.md",
        points=f"{RES}/tables/hierarchy_points.csv",
        analysis=f"{RES}/hierarchy/analysis.json",
        png=report(
            f"{RES}/figures/hierarchy.png",
            caption="../report/hierarchy.rst",
            category="§1 — Memory hierarchy",
        ),
        svg=f"{RES}/figures/hierarchy.svg",
    log:
        f"{RES}/logs/hierarchy/table.log",
    conda:
        ENV
    script:
        "../scripts/hierarchy_table.py"
