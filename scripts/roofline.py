"""Job: Lab 2 roofline table and figure from the sweep points."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.roofline import write_roofline  # noqa: E402

write_roofline(
    list(snakemake.input.points),
    peaks_json=snakemake.input.peaks,
    device_json=snakemake.input.device,
    hardware_json=snakemake.input.hardware,
    csv=snakemake.output.csv,
    md=snakemake.output.md,
    png=snakemake.output.png,
    svg=snakemake.output.svg,
    peaks_csv=snakemake.output.peaks_csv,
    peaks_md=snakemake.output.peaks_md,
)
