"""Libraries: a file's key (library, relative path) and a claimed job's local path."""

from __future__ import annotations

import dataclasses

import pytest

from scribewatch.pipeline import config
from scribewatch.pipeline.job import Job
from scribewatch.pipeline.libraries import Libraries


def _cfg(tmp_path, **values):
    return config.load(None, {}, {"watch_dirs": [], **values})


def test_a_named_library_keys_files_by_name_and_relative_path(tmp_path):
    movies = tmp_path / "mnt" / "movies"
    (movies / "sub").mkdir(parents=True)
    libs = Libraries.from_config(_cfg(tmp_path, libraries={"movies": str(movies)}))
    assert libs.roots == [str(movies.resolve())]
    assert libs.key(str(movies / "sub" / "x.mkv")) == ("movies", "sub/x.mkv")
    assert libs.key(str(movies / "x.mkv"), str(movies)) == ("movies", "x.mkv")
    assert libs.names_of([str(movies)]) == ["movies"] and libs.names_of([]) == []


def test_a_plain_watch_folder_is_a_library_named_by_its_path(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    libs = Libraries.from_config(_cfg(tmp_path, watch_dirs=[str(inbox)]))
    assert libs.key(str(inbox / "a" / "b.mp3")) == (str(inbox), "a/b.mp3")


def test_a_job_queued_by_another_node_runs_at_this_nodes_mount(tmp_path):
    here = tmp_path / "data" / "movies"
    here.mkdir(parents=True)
    libs = Libraries.from_config(_cfg(tmp_path, libraries={"movies": str(here)}))
    fields = {f.name: None for f in dataclasses.fields(Job)}
    job = Job(**{**fields, "id": 1, "path": "/mnt/nas/movies/sub/x.mkv", "root": "/mnt/nas/movies",
                 "status": "running", "attempts": 1, "not_before": 0.0, "detected_at": 0.0,
                 "stage_seconds": {}, "outputs": [], "library": "movies",
                 "rel_path": "sub/x.mkv", "takeovers": 0})
    local = libs.localize(job)
    assert (local.path, local.root) == (str(here / "sub" / "x.mkv"), str(here))


def test_settings_for_several_machines_are_checked(tmp_path):
    cfg = _cfg(tmp_path, libraries={"movies": "/m"}, store_url="postgresql://u:p@h/db",
               node_name="gpu-box", lease_seconds=30, heartbeat_seconds=5)
    assert (cfg.node_name, cfg.lease_seconds, cfg.heartbeat_seconds) == ("gpu-box", 30.0, 5.0)
    with pytest.raises(config.ConfigError, match="heartbeat_seconds"):
        _cfg(tmp_path, libraries={"movies": "/m"}, lease_seconds=10, heartbeat_seconds=6)
    with pytest.raises(config.ConfigError, match="store_url"):
        _cfg(tmp_path, libraries={"movies": "/m"}, store_url="mysql://x")
    with pytest.raises(config.ConfigError, match="bad library name"):
        _cfg(tmp_path, libraries={"my movies!": "/m"})
    with pytest.raises(config.ConfigError, match="watch_dirs"):
        _cfg(tmp_path)   # neither watch_dirs nor libraries
