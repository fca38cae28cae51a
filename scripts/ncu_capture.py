"""Job: Lab 1b capture at one batch -> ncu/b{batch}.json (+ ncu/b{batch}.ncu-rep if captured)."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.ncu_capture import capture_decode  # noqa: E402

capture_decode(
    snakemake.output.record,
    device_json=snakemake.input.device,
    mapping_path=snakemake.input.metrics,
    manifest=snakemake.input.manifest,
    **snakemake.params.capture,
)
