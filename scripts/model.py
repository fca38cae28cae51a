"""Job: the model manifest (random architecture + seed, or a pinned hub snapshot)."""

import _setup  # noqa: F401

from hwlab.logs import to_log

to_log(snakemake.log[0])

from hwlab.model import write_manifest  # noqa: E402

write_manifest(
    snakemake.output.manifest,
    arch_file=snakemake.input.get("arch"),
    **snakemake.params.model,
)
