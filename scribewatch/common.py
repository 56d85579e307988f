"""What every sub-command shares: exit codes, logging, and where the configuration comes from."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .pipeline import config as config_mod

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def load_config(args) -> config_mod.Config:
    """--config FILE, else $SCRIBEWATCH_CONFIG, else ./scribewatch.yaml; then env and flags."""
    path = getattr(args, "config", None) or os.environ.get("SCRIBEWATCH_CONFIG")
    if path is None and Path("scribewatch.yaml").is_file():
        path = "scribewatch.yaml"
    return config_mod.load(path, flags=flags_from_args(args))


def add_flags(parser) -> None:
    """One `--key` flag per setting of pipeline/config.py (dest = key, default = unset); none
    for a secret, which a command line would show to every user of the machine (`ps`)."""
    import argparse

    group = parser.add_argument_group("settings (override the config file and environment)")
    for s in config_mod.SCHEMA:
        if s.secret:
            continue
        if s.key == "watch_dirs":
            group.add_argument("--watch", dest="watch_dirs", action="append", metavar="DIR",
                               default=argparse.SUPPRESS, help=s.help + " Repeatable.")
            continue
        if s.key == "output_dir":
            # Giving an output folder on the command line implies output_dir mode.
            group.add_argument("--output-dir", dest="output_dir", metavar="DIR",
                               default=argparse.SUPPRESS,
                               help=s.help + " Implies output_mode output_dir.")
            continue
        kwargs = dict(dest=s.key, default=argparse.SUPPRESS, help=s.help)
        if s.kind == "list":
            kwargs["metavar"] = "A,B"
        elif s.kind == "bool":
            kwargs["metavar"] = "true|false"
        elif s.key == "db":
            kwargs["metavar"] = "PATH"
        elif s.key == "listen":
            kwargs["metavar"] = "HOST:PORT"
        group.add_argument(config_mod.flag_name(s.key), **kwargs)


def flags_from_args(args) -> dict:
    # None: a sub-command's own optional flag left out (`history --db`), not a value given.
    flags = {s.key: getattr(args, s.key) for s in config_mod.SCHEMA
             if getattr(args, s.key, None) is not None}
    if "output_dir" in flags and "output_mode" not in flags:
        flags["output_mode"] = "output_dir"
    return flags
