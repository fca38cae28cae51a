"""Job: host↔device and peer-to-peer copy bandwidth -> hierarchy/link.json (CUDA only)."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.hierarchy.measure import write_link_json  # noqa: E402

write_link_json(snakemake.output.link, device_json=snakemake.input.device, **snakemake.params.link)
