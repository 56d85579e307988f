"""What the runner's and the prefetch's tests share: a runner on the offline tiny.en model."""

from __future__ import annotations

import pytest

from scribewatch.pipeline import config
from scribewatch.pipeline.daemon.runner import Runner, model_from_config, options_from_config


@pytest.fixture(scope="module")
def runner(model_dir, tmp_path_factory):
    cfg = config.load(None, environ={}, flags={
        "watch_dirs": [str(tmp_path_factory.mktemp("w"))], "model": model_dir,
        "output_formats": ["srt"], "cpu_threads": 2, "temperature": 0})
    return Runner(cfg, model_from_config(cfg), options_from_config(cfg), None)
