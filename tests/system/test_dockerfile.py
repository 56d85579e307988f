"""Static checks of the images: Dockerfile and Dockerfile.cuda (pinned bases, a non-root user,
a health check on /readyz, every file the package build needs copied in and not ignored)."""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.harness import REPO
from tests.harness.docker import dockerignored as _dockerignored
from tests.harness.docker import instructions as _instructions


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile(name):
    path = REPO / name
    steps = _instructions(path)
    stages = []
    copied = set()
    for word, args in steps:
        if word == "FROM":
            parts = args.split()
            image = parts[0]
            if image in stages:
                continue
            repo, _, tag = image.rpartition(":")
            assert repo and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), \
                f"{name}: base image {image} not pinned to a version tag"
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.append(parts[2])
        if word == "COPY" and "--from=" not in args:
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            for src in sources:
                assert (REPO / src).exists(), f"{name}: COPY source {src} does not exist"
                assert not _dockerignored(src), f"{name}: COPY source {src} is in .dockerignore"
                copied.add(src.rstrip("/"))
    # The last stage is the image that runs.
    last = max(i for i, (w, _) in enumerate(steps) if w == "FROM")
    final = steps[last:]
    users = [a for w, a in final if w == "USER"]
    assert users, f"{name}: the image runs as root (no USER)"
    assert users[-1].split(":")[0] not in ("root", "0"), f"{name}: USER {users[-1]}"
    health = [a for w, a in final if w == "HEALTHCHECK"]
    assert health and "/readyz" in health[-1] and "curl" not in health[-1], name
    assert any(w == "EXPOSE" and "9847" in a for w, a in final), f"{name}: no EXPOSE 9847"
    entry = [a for w, a in final if w == "ENTRYPOINT"]
    assert entry and entry[-1].replace(" ", "") == '["scribewatch","run"]', entry
    assert any(w == "VOLUME" and "/models" in a and "/data" in a for w, a in final)
    # pip install of the project needs everything pyproject.toml refers to.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    tool = project["tool"]["setuptools"]
    folders = tool.get("package-dir", {})   # scribewatch.pipeline is built from pipeline/

    def folder(package: str) -> str:
        """Where setuptools builds `package` from: its package-dir, else its parent's + name
        (scribewatch.pipeline.notify comes from pipeline/notify, inside pipeline/)."""
        if package in folders:
            return folders[package]
        parent, _, name = package.rpartition(".")
        return folder(parent) + "/" + name if parent in folders else package

    # A sub-package is copied with its top folder.
    needed = {"pyproject.toml", *(folder(p).split("/")[0] for p in tool["packages"])}
    readme = project["project"].get("readme")
    if isinstance(readme, str):
        needed.add(readme)
    missing = needed - copied
    assert not missing, f"{name}: not copied into the build: {sorted(missing)}"


# The python3 each Ubuntu LTS base installs (Dockerfile.cuda uses the distribution's Python).
UBUNTU_PYTHON = {"20.04": (3, 8), "22.04": (3, 10), "24.04": (3, 12)}


def test_cuda_base_matches_ctranslate2_and_requires_python():
    """CTranslate2 4.x wheels are built for CUDA 12 and cuDNN 9, with PTX that needs CUDA 12.8
    on Hopper/Blackwell; the base's own python3 must meet requires-python, or pip refuses the
    wheel (a 22.04 base with Python 3.10 did)."""
    base = [a.split()[0] for w, a in _instructions(REPO / "Dockerfile.cuda")
            if w == "FROM" and a.startswith("nvidia/cuda:")]
    assert base, "Dockerfile.cuda: no nvidia/cuda base"
    tag = base[-1].split(":", 1)[1]
    cuda = tuple(int(x) for x in tag.split("-")[0].split(".")[:2])
    assert cuda[0] == 12 and cuda >= (12, 8), tag
    assert "-cudnn-" in tag or "cudnn9" in tag, tag
    assert "runtime" in tag, tag
    ubuntu = tag.rsplit("ubuntu", 1)[1]
    floor = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    wanted = tuple(int(x) for x in floor.removeprefix(">=").split("."))
    assert UBUNTU_PYTHON[ubuntu] >= wanted, f"ubuntu {ubuntu} has Python {UBUNTU_PYTHON[ubuntu]}"
