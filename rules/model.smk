"""Model acquisition: random weights from an architecture file, or a pinned hub snapshot."""


rule model:
    """The model's manifest: architecture digest, seed and parameter count (random), or the
    snapshot of a pinned hub revision (hub). Shared by every run, cached under resources/.
    """
    input:
        unpack(model_inputs),
        code=code("model", "dtypes", "io"),
    output:
        manifest=f"{MODEL_DIR}/manifest.json",
    log:
        f"resources/logs/model-{config['model']['name']}.log",
    conda:
        ENV
    params:
        model=model_params,
    script:
        "../scripts/model.py"
