"""Job: the decode step's linears and SDPA timed alone -> decode_model/ops.json."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.decode_ops import write_ops_json  # noqa: E402

write_ops_json(
    snakemake.output.ops,
    device_json=snakemake.input.device,
    manifest=snakemake.input.manifest,
    threads=snakemake.params.threads,
    **snakemake.params.ops,
)
