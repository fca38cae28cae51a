"""Job: detect the device -> device.json."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.device import write_device_json  # noqa: E402

write_device_json(snakemake.output.device, requested=snakemake.params.requested)
