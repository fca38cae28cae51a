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
    "hwlab.cli_config",
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


def describe_error(e: BaseException) -> str:
    """One line for an error that ends a command (no traceback)."""
    import gzip
    import zlib

    if isinstance(e, KeyError) and e.args:
        msg = str(e.args[0])
    elif isinstance(e, IsADirectoryError):
        msg = f"{e.filename}: is a directory, not a file"
    elif isinstance(e, FileNotFoundError):
        msg = f"{e.filename}: no such file" if e.filename else str(e)
    elif isinstance(e, OSError) and e.filename and e.strerror:
        msg = f"{e.filename}: {e.strerror}"
    elif isinstance(e, EOFError | gzip.BadGzipFile | zlib.error):
        msg = f"truncated or corrupt compressed input ({e})"
    elif isinstance(e, ValueError | RuntimeError):
        msg = str(e)
    else:
        msg = f"{type(e).__name__}: {e}"
    lines = [ln for ln in msg.splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; any error ends it with one line on stderr and exit code 2
    (HWLAB_DEBUG=1 shows the traceback instead)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `hwlab … | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"hwlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the generic guard: never a traceback
        if os.environ.get("HWLAB_DEBUG"):
            raise
        print(f"hwlab {args.command}: {describe_error(e)}", file=sys.stderr)
        return 2


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())
