"""Job: tables/ncu_gemm.csv, the true DRAM bytes of the captured GEMM points."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.ncu import write_gemm_table  # noqa: E402

write_gemm_table(
    list(snakemake.input.records),
    mapping_path=snakemake.input.metrics,
    csv=snakemake.output.csv,
    md=snakemake.output.md,
)
