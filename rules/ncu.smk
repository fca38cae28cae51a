"""Lab 1b: Nsight Compute capture of the attention kernel, parsed with ncu_report."""
