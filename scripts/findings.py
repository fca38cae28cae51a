"""Job: the writeup regenerated from this run -> findings.md, findings.json."""

from pathlib import Path

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.findings import write_findings  # noqa: E402

# the run folder is where device.json lives
run_folder = str(Path(snakemake.input.device).parent)
write_findings(
    run_folder,
    snakemake.output.md,
    snakemake.output.json,
    compare_with=snakemake.params.compare_with,
    # only the configured records: a file left from a batch no longer in the config is not read
    record_paths={
        stage: list(snakemake.input[f"{stage}_records"])
        for stage in ("gemm", "decode", "ncu", "allreduce")
    },
)
