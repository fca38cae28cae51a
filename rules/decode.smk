"""Decode profiling at each batch: TPOT, throughput, kernel inventory, GPU-Util (Lab 1a, §5)."""
