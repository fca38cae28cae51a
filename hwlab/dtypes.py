"""Data types by the names used in configs, catalogs and tables (no torch import needed).

A GEMM dtype fixes three element sizes: the two inputs and the output. fp8 and int8 follow
what the matmul entry points produce: ``torch._scaled_mm`` (fp8 in, bf16 out) and
``torch._int_mm`` (int8 in, int32 out).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GemmDtype:
    name: str
    torch_name: str  # attribute of the torch module for the inputs
    in_bytes: int
    out_bytes: int
    catalog_key: str  # which peak of the hardware catalog applies
    tensor_core: bool  # runs on matrix units on a GPU


GEMM_DTYPES: dict[str, GemmDtype] = {
    "fp32": GemmDtype("fp32", "float32", 4, 4, "fp32", False),
    "tf32": GemmDtype("tf32", "float32", 4, 4, "tf32", True),
    "fp16": GemmDtype("fp16", "float16", 2, 2, "fp16", True),
    "bf16": GemmDtype("bf16", "bfloat16", 2, 2, "bf16", True),
    "fp8": GemmDtype("fp8", "float8_e4m3fn", 1, 2, "fp8", True),
    "int8": GemmDtype("int8", "int8", 1, 4, "int8", True),
}

# dtypes a model's weights can be held in for decode
MODEL_DTYPES = {"fp32": 4, "fp16": 2, "bf16": 2}


def gemm_dtype(name: str) -> GemmDtype:
    try:
        return GEMM_DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(GEMM_DTYPES)}") from None


def torch_dtype(name: str):
    """The torch dtype for a config name (imports torch)."""
    import torch

    return getattr(torch, gemm_dtype(name).torch_name)
