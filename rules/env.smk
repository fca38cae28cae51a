"""The run's device, its catalog entry, provenance and measured ceilings."""

import snakemake as _smk


localrules:
    hardware,


rule device:
    """Detect the device (what every measuring job depends on)."""
    input:
        code=code("device", "io"),
    output:
        device=f"{RES}/device.json",
    log:
        f"{RES}/logs/device.log",
    conda:
        ENV
    resources:
        gpu=gpus(),
    params:
        requested=config["device"],
    script:
        "../scripts/device.py"


rule hardware:
    """Match the detected device to the hardware catalog (what tables and findings compare
    with). Apart from device.json, so `hardware:` or a catalog edit re-measures nothing.
    """
    input:
        device=rules.device.output.device,
        catalog=repo_path("config/hardware.yaml"),
        code=code("catalog", "records", "io"),
    output:
        hardware=f"{RES}/hardware.json",
    log:
        f"{RES}/logs/hardware.log",
    conda:
        ENV
    params:
        hardware=config["hardware"],
    script:
        "../scripts/hardware.py"


rule provenance:
    """env.json: what ran, where, with which software and code."""
    input:
        device=rules.device.output.device,
        hardware=rules.hardware.output.hardware,
        code=code("provenance", "records", "io"),
    output:
        env=f"{RES}/env.json",
    log:
        f"{RES}/logs/provenance.log",
    conda:
        ENV
    params:
        config_digest=hwconfig.config_digest(config),
        snakemake_version=_smk.__version__,
    script:
        "../scripts/provenance.py"


rule peaks:
    """This machine's measured ceilings: a large GEMM per dtype and STREAM copy/triad."""
    input:
        device=rules.device.output.device,
        code=code("dtypes", "peaks", "gemm", "device", "formulas", "io"),
    output:
        peaks=f"{RES}/peaks.json",
    log:
        f"{RES}/logs/peaks.log",
    conda:
        ENV
    threads: measure_threads
    resources:
        measure=1,
        gpu=gpus(),
    params:
        peaks=peaks_params,
        threads=config["threads"],
    script:
        "../scripts/peaks.py"
