"""Job: the decode model -> tables/decode_model.csv|md, figures/decode_model.png|svg."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.decode_model import write_decode_model  # noqa: E402

write_decode_model(
    records=list(snakemake.input.records),
    kernels=list(snakemake.input.kernels),
    traces=list(snakemake.input.traces),
    graph_records=list(snakemake.input.graph_records),
    graph_kernels=list(snakemake.input.graph_kernels),
    graph_traces=list(snakemake.input.graph_traces),
    ops_json=snakemake.input.ops,
    peaks_json=snakemake.input.peaks,
    hardware_json=snakemake.input.hardware,
    classes_yaml=snakemake.input.classes,
    out=dict(snakemake.output.items()),
    **snakemake.params.model,
)
