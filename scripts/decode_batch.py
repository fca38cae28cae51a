"""Job: decode at one batch -> decode/b{batch}.json, .kernels.csv, .trace.json.gz."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.decode import run_batch  # noqa: E402

run_batch(
    out_json=snakemake.output.record,
    out_kernels=snakemake.output.kernels,
    out_trace=snakemake.output.trace,
    device_json=snakemake.input.device,
    manifest=snakemake.input.manifest,
    threads=snakemake.params.threads,
    **snakemake.params.decode,
)
