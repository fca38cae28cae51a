"""Job: time one GEMM sweep -> gemm/{shape}/{dtype}/{l2}/m{M}.json for every M."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.gemm import write_sweep_json  # noqa: E402

write_sweep_json(
    list(snakemake.output.points),
    device_json=snakemake.input.device,
    threads=snakemake.params.threads,
    **snakemake.params.sweep,
)
