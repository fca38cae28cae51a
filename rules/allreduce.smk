"""Lab 3: AllReduce sweep through torchrun (gloo on CPU, NCCL on GPUs), TP napkin math (§6)."""
