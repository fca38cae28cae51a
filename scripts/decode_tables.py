"""Job: decode sweep table, kernel inventory, Lab 1a summary and figures."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.decode_tables import write_decode_tables  # noqa: E402

write_decode_tables(
    list(snakemake.input.records),
    list(snakemake.input.kernels),
    peaks_json=snakemake.input.peaks,
    device_json=snakemake.input.device,
    hardware_json=snakemake.input.hardware,
    classes_yaml=snakemake.input.classes,
    manifest_json=snakemake.input.manifest,
    out=dict(snakemake.output.items()),
    traces=list(snakemake.input.traces),
    graph_records=list(snakemake.input.graph),
    **snakemake.params.tables,
)
