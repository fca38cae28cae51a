"""Model acquisition: architecture files, fast seeded random build, manifests, hub offline."""

import json
import socket
import subprocess
import sys
import time

import pytest
import torch
import yaml
from helpers import REPO, TINY, smk, write_config

from hwlab import model as hwmodel

QWEN3B = REPO / "config" / "models" / "qwen2.5-3b.json"
TINY_ARCH = REPO / "config" / "models" / "qwen2-tiny.json"


def test_qwen25_3b_architecture_file():
    """The exact Qwen2.5-3B-Instruct config.json values that shape the model."""
    a = hwmodel.read_arch(QWEN3B)
    assert a["model_type"] == "qwen2" and a["architectures"] == ["Qwen2ForCausalLM"]
    expected = {
        "hidden_size": 2048,
        "num_hidden_layers": 36,
        "intermediate_size": 11008,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-06,
        "max_position_embeddings": 32768,
        "hidden_act": "silu",
    }
    assert {k: a[k] for k in expected} == expected


def test_qwen25_3b_parameter_count():
    """3.09 B parameters with tied embeddings (built on the meta device: no memory)."""
    counts = hwmodel.arch_param_count(QWEN3B)
    assert counts["param_count"] == 3_085_938_688
    assert counts["param_count_nonembedding"] == 3_085_938_688 - 151936 * 2048
    m = hwmodel.build_random(QWEN3B, dtype="bf16", device="meta")
    assert m.lm_head.weight is m.model.embed_tokens.weight
    assert m.config._attn_implementation == "sdpa"


def test_random_build_is_seeded_and_tied():
    a = hwmodel.build_random(TINY_ARCH, dtype="fp32", device="cpu", seed=3)
    b = hwmodel.build_random(TINY_ARCH, dtype="fp32", device="cpu", seed=3)
    c = hwmodel.build_random(TINY_ARCH, dtype="fp32", device="cpu", seed=4)
    assert a.lm_head.weight is a.model.embed_tokens.weight
    assert not a.training
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    w = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(sa[w], sc[w])
    # initializer_range 0.02: random sign and mantissa, |w| in [2^-6, 2^-5), mean ~0
    mag = sa[w].abs()
    assert float(mag.min()) >= 2**-6 and float(mag.max()) < 2**-5
    assert abs(float(sa[w].mean())) < 1e-3 and 0.4 < float((sa[w] > 0).float().mean()) < 0.6
    assert torch.unique(sa[w]).numel() > 1000
    assert torch.equal(sa["model.norm.weight"], torch.ones_like(sa["model.norm.weight"]))
    # buffers are computed, not left uninitialised: RoPE inverse frequencies start at 1
    assert float(a.model.rotary_emb.inv_freq[0]) == 1.0
    assert hwmodel.param_count(a) == hwmodel.arch_param_count(TINY_ARCH)["param_count"]
    assert a.dtype == torch.float32
    assert hwmodel.build_random(TINY_ARCH, dtype="bf16", device="cpu").dtype == torch.bfloat16


def test_manifest_and_load(tmp_path):
    out = tmp_path / "m" / "manifest.json"
    m = hwmodel.write_manifest(
        str(out), name="t", source="random", arch_file=str(TINY_ARCH), arch="x.json", seed=5
    )
    assert m == json.loads(out.read_text())
    assert m["arch_file"] == "x.json" and m["seed"] == 5
    assert m["arch_sha256"] == hwmodel.file_sha256(TINY_ARCH)
    assert m["param_count"] == 21_239_680
    loaded = hwmodel.load(out, dtype="fp32", device="cpu")
    ref = hwmodel.build_random(TINY_ARCH, dtype="fp32", device="cpu", seed=5)
    assert torch.equal(
        loaded.model.layers[1].self_attn.q_proj.weight, ref.model.layers[1].self_attn.q_proj.weight
    )


@pytest.mark.parametrize(
    "content,msg", [(None, "does not exist"), ("{", "is not JSON"), ("{}", "no 'model_type'")]
)
def test_bad_architecture_file(tmp_path, content, msg):
    p = tmp_path / "arch.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(hwmodel.ModelSourceError, match=msg):
        hwmodel.read_arch(p)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: connections are refused


HUB = {
    "name": "hubmodel",
    "source": "hub",
    "repo": "Qwen/Qwen2.5-3B-Instruct",
    "revision": "aa8e72537993ba99e69dfaafa59ed015b17504d1",
}


def test_hub_unreachable_fails_fast_with_the_way_out(tmp_path):
    """HF_ENDPOINT at a closed local port: one refused request, no retry back-off."""
    args = ", ".join(repr(a) for a in ("x", HUB["repo"], HUB["revision"], str(tmp_path / "x")))
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from hwlab.model import hub_manifest, ModelSourceError\n"
        f"try:\n    hub_manifest({args})\n"
        "except ModelSourceError as e:\n    print(e)\n    sys.exit(3)\n"
    )
    env = {
        "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
        "HF_HOME": str(tmp_path / "hf"),
        "PATH": "/usr/bin:/bin",
    }
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert time.time() - t0 < 20  # huggingface_hub's own retries would take ~25 s
    assert "cannot fetch Qwen/Qwen2.5-3B-Instruct@aa8e7253" in proc.stdout
    assert "source: random" in proc.stdout and "config/models/qwen2.5-3b.json" in proc.stdout


def test_hub_offline_through_the_workflow(tmp_path, monkeypatch):
    """With HF_HUB_OFFLINE=1 the model job fails at once; its log says how to go on."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["model"] = HUB
    cfgfile = write_config(tmp_path / "hub.yaml", cfg)
    proc = smk(tmp_path, "resources/models/hubmodel/manifest.json", configfile=cfgfile)
    assert proc.returncode != 0
    assert "resources/logs/model-hubmodel.log" in proc.stdout + proc.stderr
    log = (tmp_path / "resources" / "logs" / "model-hubmodel.log").read_text()
    assert "HF_HUB_OFFLINE is set" in log
    assert "set `model: {source: random" in log
    assert "Traceback" not in log
    assert not (tmp_path / "resources" / "models" / "hubmodel" / "manifest.json").exists()
