"""Job: provenance of the run -> env.json."""

from pathlib import Path

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.provenance import write_env_json  # noqa: E402

write_env_json(
    snakemake.output.env,
    device_json=snakemake.input.device,
    hardware_json=snakemake.input.hardware,
    workflow_dir=Path(snakemake.scriptdir).parent,
    config_digest=snakemake.params.config_digest,
    snakemake_version=snakemake.params.snakemake_version,
)
