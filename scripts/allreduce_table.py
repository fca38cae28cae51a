"""Job: Lab 3 table, alpha-beta fit and figure from every AllReduce sweep."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.allreduce_table import write_allreduce  # noqa: E402

write_allreduce(
    list(snakemake.input.sweeps),
    csv=snakemake.output.csv,
    md=snakemake.output.md,
    fit_csv=snakemake.output.fit,
    png=snakemake.output.png,
    svg=snakemake.output.svg,
)
