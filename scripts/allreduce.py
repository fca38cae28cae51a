"""Job: one AllReduce sweep (torchrun) -> allreduce/{backend}-w{n}.json + .csv."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.allreduce import write_sweep  # noqa: E402

write_sweep(
    snakemake.output.sweep,
    snakemake.output.csv,
    device_json=snakemake.input.device,
    threads=snakemake.params.threads,
    **snakemake.params.sweep,
)
