"""``hwlab napkin ...``: the writeup's napkin models for any model, batch and hardware.

One subcommand per napkin (``tp`` now; ``decode`` is added beside it): each registers
itself in ``NAPKINS`` and prints the same intermediates as the pipeline's tables.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from hwlab import catalog as cat
from hwlab import napkin as N


def _tp(args: argparse.Namespace) -> int:
    from hwlab.cli import print_json

    c = N.tp_comm(
        args.d_model,
        args.layers,
        args.batch,
        args.seq,
        args.tp,
        args.bytes_per_el,
        args.allreduces_per_layer,
    )
    bandwidths = [N.Bandwidth(f"{b:g} GB/s", b, "--busbw") for b in args.busbw or []]
    if not bandwidths:
        bandwidths = [N.writeup_bandwidth()]
    if args.hardware:
        entries = cat.load(args.catalog)
        if args.hardware not in entries:
            raise KeyError(
                f"--hardware {args.hardware!r} is not in the catalog; known: {', '.join(entries)}"
            )
        bandwidths.append(N.catalog_bandwidth(args.hardware, entries[args.hardware]))
    for b in bandwidths:
        if b.busbw_gbps is not None and b.busbw_gbps <= 0:
            raise ValueError(f"--busbw must be > 0 GB/s, got {b.busbw_gbps:g}")
    if args.json:
        out = {
            **{k: getattr(c, k) for k in c.__dataclass_fields__},
            "comm_ms": {
                b.label: (c.time_s(b.busbw_gbps) * 1e3 if b.busbw_gbps else None)
                for b in bandwidths
            },
        }
        print_json(out)
        return 0
    print(
        f"TP napkin (writeup §6): d_model {args.d_model}, {args.layers} layers, batch "
        f"{args.batch}, seq {args.seq}, TP {args.tp}, {args.bytes_per_el:g} bytes/element"
    )
    for i, line in enumerate(N.tp_steps(c, [(b.label, b.busbw_gbps) for b in bandwidths]), 1):
        print(f"{i}. {line}")
    if args.writeup_check:
        print("\nThe writeup's §6 numbers against its own formula:")
        for r in N.writeup_tp_check():
            verdict = "follows" if r["follows"] else "DOES NOT FOLLOW"
            print(
                f"- {r['quantity']}: writeup {r['writeup']}; formula {r['formula']} "
                f"({verdict}). {r['explanation']}"
            )
    return 0


def _register_tp(sub) -> None:
    w = N.WRITEUP_TP
    p = sub.add_parser(
        "tp",
        help="tensor-parallel AllReduce traffic and time per forward pass (§6)",
        description="Per-AllReduce message = bytes x batch x seq x d_model; two AllReduces "
        "per layer; per-GPU ring traffic = message x 2(n-1)/n; time = traffic / busbw. "
        "Defaults: the writeup's worked example (70B, batch 32, seq 2048, TP 8).",
    )
    p.add_argument("--d-model", type=int, default=w["d_model"], help="hidden size")
    p.add_argument("--layers", type=int, default=w["layers"], help="transformer layers")
    p.add_argument("--batch", type=int, default=w["batch"])
    p.add_argument("--seq", type=int, default=w["seq_len"], help="tokens per sequence")
    p.add_argument("--tp", type=int, default=w["tp"], help="tensor-parallel degree (GPUs)")
    p.add_argument(
        "--busbw",
        type=float,
        action="append",
        help="bus bandwidth in GB/s (repeatable); default: the writeup's ~750 GB/s",
    )
    p.add_argument(
        "--hardware", help="also price at this catalog entry's interconnect (per direction)"
    )
    p.add_argument("--catalog", default=cat.DEFAULT_CATALOG, help="hardware catalog file")
    p.add_argument("--bytes-per-el", type=float, default=2, help="2 = bf16/fp16 (default)")
    p.add_argument("--allreduces-per-layer", type=int, default=2)
    p.add_argument(
        "--writeup-check",
        action="store_true",
        help="also check the writeup's stated numbers against the formula",
    )
    p.add_argument("--json", action="store_true", help="print the intermediates as JSON")
    p.set_defaults(func=_tp)


def _decode(args: argparse.Namespace) -> int:
    import pandas as pd

    prec = N.precision(args.dtype)
    entries = cat.load(args.catalog)
    if args.bandwidth is not None or args.memory is not None:
        if args.bandwidth is None or args.memory is None:
            raise ValueError("--bandwidth and --memory go together (a device not in the catalog)")
        if args.bandwidth <= 0 or args.memory <= 0:
            raise ValueError("--bandwidth and --memory must be > 0")
        devices = {
            "custom": {
                "name": "custom",
                "memory_gb": args.memory,
                "mem_bw_gbps": args.bandwidth,
                "peak_tflops": {},
            }
        }
    else:
        keys = args.device or list(entries)
        unknown = [k for k in keys if k not in entries]
        if unknown:
            raise KeyError(
                f"--device {unknown[0]!r} is not in the catalog; known: {', '.join(entries)}"
            )
        devices = {k: entries[k] for k in keys}
    if args.params_b <= 0:
        raise ValueError(f"--params-b must be > 0, got {args.params_b:g}")
    rows = []
    for key, e in devices.items():
        r = N.decode_napkin(
            args.params_b,
            prec,
            e["memory_gb"],
            e["mem_bw_gbps"],
            N.compute_peak(e, prec),
            N.compute_peak(e, prec, sparse=True),
        )
        rows.append({"device": key, **r})
    if len(rows) == 1:
        print(
            f"Decode napkin (writeup §5, §8): {args.params_b:g}B in {prec.name} on "
            f"{rows[0]['device']}"
        )
        for i, line in enumerate(N.decode_steps(rows[0], rows[0]["device"]), 1):
            print(f"{i}. {line}")
        return 0
    cols = [
        "device",
        "weight_gb",
        "memory_gb",
        "fits",
        "min_tp",
        "mem_bw_gbps",
        "step_ms",
        "tokens_per_s",
        "ridge_dense",
        "ridge_sparse",
    ]
    df = pd.DataFrame(rows)[cols]
    df = df.astype(object).where(df.notna(), None)
    print(
        f"Decode napkin (writeup §5, §8): {args.params_b:g}B in {prec.name}, batch 1; "
        "step = weights / (TP x bandwidth), AllReduces not included"
    )
    print(df.to_markdown(index=False, floatfmt=".4g", missingval="—"))
    return 0


def _register_decode(sub) -> None:
    p = sub.add_parser(
        "decode",
        help="decode step lower bound, fit and ridge for a model size on any device (§5, §8)",
        description="At batch 1 every weight is read once per decode step: step >= weight "
        "bytes / memory bandwidth (3B bf16 on an H100: 6 GB / 3.35 TB/s = 1.79 ms). Also: "
        "does it fit, the smallest TP that fits, and the ridge points.",
    )
    p.add_argument("--params-b", type=float, required=True, help="parameters, in billions")
    p.add_argument("--dtype", default="bf16", help="weight precision: bf16, fp8, int8, int4")
    p.add_argument(
        "--device", action="append", help="catalog key (repeatable; default: every catalog device)"
    )
    p.add_argument("--bandwidth", type=float, help="GB/s of a device not in the catalog")
    p.add_argument("--memory", type=float, help="GB of a device not in the catalog")
    p.add_argument("--catalog", default=cat.DEFAULT_CATALOG, help="hardware catalog file")
    p.set_defaults(func=_decode)


# One registrar per napkin subcommand (hwlab napkin <name>).
NAPKINS: list[Callable] = [_register_tp, _register_decode]


def register_cli(sub) -> None:
    p = sub.add_parser("napkin", help="the writeup's napkin models for any model and hardware")
    napkins = p.add_subparsers(dest="napkin", required=True, metavar="NAPKIN")
    for register in NAPKINS:
        register(napkins)
