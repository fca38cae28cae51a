"""hwlab: the lab "Week 2 — Hardware Foundations for Inference", measured on this machine.

snakemake --cores 1 all                                  # embedded CPU default
snakemake --cores 1 all --configfile config/h100.yaml    # the lab on an H100 / H200
snakemake --profile profiles/slurm all                   # on a SLURM cluster
"""

import os
import sys

# The hwlab package lives beside this file; the Snakefile imports only its light modules
# (never torch at parse time). Script jobs find it through scripts/_setup.py.
sys.path.insert(0, workflow.basedir)


from hwlab.config import ConfigError, load_yaml

# the embedded default, found beside this file whatever the working directory (-d); a
# YAML error in it names the file and the line (Snakemake's own message names neither)
try:
    load_yaml(os.path.join(workflow.basedir, "config", "config.yaml"), "config file")
except ConfigError as _e:
    sys.exit(f"hwlab: invalid configuration — nothing was run.\n  {_e}")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/env.smk"
include: "rules/gemm.smk"
include: "rules/model.smk"
include: "rules/decode.smk"
include: "rules/decode_model.smk"
include: "rules/ncu.smk"
include: "rules/allreduce.smk"
include: "rules/hierarchy.smk"
include: "rules/findings.smk"


# Light rules (aggregation, tables, figures) run on the submitting host under any executor;
# each stage file lists its own beside this one.
localrules:
    all,


# invalid records are moved aside, and every record is a target: what is missing or
# invalid is regenerated, then what is made from it (rules/common.smk, repair)
repair_records()


# before any job starts (and so before Snakemake removes any output): what the host
# cannot do (device: cuda without CUDA, an interpreter path with a space)
onstart:
    host_checks()


# a failed job's reason on the console, not only in its log
onerror:
    from hwlab.logs import failure_report

    for _line in failure_report(log):
        print(_line, file=sys.stderr)


rule all:
    default_target: True
    input:
        all_outputs(),
        record_files(),
