"""hwlab: what your hardware really does for LLM inference, measured by a Snakemake pipeline
that reproduces the lab "Week 2 — Hardware Foundations for Inference"."""

__version__ = "0.1.0"
