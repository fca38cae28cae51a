"""Job: tables/ncu.csv (every captured launch) and the Lab 1b table from the captures."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.ncu import write_decode_tables  # noqa: E402

write_decode_tables(
    list(snakemake.input.records),
    mapping_path=snakemake.input.metrics,
    csv=snakemake.output.csv,
    md=snakemake.output.md,
    lab1b_csv=snakemake.output.lab1b,
)
