"""Job: every figure of this run with another run overlaid -> figures/compare/*.png."""

from pathlib import Path

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.findings import write_compare_figures  # noqa: E402

write_compare_figures(
    str(Path(snakemake.input.device).parent),
    snakemake.params.other,
    str(Path(snakemake.output.figures[0]).parent),
)
