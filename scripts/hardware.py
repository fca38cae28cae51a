"""Job: match the detected device to the hardware catalog -> hardware.json."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.catalog import write_hardware_json  # noqa: E402

write_hardware_json(
    snakemake.output.hardware,
    device_json=snakemake.input.device,
    hardware=snakemake.params.hardware,
    catalog_path=snakemake.input.catalog,
)
