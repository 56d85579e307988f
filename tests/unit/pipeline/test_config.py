"""Settings precedence and validation: flags > env > file > defaults; bad input names the key."""

import subprocess
import sys

import pytest
import yaml

from scribewatch.pipeline import config
from scribewatch.pipeline.config import ConfigError
from tests.harness import REPO


def write(tmp_path, data) -> str:
    p = tmp_path / "scribewatch.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_defaults_serve_without_a_file():
    cfg = config.load(None, environ={})
    assert cfg.watch_dirs == ("./inbox",)
    assert cfg.listen == "0.0.0.0:9847"
    assert cfg.output_mode == "beside" and cfg.output_formats == ("srt",)
    assert cfg.model == "tiny.en" and cfg.vad is True
    assert set(config.MEDIA_EXTENSIONS) <= set(cfg.include_extensions)
    assert "*.part" in cfg.ignore_globs and ".*" in cfg.ignore_globs


def test_precedence_flags_over_env_over_file(tmp_path):
    path = write(tmp_path, {"beam_size": 2, "workers": 3, "language": "de"})
    env = {"SCRIBEWATCH_BEAM_SIZE": "4", "SCRIBEWATCH_OUTPUT_FORMATS": "srt, vtt,json"}
    cfg = config.load(path, environ=env, flags={"beam_size": "7"})
    assert cfg.beam_size == 7            # flag wins
    assert cfg.workers == 3              # file
    assert cfg.language == "de"
    assert cfg.output_formats == ("srt", "vtt", "json")   # env list
    cfg = config.load(path, environ=env)
    assert cfg.beam_size == 4            # env over file


@pytest.mark.parametrize("data, key, value", [
    ({"beem_size": 5}, "beem_size", None),
    ({"beam_size": "lots"}, "beam_size", "lots"),
    ({"beam_size": 0}, "beam_size", "0"),
    ({"device": "tpu"}, "device", "tpu"),
    ({"vad": "maybe"}, "vad", "maybe"),
    ({"listen": "9847"}, "listen", "9847"),
    ({"language": "english"}, "language", "english"),
    ({"output_formats": ["srt", "docx"]}, "output_formats", "docx"),
    ({"basic_auth_users": {"prom": "hunter2"}}, "basic_auth_users", "hunter2"),
])
def test_bad_keys_and_values_name_the_key(tmp_path, data, key, value):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, data), environ={})
    assert key in str(err.value)
    if value is not None:
        assert value in str(err.value)


def test_unknown_environment_setting_is_rejected():
    with pytest.raises(ConfigError, match="SCRIBEWATCH_BEEM_SIZE"):
        config.load(None, environ={"SCRIBEWATCH_BEEM_SIZE": "3"})


def test_output_dir_mode_needs_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="output_dir"):
        config.load(write(tmp_path, {"output_mode": "output_dir"}), environ={})


def test_cli_config_error_exits_2_and_names_key(tmp_path):
    path = write(tmp_path, {"stability_seconds": "soon"})
    result = subprocess.run([sys.executable, "-m", "scribewatch", "check", "--config", path],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "stability_seconds" in result.stderr and "soon" in result.stderr


def test_cli_flags_cover_every_setting():
    from scribewatch.cli import build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for s in config.SCHEMA:
        flag = "--watch" if s.key == "watch_dirs" else config.flag_name(s.key)
        # A secret has no flag: `ps` would show it to every user of the machine.
        assert (flag in help_text) != s.secret, flag


def test_version_flag():
    result = subprocess.run([sys.executable, "-m", "scribewatch", "--version"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("scribewatch ")


def test_transcribe_nice_is_a_nice_increment():
    assert config.load(None, environ={}).transcribe_nice == 10
    assert config.load(None, environ={"SCRIBEWATCH_TRANSCRIBE_NICE": "0"}).transcribe_nice == 0
    for bad in ("20", "-1"):
        with pytest.raises(config.ConfigError, match="transcribe_nice"):
            config.load(None, environ={"SCRIBEWATCH_TRANSCRIBE_NICE": bad})


def test_each_setting_is_declared_once_as_a_config_field():
    """SCHEMA is read from Config's fields: the same keys in the same order, each field's type
    giving the kind its values are read as."""
    import dataclasses

    assert [s.key for s in config.SCHEMA] == [f.name for f in dataclasses.fields(config.Config)]
    kinds = {s.key: s.kind for s in config.SCHEMA}
    assert kinds["beam_size"] == "int" and kinds["vad"] == "bool"
    assert kinds["watch_dirs"] == "list" and kinds["output_dir"] == "optpath"
    assert config.load(None, environ={"SCRIBEWATCH_OUTPUT_DIR": ""}).output_dir is None


def test_temperature_is_unset_or_one_number():
    """Unset: Whisper's fallback list (sampled above 0); a number pins the decode."""
    assert config.load(None, environ={}).temperature is None
    assert config.load(None, environ={"SCRIBEWATCH_TEMPERATURE": "0"}).temperature == 0.0
    assert config.load(None, environ={"SCRIBEWATCH_TEMPERATURE": "none"}).temperature is None
    assert config.load(None, environ={}, flags={"temperature": "0.2"}).temperature == 0.2
    for bad in ("-0.1", "warm"):
        with pytest.raises(ConfigError, match="temperature"):
            config.load(None, environ={"SCRIBEWATCH_TEMPERATURE": bad})


@pytest.mark.parametrize("key, value, why", [
    # The server's parser: an unbracketed IPv6 address was accepted here and refused only
    # when the exporter was built.
    ("listen", "::1:9847", "brackets"),
    ("listen", "host:70000", "HOST:PORT"),
    ("listen", "127.0.0.1:0", "HOST:PORT"),     # a daemon needs a port Prometheus can find
    # The exporter's hash formats: a prefix alone no longer passes.
    ("basic_auth_users", {"prom": "$2b$12$tooshort"}, "bcrypt"),
    ("basic_auth_users", {"a:b": "sha256:" + "0" * 64}, "user name"),
    # An href on the status page: a web address only, never javascript: or a bare host.
    ("grafana_url", "javascript:alert(1)", "http"),
    ("grafana_url", "grafana.lan:3000", "http"),
    # API tokens are stored as their hash, never as themselves.
    ("api_tokens", ["sk-plain-token"], "sha256"),
    ("api_max_upload_bytes", 0, ">= 1"),
])
def test_web_settings_are_checked_by_the_exporters_rules_at_load(tmp_path, key, value, why):
    with pytest.raises(ConfigError, match=why) as err:
        config.load(write(tmp_path, {key: value}), environ={})
    assert f"'{key}'" in str(err.value)


def test_grafana_url_is_optional():
    assert config.load(None, environ={}).grafana_url is None
    cfg = config.load(None, environ={"SCRIBEWATCH_GRAFANA_URL": "https://grafana.lan/"})
    assert cfg.grafana_url == "https://grafana.lan/"


def test_tls_files_go_together():
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file go together"):
        config.load(None, environ={"SCRIBEWATCH_TLS_CERT_FILE": "cert.pem"})
    cfg = config.load(None, environ={"SCRIBEWATCH_TLS_CERT_FILE": "c.pem",
                                     "SCRIBEWATCH_TLS_KEY_FILE": "k.pem"})
    assert (cfg.tls_cert_file, cfg.tls_key_file) == ("c.pem", "k.pem")


# -- notifications (pipeline/notify) --------------------------------------------------------------
def test_media_server_settings_are_checked():
    ok = config.load(None, environ={"SCRIBEWATCH_JELLYFIN_URL": "http://jellyfin:8096",
                                    "SCRIBEWATCH_JELLYFIN_TOKEN": "abc",
                                    "SCRIBEWATCH_ON_FINISHED": "http://a/hook,https://b/x"})
    assert ok.jellyfin_url == "http://jellyfin:8096" and ok.on_finished == ("http://a/hook",
                                                                            "https://b/x")
    for key, value in [("JELLYFIN_URL", "jellyfin:8096"), ("PLEX_URL", "ftp://plex"),
                       ("PLEX_URL", "http://plex:32400/?X-Plex-Token=t"),
                       ("ON_FINISHED", "http://ok/hook,not a url")]:
        env = {"SCRIBEWATCH_" + key: value,
               "SCRIBEWATCH_JELLYFIN_TOKEN": "t", "SCRIBEWATCH_PLEX_TOKEN": "t"}
        with pytest.raises(config.ConfigError, match=key.lower()):
            config.load(None, environ=env)


@pytest.mark.parametrize("server", ["jellyfin", "emby", "plex"])
def test_a_media_server_url_needs_its_token_and_back(server):
    for env in ({f"SCRIBEWATCH_{server.upper()}_URL": "http://x:1"},
                {f"SCRIBEWATCH_{server.upper()}_TOKEN": "t"}):
        with pytest.raises(config.ConfigError, match=f"{server}_url and {server}_token"):
            config.load(None, environ=env)


def test_path_map_must_map_absolute_folders(tmp_path):
    good = config.load(write(tmp_path, {"path_map": {"/data/movies": "D:\\Movies"}}), environ={})
    assert good.path_map == {"/data/movies": "D:\\Movies"}
    with pytest.raises(config.ConfigError, match="path_map"):
        config.load(write(tmp_path, {"path_map": {"data/movies": "/mnt"}}), environ={})


def test_secrets_come_from_a_file_and_are_never_printed(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    cfg = config.load(None, environ={"SCRIBEWATCH_PLEX_URL": "http://plex:32400",
                                     "SCRIBEWATCH_PLEX_TOKEN_FILE": str(secret),
                                     "SCRIBEWATCH_WEBHOOK_SECRET": "hmac-key"})
    assert cfg.plex_token == "from-a-file" and cfg.webhook_secret == "hmac-key"
    shown = cfg.as_dict()
    assert shown["plex_token"] == shown["webhook_secret"] == "<set>"
    assert shown["jellyfin_token"] is None and shown["plex_url"] == "http://plex:32400"
    with pytest.raises(config.ConfigError, match="SCRIBEWATCH_PLEX_TOKEN_FILE"):
        config.load(None, environ={"SCRIBEWATCH_PLEX_TOKEN_FILE": str(tmp_path / "none")})
    with pytest.raises(config.ConfigError, match="unknown setting SCRIBEWATCH_PLEX_URL_FILE"):
        config.load(None, environ={"SCRIBEWATCH_PLEX_URL_FILE": str(secret)})
def test_language_settings_from_the_environment_and_their_checks():
    cfg = config.load(None, environ={
        "SCRIBEWATCH_FOLDER_LANGUAGES": "{/media/anime: ja, /media/films/de: ger}",
        "SCRIBEWATCH_PREFERRED_AUDIO_LANGUAGES": "jpn, English",
        "SCRIBEWATCH_LANGUAGE_UNCERTAIN_ACTION": "default",
        "SCRIBEWATCH_DEFAULT_LANGUAGE": "German",
        "SCRIBEWATCH_MAX_CPS": "17"})
    assert cfg.folder_languages == {"/media/anime": "ja", "/media/films/de": "ger"}
    assert cfg.preferred_audio_languages == ("jpn", "English")
    assert (cfg.language_uncertain_action, cfg.default_language, cfg.max_cps) == (
        "default", "German", 17.0)
    for key, value, why in (("preferred_audio_languages", "en,klingon", "'klingon'"),
                            ("default_language", "und", "language code"),
                            ("language_uncertain_action", "guess", "skip, default"),
                            ("max_cps", "0", ">= 1")):
        with pytest.raises(config.ConfigError, match=why):
            config.load(None, environ={config.env_name(key): value})


def test_a_retired_setting_is_ignored_with_a_warning_not_refused(tmp_path, caplog):
    """`notify_queue_size` bounded the notifications held in memory; they wait in the job
    store's outbox now and none is dropped. A config that still sets it starts."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"watch_dirs": [str(tmp_path)], "notify_queue_size": 10}))
    cfg = config.load(path, environ={"SCRIBEWATCH_NOTIFY_QUEUE_SIZE": "5"})
    assert not hasattr(cfg, "notify_queue_size")
    warnings = [r.getMessage() for r in caplog.records if "no longer a setting" in r.getMessage()]
    assert len(warnings) == 2 and "outbox" in warnings[0], warnings
    path.write_text(yaml.safe_dump({"watch_dirs": [str(tmp_path)], "notify_queue_sise": 10}))
    with pytest.raises(ConfigError, match="unknown key 'notify_queue_sise'"):
        config.load(path, environ={})
