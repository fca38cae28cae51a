"""Model acquisition and loading: the model the decode and ncu stages profile.

Two sources, both described by a manifest (``resources/models/<name>/manifest.json``):
- ``random``: a transformers architecture file (``config/models/*.json``) with seeded random
  weights. Profiling does not depend on weight values, so this reproduces the lab without a
  6 GB download. The manifest records the architecture (and its file's sha256), the seed
  and the parameter count; :func:`load` rebuilds the same weights from it.
- ``hub``: a Hugging Face repo at a pinned revision, fetched once with
  ``huggingface_hub.snapshot_download`` into ``resources/models/<name>/snapshot``.

Fast random build (a 3B model in seconds, not the minute a default init takes): the
modules are constructed under transformers' ``no_init_weights`` (torch's init functions
become no-ops, memory stays uninitialised), embeddings are tied, then every unique
parameter is filled in place: RMSNorm weights with 1, everything else with random sign and
mantissa bits from a ``torch.Generator`` seeded with (seed, parameter name) and a fixed
exponent, so |w| lies in [2^e, 2^(e+1)) with e = floor(log2(initializer_range)) (for 0.02:
0.0156..0.031, about the std of the model's own init). Drawing raw 64-bit words is ~4x
faster than ``uniform_`` on a CPU. Parameters are filled by a small thread pool (torch
releases the GIL); per-parameter seeds make the weights independent of the thread schedule.
The same seed gives the same weights on the same device type (CPU and CUDA generators
differ).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hwlab.dtypes import MODEL_DTYPES

MANIFEST = "manifest.json"
SNAPSHOT_DIR = "snapshot"
HUB_PATTERNS = [
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
]


class ModelSourceError(RuntimeError):
    """The model cannot be acquired; the message says why and what to do instead."""


# ---- architecture files ------------------------------------------------------------------


def read_arch(arch: str | os.PathLike | dict) -> dict[str, Any]:
    """An architecture (a transformers config.json) as a dict, without ``_comment`` keys.

    A ModelSourceError names the file and what is wrong: missing, a folder, unreadable,
    not JSON (line and column), not an object, no ``model_type``. The config check
    (hwlab.config) reads the file through here too, before any job.
    """
    if isinstance(arch, dict):
        data, what = dict(arch), "architecture"
    else:
        path = Path(arch)
        what = f"architecture file {str(path)!r}"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelSourceError(f"{what} does not exist") from None
        except IsADirectoryError:
            raise ModelSourceError(f"{what} is a directory, not a file") from None
        except json.JSONDecodeError as e:
            raise ModelSourceError(
                f"{what} is not JSON (line {e.lineno}, column {e.colno}: {e.msg})"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ModelSourceError(f"{what} cannot be read ({e})") from None
    if not isinstance(data, dict):
        raise ModelSourceError(f"{what} is not a transformers config.json (a JSON object)")
    if "model_type" not in data:
        raise ModelSourceError(f"{what} has no 'model_type': it must be a transformers config.json")
    return {k: v for k, v in data.items() if not k.startswith("_")}


# the geometry the decode stage, its napkin and transformers need: positive integers
ARCH_SIZES = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
)


def arch_errors(arch: dict[str, Any]) -> list[str]:
    """What makes an architecture unbuildable (sizes that are not positive integers, heads
    that do not divide the width): one message per key, naming it. [] if none."""

    def positive(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    errors = []
    for key in ARCH_SIZES:
        if key not in arch:
            errors.append(f"{key} is missing")
        elif not positive(arch[key]):
            errors.append(f"{key} must be a positive integer, got {arch[key]!r}")
    for key in ("num_key_value_heads", "head_dim"):
        if arch.get(key) is not None and not positive(arch[key]):
            errors.append(f"{key} must be a positive integer, got {arch[key]!r}")
    if errors:
        return errors
    heads = arch["num_attention_heads"]
    kv = arch.get("num_key_value_heads") or heads
    if heads % kv:
        errors.append(
            f"num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv})"
        )
    if not arch.get("head_dim") and arch["hidden_size"] % heads:
        errors.append(
            f"hidden_size ({arch['hidden_size']}) is not a multiple of num_attention_heads "
            f"({heads})"
        )
    return errors


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _torch_dtype(dtype: str):
    import torch

    if dtype not in MODEL_DTYPES:
        raise ValueError(f"model dtype must be one of {', '.join(MODEL_DTYPES)}, got {dtype!r}")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


def _dtype_kw(dtype: str) -> dict[str, Any]:
    """transformers >= 4.56 takes ``dtype=``; older versions ``torch_dtype=``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    return {key: _torch_dtype(dtype)}


def _hf_config(arch: dict[str, Any]):
    from transformers import AutoConfig

    arch = dict(arch)
    model_type = arch.pop("model_type")
    try:
        return AutoConfig.for_model(model_type, **arch)
    except (ValueError, KeyError) as e:
        raise ModelSourceError(f"transformers cannot build model_type {model_type!r}: {e}") from e


def _construct(arch: dict[str, Any], dtype: str, device: str):
    """The model's modules on ``device`` with uninitialised weights, tied, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5
        from transformers.modeling_utils import no_init_weights

    config = _hf_config(arch)
    with torch.device(device), no_init_weights():
        model = AutoModelForCausalLM.from_config(
            config, **_dtype_kw(dtype), attn_implementation="sdpa"
        )
    model.tie_weights()
    return model.eval()


def _param_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# Bit layout per dtype: (integer view, sign|mantissa mask, exponent shift, exponent bias)
_BITS = {
    "bfloat16": ("int16", 0x807F, 7, 127),
    "float16": ("int16", 0x83FF, 10, 15),
    "float32": ("int32", 0x807FFFFF, 23, 127),
}


def _signed(mask: int, bits: int) -> int:
    return mask - (1 << bits) if mask >= 1 << (bits - 1) else mask


def fill_random(model, seed: int, init_std: float = 0.02, workers: int | None = None) -> None:
    """Fill every unique parameter in place, RMSNorm weights with 1 (see the module docstring).

    Each parameter's memory is filled with random 64-bit words from its own generator
    (torch's fastest CPU draw: 4 bf16 values per word), then the exponent bits are set so
    every weight is ±[2^e, 2^(e+1)) with e = floor(log2(init_std)): random sign and mantissa,
    a magnitude like the model's own init, never inf/NaN. Sizes that do not divide into
    64-bit words fall back to ``uniform_``.
    """
    import torch

    e = math.floor(math.log2(init_std))
    params = list(model.named_parameters())  # shared (tied) parameters appear once

    def fill(item) -> None:
        name, p = item
        with torch.no_grad():
            if p.ndim == 1 and "norm" in name:
                p.fill_(1.0)
                return
            gen = torch.Generator(device=p.device).manual_seed(_param_seed(seed, name))
            layout = _BITS.get(str(p.dtype).removeprefix("torch."))
            flat = p.data.view(-1)
            if layout is None or (flat.numel() * flat.element_size()) % 8:
                p.uniform_(-(2.0 ** (e + 1)), 2.0 ** (e + 1), generator=gen)
                return
            itype, mask, shift, bias = layout
            flat.view(torch.int64).random_(-(2**63), None, generator=gen)
            bits = flat.view(getattr(torch, itype))
            width = 16 if itype == "int16" else 32
            bits.bitwise_and_(_signed(mask, width)).bitwise_or_((bias + e) << shift)

    workers = workers or max(1, torch.get_num_threads())
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fill, params))


def build_random(arch: str | os.PathLike | dict, *, dtype: str, device: str, seed: int = 0) -> Any:
    """A model of architecture ``arch`` with seeded random weights, on ``device``, eval mode,
    sdpa attention. ``device`` is ``"cpu"``, ``"cuda:0"`` or ``"meta"`` (shapes only)."""
    spec = read_arch(arch)
    model = _construct(spec, dtype, device)
    if device != "meta":
        fill_random(model, seed, float(spec.get("initializer_range", 0.02)))
    return model


def param_count(model) -> int:
    """Unique parameters: a tied embedding / lm_head pair is counted once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # already de-duplicated by identity
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def arch_param_count(arch: str | os.PathLike | dict) -> dict[str, int]:
    """Parameter counts of an architecture, from a model built on the meta device (no memory)."""
    model = build_random(arch, dtype="fp32", device="meta")
    embed = model.get_input_embeddings().weight.numel()
    total = param_count(model)
    return {"param_count": total, "param_count_nonembedding": total - embed}


# ---- acquisition (the model rule) ----------------------------------------------------------


def random_manifest(
    name: str, arch_file: str | os.PathLike, seed: int, arch_label: str | None = None
) -> dict[str, Any]:
    """``arch_label``: the architecture as the config names it (recorded; default the path)."""
    arch = read_arch(arch_file)
    return {
        "name": name,
        "source": "random",
        "arch_file": arch_label or str(arch_file),
        "arch_sha256": file_sha256(arch_file),
        "seed": seed,
        **arch_param_count(arch),
        "tie_word_embeddings": bool(arch.get("tie_word_embeddings", False)),
        "init": "no_init_weights construction; per parameter random sign and mantissa bits from "
        "torch.Generator(seed, parameter name), exponent fixed: |w| in [2^e, 2^(e+1)), "
        "e = floor(log2(initializer_range)); RMSNorm weights 1",
        "arch": arch,
    }


def offline_message(repo: str, revision: str, cause: BaseException | str) -> str:
    """What a user reads when the hub cannot be reached: why, and how to go on without it."""
    return (
        f"cannot fetch {repo}@{revision} from the Hugging Face Hub: {cause}\n"
        "No network (or HF_HUB_OFFLINE=1 / an unreachable HF_ENDPOINT), and no cached snapshot "
        "of this revision.\n"
        "Profiling does not depend on weight values: set `model: {source: random, arch: "
        "config/models/<architecture>.json}` in your config (config/models/qwen2.5-3b.json is "
        "the exact Qwen2.5-3B-Instruct architecture) to build the same model with seeded random "
        "weights, or run where the hub is reachable once (the snapshot is cached under "
        "resources/models/)."
    )


def fetch_hub(repo: str, revision: str, local_dir: str | os.PathLike) -> dict[str, Any]:
    """Download (or find cached) ``repo`` at ``revision`` into ``local_dir``.

    Fails fast: a cached snapshot is used without network; otherwise one metadata request
    (no retries) checks that the hub answers before the download starts, so an offline
    machine gets :class:`ModelSourceError` in well under a second instead of retry back-off.
    """
    from huggingface_hub import HfApi, constants, snapshot_download

    kw = dict(
        repo_id=repo, revision=revision, local_dir=str(local_dir), allow_patterns=HUB_PATTERNS
    )
    try:
        path = snapshot_download(**kw, local_files_only=True)
        return {"snapshot": str(path), "resolved_revision": revision, "cached": True}
    except Exception:  # not cached (any flavour of "not found locally"): go online
        pass
    if constants.HF_HUB_OFFLINE:
        raise ModelSourceError(offline_message(repo, revision, "HF_HUB_OFFLINE is set"))
    try:
        info = HfApi().model_info(repo, revision=revision, timeout=10)
    except Exception as e:  # connection refused, DNS, timeout, 401/404: all mean "cannot fetch"
        raise ModelSourceError(offline_message(repo, revision, f"{type(e).__name__}: {e}")) from e
    try:
        path = snapshot_download(**kw)
    except Exception as e:
        raise ModelSourceError(offline_message(repo, revision, f"{type(e).__name__}: {e}")) from e
    return {"snapshot": str(path), "resolved_revision": info.sha or revision, "cached": False}


def hub_manifest(name: str, repo: str, revision: str, model_dir: str | os.PathLike) -> dict:
    model_dir = Path(model_dir)
    got = fetch_hub(repo, revision, model_dir / SNAPSHOT_DIR)
    cfg = model_dir / SNAPSHOT_DIR / "config.json"
    arch = read_arch(cfg)
    return {
        "name": name,
        "source": "hub",
        "repo": repo,
        "revision": revision,
        "resolved_revision": got["resolved_revision"],
        "snapshot": SNAPSHOT_DIR,  # relative to the manifest's folder
        "config_sha256": file_sha256(cfg),
        **arch_param_count(arch),
        "tie_word_embeddings": bool(arch.get("tie_word_embeddings", False)),
        "arch": arch,
    }


def write_manifest(
    out: str,
    *,
    name: str,
    source: str,
    arch_file: str | None = None,
    arch: str | None = None,
    seed: int = 0,
    repo: str = "",
    revision: str = "",
) -> dict[str, Any]:
    """The model rule: write the manifest (random) or fetch and describe the snapshot (hub)."""
    import logging

    from hwlab.io import write_json

    log = logging.getLogger("hwlab.model")
    if source == "random":
        manifest = random_manifest(name, arch_file, seed, arch)
    elif source == "hub":
        try:
            manifest = hub_manifest(name, repo, revision, Path(out).parent)
        except ModelSourceError as e:  # the message is the whole story: no traceback
            raise SystemExit(f"hwlab model: {e}") from None
    else:
        raise ValueError(f"model.source must be random or hub, got {source!r}")
    log.info("model %s: %s, %d parameters", name, source, manifest["param_count"])
    write_json(out, manifest)
    return manifest


# ---- loading (decode and ncu jobs) -----------------------------------------------------------


def load(manifest: str | os.PathLike, *, dtype: str, device: str, seed: int = 0) -> Any:
    """The model a manifest describes, on ``device`` in ``dtype``, eval mode, sdpa attention.

    random: rebuilt from the recorded architecture with the recorded seed (``seed`` is used
    only for a manifest that records none). hub: loaded from the snapshot beside the manifest.
    """
    path = Path(manifest)
    m = json.loads(path.read_text())
    if m.get("source") == "random":
        return build_random(m["arch"], dtype=dtype, device=device, seed=m.get("seed", seed))
    if m.get("source") == "hub":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            path.parent / m["snapshot"], **_dtype_kw(dtype), attn_implementation="sdpa"
        )
        return model.to(device).eval()
    raise ValueError(f"{path}: unknown model source {m.get('source')!r}")
