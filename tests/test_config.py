"""Config validation: the schema's defaults are the embedded default; bad input fails before
any job with one paragraph naming the key, and no traceback."""

import copy

import jsonschema
import pytest
import yaml
from helpers import REPO, smk, write_config

from hwlab.config import key_path, schema_error_message, semantic_errors

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
