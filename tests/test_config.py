"""Config validation: the schema's defaults are the embedded default; bad input fails before
any job with one paragraph naming the key, and no traceback."""

import copy
import json

import jsonschema
import pytest
import yaml
from helpers import REPO, smk, write_config

from hwlab.config import (
    ConfigError,
    catalog_errors,
    key_path,
    load_yaml,
    metrics_errors,
    schema_error_message,
    semantic_errors,
    validate,
)
from hwlab.host import interpreter_path_problem
from hwlab.model import arch_errors

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _with_defaults(instance):
    """Fill defaults like snakemake.utils.validate(set_default=True)."""
    base = jsonschema.Draft202012Validator
    validate_props = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, inst, schema):
        for prop, sub in properties.items():
            if "default" in sub and isinstance(inst, dict):
                inst.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_props(validator, properties, inst, schema)

    v = jsonschema.validators.extend(base, {"properties": set_defaults})
    v(SCHEMA).validate(instance)
    return instance


def _props(schema, path=""):
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}{name}", sub
        yield from _props(sub, f"{path}{name}.")


def test_schema_defaults_are_the_embedded_default():
    assert _with_defaults({}) == DEFAULT


def test_every_property_has_description_and_default():
    for name, sub in _props(SCHEMA):
        assert "description" in sub, name
        assert "default" in sub, name


def test_default_config_is_valid():
    jsonschema.Draft202012Validator(SCHEMA).validate(DEFAULT)
    assert semantic_errors(DEFAULT, REPO, ["h100_sxm"]) == []


def test_h100_config_is_valid():
    cfg = yaml.safe_load((REPO / "config" / "h100.yaml").read_text())
    merged = copy.deepcopy(DEFAULT)
    for k, v in cfg.items():
        merged[k] = {**merged[k], **v} if isinstance(v, dict) else v
    jsonschema.Draft202012Validator(SCHEMA).validate(merged)
    assert merged["gemm"]["M"] == [2**i for i in range(12)]
    assert (merged["gemm"]["repeats"], merged["gemm"]["iters"]) == (5, 200)
    assert semantic_errors(merged, REPO, ["h100_sxm"]) == []


def test_key_path():
    assert key_path(["gemm", "M", 2]) == "gemm.M[2]"
    assert key_path([]) == "(top level)"


def _error_for(cfg):
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(cfg))
    return schema_error_message(err, SCHEMA)


def test_schema_messages_name_the_key():
    cfg = copy.deepcopy(DEFAULT)
    cfg["gemm"]["M"] = [1, 4, -4]
    assert _error_for(cfg).startswith("gemm.M[2]: -4 is less than the minimum of 1")
    cfg = copy.deepcopy(DEFAULT)
    cfg["gemm"]["colour"] = "red"
    msg = _error_for(cfg)
    assert msg.startswith("gemm.colour: unknown key 'colour'")


def test_semantic_errors():
    cfg = copy.deepcopy(DEFAULT)
    cfg["hardware"] = "tpu_v9"
    cfg["decode"]["lab1a_batches"] = [1, 3]
    cfg["gemm"]["shapes"] = [{"name": "a", "N": 8, "K": 8}, {"name": "a", "N": 16, "K": 8}]
    cfg["allreduce"]["min_bytes"] = 1024
    cfg["allreduce"]["max_bytes"] = 8
    errs = semantic_errors(cfg, REPO, ["h100_sxm"])
    assert any(e.startswith("hardware: 'tpu_v9'") for e in errs)
    assert any(e.startswith("decode.lab1a_batches") for e in errs)
    assert any(e.startswith("allreduce.min_bytes") for e in errs)
    assert any(e.startswith("gemm.shapes: the name 'a'") for e in errs)


# Each malformed config through the real Snakemake: fails before any job, names the key,
# prints no traceback.
BAD = [
    ("wrong type", {"gemm": {"iters": "many"}}, "gemm.iters"),
    ("unknown key", {"gemm": {"Mvalues": [1]}}, "gemm.Mvalues"),
    ("unknown top-level key", {"gpu": True}, "gpu"),
    ("negative M", {"gemm": {"M": [1, -4]}}, "gemm.M[1]"),
    ("unknown dtype", {"gemm": {"dtypes": ["fp9"]}}, "gemm.dtypes[0]"),
    ("unknown hardware key", {"hardware": "tpu_v9"}, "hardware"),
    ("empty sweep", {"gemm": {"M": []}}, "gemm.M"),
    ("empty batches", {"decode": {"batches": []}}, "decode.batches"),
    # issue 15, fault 6: values that would end in a traceback or a MissingInputException
    ("seed 2**70", {"seed": 2**70}, "seed"),
    ("M 16.0", {"gemm": {"M": [16.0]}}, "gemm.M[0]"),
    ("bool for an integer", {"gemm": {"iters": True}}, "gemm.iters"),
    ("regex", {"ncu": {"kernel_regex": "flash_fwd("}}, "ncu.kernel_regex"),
    ("missing arch file", {"model": {"arch": "config/models/nope.json"}}, "model.arch"),
    ("arch is a folder", {"model": {"arch": "config"}}, "model.arch"),
    ("missing class file", {"decode": {"kernel_classes": "nope.yaml"}}, "decode.kernel_classes"),
    ("nested key", {"gemm": {"shapes": [{"name": "a", "N": 0, "K": 8}]}}, "gemm.shapes[0].N"),
    ("missing nested key", {"gemm": {"shapes": [{"name": "a", "N": 8}]}}, "gemm.shapes[0].K"),
    # the cross-key rules of the hierarchy and decode model sections (hwlab.config.config_errors)
    ("hierarchy below min_bytes", {"hierarchy": {"max_bytes": 10}}, "hierarchy.max_bytes"),
    ("fit batch not decoded", {"decode_model": {"fit_batches": [999]}}, "decode_model.fit_batches"),
]


@pytest.mark.parametrize(("case", "cfg", "key"), BAD, ids=[b[0] for b in BAD])
def test_malformed_config_fails_before_any_job(tmp_path, case, cfg, key):
    proc = smk(tmp_path, "all", "-n", configfile=write_config(tmp_path / "bad.yaml", cfg))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "invalid configuration" in out
    assert f"  {key}:" in out, out
    assert "Traceback" not in out and 'File "' not in out, out
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("case", "cfg", "key"), BAD, ids=[b[0] for b in BAD])
def test_check_config_refuses_what_the_workflow_refuses(tmp_path, capsys, case, cfg, key):
    """`hwlab check-config` runs the workflow's checks (one config_errors for both)."""
    from hwlab.cli import main

    assert main(["check-config", str(write_config(tmp_path / "bad.yaml", cfg))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwlab check-config: ") and err.count("\n") == 1, err
    assert f"{key}:" in err, err


def test_every_error_is_reported_in_one_pass(tmp_path, capsys):
    """A hierarchy and a decode model error together: the workflow and check-config both
    name both keys (no check stops the others)."""
    from hwlab.cli import main

    bad = write_config(
        tmp_path / "bad.yaml",
        {"hierarchy": {"max_bytes": 10}, "decode_model": {"fit_batches": [999]}},
    )
    proc = smk(tmp_path, "all", "-n", configfile=bad)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "invalid configuration" in out, out
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    for key in ("hierarchy.max_bytes", "decode_model.fit_batches"):
        assert f"  {key}:" in out, out
        assert f"{key}:" in err, err


# ---- issue 15: values parsed before any job (fault 6, 9, and --config list overrides) ----


def test_nested_key_error_shows_its_own_description():
    cfg = copy.deepcopy(DEFAULT)
    cfg["gemm"]["shapes"] = [{"name": "a", "N": 0, "K": 8}]
    msg = _error_for(cfg)
    assert msg.startswith("gemm.shapes[0].N: 0 is less than the minimum of 1")
    assert "(gemm.shapes[0].N is: Output features (weight rows).)" in msg
    assert "GEMM shapes" not in msg  # not the parent's description
    cfg["allreduce"]["tp_napkin"]["batch"] = "x"
    cfg["gemm"]["shapes"] = [{"name": "a", "N": 8, "K": 8}]
    assert "(allreduce.tp_napkin.batch is: Batch of the forward pass" in _error_for(cfg)


def test_a_missing_nested_key_is_named():
    cfg = {"gemm": {"shapes": [{"name": "a", "N": 8}]}}
    errs = validate(cfg, SCHEMA)
    assert errs[0].startswith("gemm.shapes[0].K: is required here but missing.")
    assert "Input features" in errs[0]


BPE = "allreduce.tp_napkin.bytes_per_el"


def test_validate_coerces_strings_fills_defaults_and_is_strict():
    cfg = {"gemm": {"M": ["1", "4", " 16"], "flush_mb": "0"}, "threads": "2", "seed": "7"}
    assert validate(cfg, SCHEMA) == []
    assert cfg["gemm"]["M"] == [1, 4, 16] and cfg["threads"] == 2 and cfg["seed"] == 7
    assert cfg["decode"]["batches"] == DEFAULT["decode"]["batches"]  # defaults filled
    assert cfg["measure_lock"] == ""
    for bad, key in (
        ({"gemm": {"M": [16.0]}}, "gemm.M[0]: 16.0 is not of type 'integer'"),
        ({"gemm": {"M": ["16.0"]}}, "gemm.M[0]: '16.0' is not of type 'integer'"),
        ({"gemm": {"M": ["1e9"]}}, "gemm.M[0]: '1e9' is not of type 'integer'"),
        ({"seed": 2**70}, "seed: 1180591620717411303424 is greater than the maximum"),
        ({"allreduce": {"tp_napkin": {"bytes_per_el": float("nan")}}}, f"{BPE}: nan"),
        ({"allreduce": {"tp_napkin": {"bytes_per_el": True}}}, f"{BPE}: True"),
    ):
        errs = validate(copy.deepcopy(bad), SCHEMA)
        assert errs and errs[0].startswith(key), (bad, errs)
    numeric = {"allreduce": {"tp_napkin": {"bytes_per_el": "1.5"}}}
    assert validate(numeric, SCHEMA) == []
    assert numeric["allreduce"]["tp_napkin"]["bytes_per_el"] == 1.5


def test_load_yaml_names_file_line_and_column(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("run: x\ngemm:\n  M: [1, 4\n  dtypes: [fp32]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML at line 4, column 9: expected"):
        load_yaml(f)
    with pytest.raises(ConfigError, match="is a directory"):
        load_yaml(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")


def test_architecture_errors_name_the_key():
    arch = json.loads((REPO / "config/models/qwen2-tiny.json").read_text())
    assert arch_errors(arch) == []
    assert arch_errors({**arch, "hidden_size": 0}) == [
        "hidden_size must be a positive integer, got 0"
    ]
    assert arch_errors({**arch, "num_hidden_layers": 2.0})[0].startswith("num_hidden_layers")
    assert "num_key_value_heads" in arch_errors({**arch, "num_key_value_heads": 4})[0]
    assert arch_errors({k: v for k, v in arch.items() if k != "vocab_size"}) == [
        "vocab_size is missing"
    ]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"model_type": "qwen2",\n  "hidden_size": }', "is not JSON (line 2, column"),
        ("[1, 2]", "is not a transformers config.json (a JSON object)"),
        ('{"hidden_size": 8}', "has no 'model_type'"),
        (b"\xff\xfe{", "cannot be read"),
    ],
)
def test_an_unreadable_arch_file_is_named_as_the_model_job_would(tmp_path, content, words):
    """The config check reads model.arch through hwlab.model.read_arch (one reading)."""
    f = tmp_path / "arch.json"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    cfg = copy.deepcopy(DEFAULT)
    cfg["model"]["arch"] = str(f)
    errs = [e for e in semantic_errors(cfg, REPO, []) if e.startswith("model.arch:")]
    assert len(errs) == 1 and words in errs[0] and str(f) in errs[0], errs


def test_semantic_errors_parse_files_and_regexes(tmp_path):
    arch = json.loads((REPO / "config/models/qwen2-tiny.json").read_text())
    (tmp_path / "h0.json").write_text(json.dumps({**arch, "hidden_size": 0}))
    (tmp_path / "classes.yaml").write_text("rules:\n  - {class: gemm, pattern: 'mm(('}\n")
    (tmp_path / "broken.yaml").write_text("rules: [\n")
    cfg = copy.deepcopy(DEFAULT)
    cfg["model"]["arch"] = str(tmp_path / "h0.json")
    cfg["decode"]["kernel_classes"] = str(tmp_path / "classes.yaml")
    cfg["ncu"]["kernel_regex"] = "(flash"
    errs = semantic_errors(cfg, REPO, ["h100_sxm"])
    assert any(e.startswith("model.arch:") and "hidden_size must be a positive" in e for e in errs)
    assert any(e.startswith("decode.kernel_classes:") and "not a regex" in e for e in errs)
    assert any(e.startswith("ncu.kernel_regex: '(flash' is not a regular expression") for e in errs)
    cfg["decode"]["kernel_classes"] = str(tmp_path / "broken.yaml")
    errs = semantic_errors(cfg, REPO, ["h100_sxm"])
    assert any("broken.yaml: invalid YAML at line 2" in e for e in errs), errs


def test_catalog_and_metric_files_are_parsed(tmp_path):
    keys, errs = catalog_errors(REPO / "config" / "hardware.yaml")
    assert "h100_sxm" in keys and errs == []
    assert metrics_errors(REPO / "config" / "ncu_metrics.yaml") == []
    (tmp_path / "hw.yaml").write_text("x100:\n  name: X\n  match: ['X(']\n")
    assert "x100.match[0]: 'X(' is not a regex" in catalog_errors(tmp_path / "hw.yaml")[1][0]
    (tmp_path / "m.yaml").write_text("metrics: [\n")
    assert "invalid YAML at line 2" in metrics_errors(tmp_path / "m.yaml")[0]


def test_interpreter_path_problem():
    assert interpreter_path_problem("/usr/bin/python3") is None
    assert "snakemake issue #2645" in interpreter_path_problem("/tmp/a b/.venv/bin/python")


def _list_overrides():
    """--config NAME='{...}' giving every list key of the schema a valid value."""
    values = {
        "peaks.gemm_sizes": [128, 256],
        "gemm.shapes": [{"name": "wide", "N": 64, "K": 32}],
        "gemm.dtypes": ["fp32", "bf16"],
        "gemm.M": [1, 4, 16, 64, 128],
        "gemm.l2": ["cold"],
        "decode.batches": [1, 2, 8],
        "decode.lab1a_batches": [1, 8],
        "decode.mode": ["eager", "graph"],
        "decode.graph_batches": [2],
        "decode_model.fit_batches": [1, 8],
        "decode_model.predict_batches": [32],
        "ncu.batches": [2, 8],
        "ncu.gemm_M": [4],
        "allreduce.backends": ["gloo", "nccl"],
        "allreduce.world_sizes": [2, 4],
        "hierarchy.kernels": ["read"],
    }
    lists = {name for name, sub in _props(SCHEMA) if sub.get("type") == "array"}
    assert lists == set(values), lists ^ set(values)  # every list key is covered
    sections = {}
    for key, v in values.items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = v
    return [f"{s}={json.dumps(v)}" for s, v in sections.items()]


@pytest.mark.slow
def test_list_overrides_of_every_list_key_through_snakemake(tmp_path):
    """Snakemake hands --config list items over as strings ('1'): coerced, then valid."""
    proc = smk(tmp_path, "all", "-n", "--config", *_list_overrides())
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for f in (
        "results/cpu-default/gemm/wide/bf16/cold/m128.json",
        "results/cpu-default/decode/b8.json",
        "results/cpu-default/decode/graph/b2.json",
        "results/cpu-default/ncu/b2.json",
        "results/cpu-default/ncu/gemm/wide/fp32/m4.json",
        "results/cpu-default/allreduce/nccl-w4.json",
    ):
        assert f in out, f
    assert "/warm/" not in out


@pytest.mark.slow
def test_bad_files_named_before_any_job(tmp_path):
    """An architecture with hidden_size 0, a kernel class file with a bad regex or bad
    YAML: rejected before any job, the key and the file named, no traceback."""
    arch = json.loads((REPO / "config/models/qwen2-tiny.json").read_text())
    (tmp_path / "h0.json").write_text(json.dumps({**arch, "hidden_size": 0}))
    (tmp_path / "classes.yaml").write_text("rules:\n  - {class: gemm, pattern: [mm\n")
    cfg = {
        "model": {"arch": str(tmp_path / "h0.json")},
        "decode": {"kernel_classes": str(tmp_path / "classes.yaml")},
    }
    proc = smk(tmp_path, "all", "-n", configfile=write_config(tmp_path / "bad.yaml", cfg))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "  model.arch: " in out and "hidden_size must be a positive integer, got 0" in out
    assert "  decode.kernel_classes: " in out and "classes.yaml: invalid YAML at line 3" in out
    assert "Traceback" not in out and not (tmp_path / "results").exists()
