"""Job: the Lab 1b figure from the Lab 1b table (or the reasons nothing was captured)."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.ncu_plot import write_lab1b_figure  # noqa: E402

write_lab1b_figure(
    snakemake.input.lab1b,
    list(snakemake.input.records),
    snakemake.output.png,
    snakemake.output.svg,
)
