"""``hwlab napkin ...``: the writeup's napkin models for any model, batch and hardware.

One subcommand per napkin (``tp`` now; ``decode`` is added beside it): each registers
itself in ``NAPKINS`` and prints the same intermediates as the pipeline's tables.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from hwlab import catalog as cat
from hwlab import napkin as N


# ---- argument types: bad values are argparse errors (one line, exit code 2) ------------
def _number(text: str) -> float:
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0 (nan, inf, 0 and negatives are rejected)."""
    v = _number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    v = _number(text)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return v


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    v = _integer(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    v = _integer(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return v


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default (where it has one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class _OneLineParser(argparse.ArgumentParser):
    """A bad value is one line on stderr naming the option, and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
        formatter_class=_Help,
        description="Per-AllReduce message = bytes x batch x seq x d_model; two AllReduces "
        "per layer; per-GPU ring traffic = message x 2(n-1)/n; time = traffic / busbw. "
        "Defaults: the writeup's worked example (70B, batch 32, seq 2048, TP 8).",
    )
    p.add_argument("--d-model", type=positive_int, default=w["d_model"],
                   help="hidden size of the model")  # fmt: skip
    p.add_argument("--layers", type=positive_int, default=w["layers"],
                   help="transformer layers")  # fmt: skip
    p.add_argument("--batch", type=positive_int, default=w["batch"],
                   help="sequences in the forward pass")  # fmt: skip
    p.add_argument("--seq", type=positive_int, default=w["seq_len"],
                   help="tokens per sequence")  # fmt: skip
    p.add_argument("--tp", type=positive_int, default=w["tp"],
                   help="tensor-parallel degree (GPUs)")  # fmt: skip
    p.add_argument(
        "--busbw",
        type=positive_float,
        action="append",
        help="bus bandwidth in GB/s (repeatable); none given: the writeup's "
        f"~{w['busbw_gbps']:g} GB/s",
    )
    p.add_argument(
        "--hardware",
        help="also price at this catalog entry's interconnect (per direction); none: not priced",
    )
    p.add_argument("--catalog", default=str(cat.DEFAULT_CATALOG), help="hardware catalog file")
    p.add_argument("--bytes-per-el", type=positive_float, default=2,
                   help="bytes per activation element (2 = bf16 / fp16)")  # fmt: skip
    p.add_argument("--allreduces-per-layer", type=nonneg_int, default=2,
                   help="AllReduces per transformer layer (Megatron TP: 2)")  # fmt: skip
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
        devices = {
            "custom": {
                "name": "custom",
                "memory_gb": args.memory,
                "mem_bw_gbps": args.bandwidth,
                "peak_tflops": {},
                "interconnect": None,
                "host_link": (
                    {"name": "custom link", "gbps_bidir": 2 * args.link_gbps}
                    if args.link_gbps
                    else None
                ),
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
    rows = []
    for key, e in devices.items():
        r = N.decode_napkin(
            args.params_b,
            prec,
            e["memory_gb"],
            e["mem_bw_gbps"],
            N.compute_peak(e, prec),
            N.compute_peak(e, prec, sparse=True),
            kv_headroom=args.kv_headroom,
            entry=e,
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
        "weights_ms",
        "allreduce_ms",
        "step_ms",
        "tokens_per_s",
        "ridge_dense",
        "ridge_sparse",
    ]
    from hwlab.io import markdown

    df = pd.DataFrame(rows)[cols]
    df = df.astype(object).where(df.notna(), None)
    print(
        f"Decode napkin (writeup §5, §8): {args.params_b:g}B in {prec.name}, batch 1; "
        f"fits = weights <= {100 * (1 - args.kv_headroom):.0f}% of memory; step = weights / "
        "(TP x bandwidth) + the TP AllReduces over the device's link"
    )
    print(markdown(df))
    return 0


def _register_decode(sub) -> None:
    p = sub.add_parser(
        "decode",
        help="decode step lower bound, fit and ridge for a model size on any device (§5, §8)",
        formatter_class=_Help,
        description="At batch 1 every weight is read once per decode step: step >= weight "
        "bytes / memory bandwidth (3B bf16 on an H100: 6 GB / 3.35 TB/s = 1.79 ms). Also: "
        "does it fit (leaving --kv-headroom of memory for the KV cache and runtime), the "
        "smallest TP that fits with its AllReduces over the device's link, and the ridge "
        "points.",
    )
    p.add_argument("--params-b", type=positive_float, required=True,
                   help="parameters, in billions (required)")  # fmt: skip
    p.add_argument("--dtype", default="bf16", help="weight precision: bf16, fp8, int8, int4")
    p.add_argument(
        "--device", action="append",
        help="catalog key (repeatable); none given: every catalog device",
    )  # fmt: skip
    p.add_argument("--bandwidth", type=positive_float,
                   help="GB/s of a device not in the catalog (with --memory)")  # fmt: skip
    p.add_argument("--memory", type=positive_float,
                   help="GB of a device not in the catalog (with --bandwidth)")  # fmt: skip
    p.add_argument("--link-gbps", type=positive_float,
                   help="per-direction GB/s of that device's TP link (PCIe-like latency); "
                   "none: a network")  # fmt: skip
    p.add_argument(
        "--kv-headroom",
        type=fraction,
        default=N.KV_HEADROOM,
        help="fraction of memory kept for the KV cache, activations and runtime",
    )
    p.add_argument("--catalog", default=str(cat.DEFAULT_CATALOG), help="hardware catalog file")
    p.set_defaults(func=_decode)


# One registrar per napkin subcommand (hwlab napkin <name>).
NAPKINS: list[Callable] = [_register_tp, _register_decode]


def register_cli(sub) -> None:
    p = sub.add_parser("napkin", help="the writeup's napkin models for any model and hardware")
    napkins = p.add_subparsers(
        dest="napkin", required=True, metavar="NAPKIN", parser_class=_OneLineParser
    )
    for register in NAPKINS:
        register(napkins)
