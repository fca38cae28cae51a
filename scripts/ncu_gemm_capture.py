"""Job: one GEMM point under ncu -> ncu/gemm/{shape}/{dtype}/m{M}.json (+ .ncu-rep)."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.ncu_capture import capture_gemm  # noqa: E402

capture_gemm(
    snakemake.output.record,
    device_json=snakemake.input.device,
    mapping_path=snakemake.input.metrics,
    **snakemake.params.capture,
)
