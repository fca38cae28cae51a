"""Job: bandwidth and latency by working set on the run's device -> hierarchy/memory.json."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.hierarchy.measure import write_memory_json  # noqa: E402

write_memory_json(
    snakemake.output.memory,
    device_json=snakemake.input.device,
    threads=snakemake.params.threads,
    **snakemake.params.sweep,
)
