"""Job: the §1 table, every sweep point and the hierarchy figure."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.hierarchy.table import write_hierarchy_tables  # noqa: E402

write_hierarchy_tables(
    memory_json=snakemake.input.memory,
    link_json=snakemake.input.link,
    device_json=snakemake.input.device,
    hardware_json=snakemake.input.hardware,
    catalog=snakemake.input.catalog,
    csv=snakemake.output.csv,
    md=snakemake.output.md,
    points_csv=snakemake.output.points,
    analysis_json=snakemake.output.analysis,
    png=snakemake.output.png,
    svg=snakemake.output.svg,
)
