"""Job: the decode napkin table for every catalog device x model x precision."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.napkin import write_napkin_decode  # noqa: E402

write_napkin_decode(
    snakemake.output.csv,
    snakemake.output.md,
    catalog_path=snakemake.input.catalog,
    kv_headroom=snakemake.params.kv_headroom,
)
