"""Job: time one GEMM sweep point -> gemm/{shape}/{dtype}/{l2}/m{M}.json."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.gemm import write_point_json  # noqa: E402

write_point_json(
    snakemake.output.point,
    device_json=snakemake.input.device,
    threads=snakemake.params.threads,
    **snakemake.params.point,
)
