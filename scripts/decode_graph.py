"""Job: graph decode, one batch -> decode/graph/b{batch}.json, .kernels.csv, .trace.json.gz."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.decode_graph import run_graph_batch  # noqa: E402

run_graph_batch(
    out_json=snakemake.output.record,
    out_kernels=snakemake.output.kernels,
    out_trace=snakemake.output.trace,
    device_json=snakemake.input.device,
    manifest=snakemake.input.manifest,
    threads=snakemake.params.threads,
    **snakemake.params.decode,
)
