"""Job: this machine's measured compute and memory ceilings -> peaks.json."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.peaks import write_peaks_json  # noqa: E402

write_peaks_json(
    snakemake.output.peaks,
    device_json=snakemake.input.device,
    threads=snakemake.params.threads,
    **snakemake.params.peaks,
)
