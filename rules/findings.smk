"""Aggregation: tables and figures from the cached intermediate files."""


localrules:
    roofline,
    napkin_decode,
    findings,
    compare_figures,


rule roofline:
    """Lab 2 table (CSV + Markdown) and roofline figure from all sweep points."""
    input:
        points=gemm_point_files(),
        peaks=rules.peaks.output.peaks,
        device=rules.device.output.device,
        hardware=rules.hardware.output.hardware,
        code=code(
            "device",
            "dtypes",
            "gemm",
            "roofline",
            "peaks",
            "figures",
            "formulas",
            "io",
            "catalog",
            "records",
        ),
    output:
        csv=report(
            f"{RES}/tables/roofline.csv",
            caption="../report/roofline_table.rst",
            category="Lab 2 — Roofline",
        ),
        md=f"{RES}/tables/roofline.md",
        png=report(
            f"{RES}/figures/roofline.png",
            caption="../report/roofline.rst",
            category="Lab 2 — Roofline",
        ),
        svg=f"{RES}/figures/roofline.svg",
        peaks_csv=report(
            f"{RES}/tables/peaks.csv",
            caption="../report/peaks.rst",
            category="Lab 2 — Roofline",
        ),
        peaks_md=f"{RES}/tables/peaks.md",
    log:
        f"{RES}/logs/roofline.log",
    conda:
        ENV
    script:
        "../scripts/roofline.py"


rule napkin_decode:
    """§4, §5, §7, §8: decode napkin for every catalog device x model size x precision."""
    input:
        catalog=repo_path("config/hardware.yaml"),
        code=code("records", "napkin", "catalog", "formulas", "io"),
    output:
        csv=report(
            f"{RES}/tables/napkin_decode.csv",
            caption="../report/napkin_decode.rst",
            category="Napkin models",
        ),
        md=f"{RES}/tables/napkin_decode.md",
    log:
        f"{RES}/logs/napkin_decode.log",
    conda:
        ENV
    params:
        kv_headroom=config["napkin"]["kv_headroom"],
    script:
        "../scripts/napkin_decode.py"


rule findings:
    """The writeup regenerated from this run: findings.md and the headline statements."""
    input:
        analysis_targets(),
        device=rules.device.output.device,
        hardware=rules.hardware.output.hardware,
        peaks=rules.peaks.output.peaks,
        gemm_records=gemm_point_files(),
        decode_records=decode_files("json"),
        ncu_records=ncu_capture_files(),
        allreduce_records=allreduce_files(),
        code=code(
            "allreduce_table",
            "alphabeta",
            "dtypes",
            "figures",
            "gemm",
            "ncu_plot",
            "findings",
            "records",
            "headlines",
            "decode_findings",
            "decode_model",
            "roofline",
            "decode_tables",
            "inventory",
            "peaks",
            "formulas",
            "io",
            "questions",
            "napkin",
            "catalog",
        )
        + hierarchy_code("knees", "report", "table"),
        catalog=repo_path("config/hardware.yaml"),
    output:
        md=report(
            f"{RES}/findings.md",
            caption="../report/findings.rst",
            category="Findings",
        ),
        json=f"{RES}/findings.json",
    log:
        f"{RES}/logs/findings.log",
    conda:
        ENV
    params:
        compare_with=config["findings"]["compare_with"],
    script:
        "../scripts/findings.py"


rule compare_figures:
    """Every figure of this run with findings.compare_with overlaid."""
    input:
        analysis_targets(),
        other=compare_inputs,
        device=rules.device.output.device,
        hardware=rules.hardware.output.hardware,
        code=code(
            "alphabeta",
            "catalog",
            "decode_findings",
            "decode_model",
            "device",
            "dtypes",
            "formulas",
            "gemm",
            "headlines",
            "inventory",
            "napkin",
            "peaks",
            "questions",
            "hierarchy/__init__",
            "hierarchy/knees",
            "hierarchy/report",
            "hierarchy/table",
            "findings",
            "records",
            "roofline",
            "decode_tables",
            "ncu_plot",
            "allreduce_table",
            "figures",
            "io",
        ),
    output:
        figures=report(
            expand(f"{RES}/figures/compare/{{name}}.png", name=COMPARE_FIGURES),
            caption="../report/compare.rst",
            category="Comparison",
        ),
    log:
        f"{RES}/logs/compare_figures.log",
    conda:
        ENV
    params:
        other=compare_folder(),
    script:
        "../scripts/compare_figures.py"
