"""The ``hwlab`` command: look at hardware, napkin models and profiler outputs from a shell.

Each stage module that offers commands defines ``register_cli(subparsers)``; adding a
module to ``COMMAND_MODULES`` adds its subcommands. Modules are imported lazily enough that
``hwlab --help`` does not import torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

COMMAND_MODULES = [
    "hwlab.cli_catalog",
    "hwlab.ncu",
    "hwlab.cli_napkin",
    "hwlab.inventory",
    "hwlab.preflight",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwlab",
        description="What your hardware really does for LLM inference. The pipeline itself "
        "runs with `snakemake --cores 1 all`; these commands inspect devices, napkin models "
        "and profiler outputs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `hwlab … | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"hwlab {args.command}: {msg}", file=sys.stderr)
        return 2


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())
