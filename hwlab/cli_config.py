"""``hwlab check-config``: validate config files the way the workflow does, without it.

Snakemake reads ``--configfile`` files itself before the workflow starts, and a YAML error
there only says "Config file is not valid JSON or YAML"; this names the file, the line and
the column, then applies the workflow's own checks (``hwlab.config.config_errors``: schema
types and ranges, files that must exist, regular expressions, cross-key rules) to the
merged configuration.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hwlab import config as hwconfig

ROOT = Path(__file__).resolve().parent.parent


def _merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def _check(args: argparse.Namespace) -> int:
    config = hwconfig.load_yaml(ROOT / "config" / "config.yaml", "config file") or {}
    for f in args.files:
        data = hwconfig.load_yaml(f, "config file")
        if data is None:
            continue
        if not isinstance(data, dict):
            raise hwconfig.ConfigError(f"{f}: a config file is a mapping of keys at top level")
        _merge(config, data)
    errors = hwconfig.config_errors(config, ROOT)
    if errors:
        raise hwconfig.ConfigError("; ".join(errors))
    print(f"{', '.join(args.files)}: valid (run {config['run']!r})")
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate config files as the workflow does (names the file and line)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("files", nargs="+", help="config files, applied in order on the default")
    p.set_defaults(func=_check)
