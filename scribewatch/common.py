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
    return config_mod.load(path, flags=config_mod.flags_from_args(args))
