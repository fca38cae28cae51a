"""Aggregation: tables and figures from the cached intermediate files."""


localrules:
    roofline,
    napkin_decode,


rule roofline:
    """Lab 2 table (CSV + Markdown) and roofline figure from all sweep points."""
    input:
        points=gemm_point_files(),
        peaks=rules.peaks.output.peaks,
        device=rules.device.output.device,
        code=code("roofline", "peaks", "figures", "formulas", "io", "catalog"),
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
        code=code("napkin", "catalog", "formulas", "io"),
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
    script:
        "../scripts/napkin_decode.py"
