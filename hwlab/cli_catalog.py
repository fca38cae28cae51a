"""``hwlab catalog`` and ``hwlab device``: the hardware catalog and what this machine is."""

from __future__ import annotations

import argparse

from hwlab import catalog as cat
from hwlab import formulas as F


def _catalog(args: argparse.Namespace) -> int:
    entries = cat.load(args.file)
    if args.key:
        if args.key not in entries:
            raise KeyError(f"{args.key!r} is not in the catalog; known: {', '.join(entries)}")
        from hwlab.cli import print_json

        print_json(entries[args.key])
        return 0
    import pandas as pd

    rows = []
    for key, e in entries.items():
        dense = cat.peak_tflops(e, args.dtype)
        sparse = cat.peak_tflops(e, args.dtype, sparse=True)
        rows.append(
            {
                "key": key,
                "name": e["name"],
                "memory_gb": e["memory_gb"],
                "mem_bw_gbps": e["mem_bw_gbps"],
                f"{args.dtype}_dense_tflops": dense,
                f"{args.dtype}_sparse_tflops": sparse,
                "ridge_dense": F.ridge_point(dense, e["mem_bw_gbps"]) if dense else None,
                "ridge_sparse": F.ridge_point(sparse, e["mem_bw_gbps"]) if sparse else None,
            }
        )
    from hwlab.io import markdown

    df = pd.DataFrame(rows)
    print(markdown(df.astype(object).where(df.notna(), None)))
    return 0


def _device(args: argparse.Namespace) -> int:
    from hwlab.cli import print_json
    from hwlab.device import detect

    info = detect(args.device)
    key, how = cat.resolve(args.hardware, info, cat.load(args.file))
    info.update(catalog_key=key, catalog_reason=how)
    print_json(info)
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("catalog", help="list the hardware catalog, or show one entry")
    p.add_argument("key", nargs="?", help="catalog key (e.g. h100_sxm) to show in full")
    p.add_argument("--dtype", default="bf16", help="dtype of the peak columns (default bf16)")
    p.add_argument("--file", default=cat.DEFAULT_CATALOG, help="catalog file")
    p.set_defaults(func=_catalog)

    p = sub.add_parser("device", help="detect this machine's device and its catalog entry")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--hardware", default="auto", help="catalog key, or auto")
    p.add_argument("--file", default=cat.DEFAULT_CATALOG, help="catalog file")
    p.set_defaults(func=_device)
