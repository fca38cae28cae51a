"""The run's device, provenance and measured ceilings."""

import snakemake as _smk


rule device:
    """Detect the device and match it to the hardware catalog."""
    input:
        catalog=repo_path("config/hardware.yaml"),
        code=code("device", "catalog", "io"),
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
        hardware=config["hardware"],
    script:
        "../scripts/device.py"


rule provenance:
    """env.json: what ran, where, with which software and code."""
    input:
        device=rules.device.output.device,
        code=code("provenance", "io"),
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
        code=code("peaks", "gemm", "device", "formulas", "io"),
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
