"""Job: §6 TP communication napkin -> tables/napkin_tp.csv + .md."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.napkin import write_napkin_tp  # noqa: E402

write_napkin_tp(
    snakemake.output.csv,
    snakemake.output.md,
    fit_csv=snakemake.input.fit,
    device_json=snakemake.input.device,
    hardware_json=snakemake.input.hardware,
    catalog_path=snakemake.input.catalog,
    **snakemake.params.napkin,
)
