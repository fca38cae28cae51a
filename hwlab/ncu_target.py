"""The process Nsight Compute profiles (``python -m hwlab.ncu_target decode|gemm …``).

ncu runs it with ``--profile-from-start off``: nothing is profiled until the process calls
``torch.cuda.profiler.start()`` (cudaProfilerStart), so model loading, prefill and warmup
stay out of the report.
- decode: build the run's model (:func:`hwlab.model.load` from the model rule's manifest),
  prefill a random prompt of ``prompt_len`` tokens at ``batch``, run ``warmup_steps``
  decode steps, then bracket ``decode_steps`` decode steps with profiler start/stop
  (the writeup's Lab 1b: decode steps under cudaProfilerStart), all under the decode
  stage's attention backend (``--sdpa-backend``, :func:`hwlab.decode.sdpa_context`).
- gemm: the Lab 2 op (:func:`hwlab.gemm.make_op`) at (M, N, K, dtype), called a few times
  to warm cuBLAS (heuristics, workspace), then one call under profiler start/stop.
Runs on a CUDA GPU only; the capture job decides beforehand whether to run it at all.
"""

from __future__ import annotations

import argparse
import sys

GEMM_WARMUP_CALLS = 3


def run_decode(
    manifest: str,
    *,
    device: str,
    batch: int,
    prompt_len: int,
    warmup_steps: int,
    decode_steps: int,
    dtype: str,
    seed: int,
    sdpa_backend: str = "flash",
) -> None:
    import torch

    from hwlab import decode, model

    m = model.load(manifest, dtype=dtype, device=device, seed=seed)
    ids = decode.random_prompt(batch, prompt_len, m.config.vocab_size, seed, device)
    with torch.inference_mode(), decode.sdpa_context(sdpa_backend):
        cache, next_ids = decode.prefill(m, ids)
        for _ in range(warmup_steps):
            next_ids = decode.decode_step(m, cache, next_ids)
        torch.cuda.synchronize(device)
        torch.cuda.profiler.start()
        for _ in range(decode_steps):
            next_ids = decode.decode_step(m, cache, next_ids)
        torch.cuda.synchronize(device)
        torch.cuda.profiler.stop()


def run_gemm(*, device: str, m: int, n: int, k: int, dtype: str, seed: int) -> None:
    import torch

    from hwlab.device import Device
    from hwlab.gemm import launch_refusal, make_op

    dev = Device("cuda", torch.device(device).index or 0)
    reason = dev.dtype_skip_reason(dtype) or launch_refusal("cuda", dtype, m, n, k)
    if reason:
        raise SystemExit(f"hwlab.ncu_target: {reason}")
    fn = make_op(dev, dtype, m, n, k, seed)
    for _ in range(GEMM_WARMUP_CALLS):
        fn()
    dev.synchronize()
    torch.cuda.profiler.start()
    fn()
    dev.synchronize()
    torch.cuda.profiler.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hwlab.ncu_target", description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("decode")
    d.add_argument("--manifest", required=True)
    d.add_argument("--device", default="cuda:0")
    d.add_argument("--batch", type=int, required=True)
    d.add_argument("--prompt-len", type=int, required=True)
    d.add_argument("--warmup-steps", type=int, required=True)
    d.add_argument("--decode-steps", type=int, required=True)
    d.add_argument("--dtype", required=True)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--sdpa-backend", default="flash")
    g = sub.add_parser("gemm")
    g.add_argument("--device", default="cuda:0")
    g.add_argument("--M", type=int, required=True)
    g.add_argument("--N", type=int, required=True)
    g.add_argument("--K", type=int, required=True)
    g.add_argument("--dtype", required=True)
    g.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.what == "decode":
        run_decode(
            a.manifest,
            device=a.device,
            batch=a.batch,
            prompt_len=a.prompt_len,
            warmup_steps=a.warmup_steps,
            decode_steps=a.decode_steps,
            dtype=a.dtype,
            seed=a.seed,
            sdpa_backend=a.sdpa_backend,
        )
    else:
        run_gemm(device=a.device, m=a.M, n=a.N, k=a.K, dtype=a.dtype, seed=a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
