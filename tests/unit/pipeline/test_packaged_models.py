"""pipeline.packaged_models: the multilingual `base` model from the `multilingual` extra's two
packages, assembled once, checked against its pinned digests, and really working offline."""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from scribewatch.pipeline.guards import normalize_text
from scribewatch.pipeline.model import resolve_model
from scribewatch.pipeline.packaged_models import (
    BASE_FILES,
    BASE_FOLDER,
    BaseParts,
    ModelIntegrityError,
    assemble_base,
    base_parts,
    locate,
)
from tests.harness import JFK_TEXT

GERMAN_FROM = 30.5     # multilingual.mp3: English licence, then the same in German


@pytest.fixture(scope="module")
def parts() -> BaseParts:
    found = base_parts()
    if found is None:
        pytest.fail("the multilingual extra is not installed: "
                    "pip install -e '.[test]' (or '.[multilingual]')")
    return found


@pytest.fixture(scope="module")
def base_model(parts, tmp_path_factory):
    from faster_whisper import WhisperModel

    folder, name = resolve_model("base", str(tmp_path_factory.mktemp("models")))
    assert name == "base"
    return WhisperModel(folder, device="cpu", compute_type="int8", cpu_threads=2)


def flip_byte(path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_base_resolves_to_the_assembled_folder_once(parts, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path, name = resolve_model("base", str(tmp_path))
    assert (path, name) == (str(tmp_path / BASE_FOLDER), "base")
    assert sorted(os.listdir(path)) == sorted(BASE_FILES)
    assert os.path.getsize(os.path.join(path, "model.bin")) == 145_217_607
    assert "assembled the multilingual base model" in caplog.text
    assert f"model base: {path} (assembled)" in caplog.text          # never silent
    inode = os.stat(os.path.join(path, "model.bin")).st_ino
    caplog.clear()
    assert resolve_model("base", str(tmp_path)) == (path, "base")
    assert os.stat(os.path.join(path, "model.bin")).st_ino == inode   # reused, not rebuilt
    assert "assembled the multilingual" not in caplog.text
    assert os.listdir(tmp_path) == [BASE_FOLDER]                      # no temporary left over


def test_without_models_dir_the_xdg_cache_holds_it(parts, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = locate("base")
    assert (source.path, source.origin) == (
        str(tmp_path / "scribewatch" / "models" / BASE_FOLDER), "assembled")


def test_an_unwritable_cache_falls_back_to_the_download_loudly(parts, tmp_path, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    source = locate("base", str(blocked))
    assert (source.path, source.name, source.origin) == ("base", "base", "download")
    assert "faster-whisper will download it" in caplog.text


def test_a_corrupted_part_is_refused(parts, tmp_path):
    copies = tmp_path / "parts"
    copies.mkdir()
    for source in (parts.part1, parts.part2, *(parts.files / n for n in BASE_FILES
                                              if n != "model.bin")):
        shutil.copy(source, copies / source.name)
    flip_byte(copies / "model.bin.part2", 12_345_678)
    cache = tmp_path / "cache"
    with pytest.raises(ModelIntegrityError, match="model.bin .*refusing"):
        assemble_base(cache, BaseParts(copies / "model.bin.part1", copies / "model.bin.part2",
                                       copies))
    assert os.listdir(cache) == []                     # neither the model nor a temporary


def test_a_damaged_cached_copy_is_rebuilt(parts, tmp_path, caplog):
    folder = assemble_base(tmp_path, parts)
    flip_byte(folder / "model.bin", 1000)
    assert assemble_base(tmp_path, parts) == folder
    assert "is damaged" in caplog.text
    assert os.path.getsize(folder / "model.bin") == BASE_FILES["model.bin"][0]


def test_base_transcribes_english_exactly(base_model, media):
    from scribewatch.pipeline.stages import decode

    segments, info = base_model.transcribe(decode(media / "jfk.flac"), beam_size=5,
                                           vad_filter=True, condition_on_previous_text=False,
                                           temperature=0.0)   # no sampled fallback
    text = "".join(s.text for s in segments)
    assert info.language == "en" and info.language_probability > 0.9
    assert normalize_text(text) == normalize_text(JFK_TEXT)


def test_base_knows_german(base_model, media):
    from scribewatch.pipeline.stages import decode

    audio = decode(media / "multilingual.mp3")
    german = audio[int(GERMAN_FROM * 16_000):]
    language, probability, _ = base_model.detect_language(audio=german)
    assert language == "de" and probability > 0.9
