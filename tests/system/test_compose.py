"""Static checks of the container stack: compose.yaml (+ compose.gpu.yaml), the Dockerfiles.

No Docker engine is needed: `docker-compose config` (Debian's docker-compose) validates and
resolves the compose files; the Dockerfiles are checked by reading them. Building and running
the images needs an engine and the network, and is not done here.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.harness import REPO, require_binary
from tests.harness.docker import instructions as _instructions

SERVICES = {"scribewatch", "prometheus", "alertmanager", "grafana"}
PASSWORD = "test-only-password"


def compose_config(tmp_path: Path, *files: str, env: dict | None = None,
                   check: bool = True) -> subprocess.CompletedProcess:
    binary = require_binary("docker-compose")
    # An empty env file: a developer's own .env must not change what is tested.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    args = [binary, "--project-directory", str(REPO), "--env-file", str(env_file)]
    for f in files or ("compose.yaml",):
        args += ["-f", str(REPO / f)]
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("GRAFANA_", "MEDIA_DIR", "SCRIBEWATCH_", "COMPOSE_"))}
    environment.update({"GRAFANA_ADMIN_PASSWORD": PASSWORD, "MEDIA_DIR": str(tmp_path)})
    environment.update(env or {})
    environment = {k: v for k, v in environment.items() if v is not None}
    result = subprocess.run(args + ["config"], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return result


@pytest.fixture
def config(tmp_path) -> dict:
    return yaml.safe_load(compose_config(tmp_path).stdout)


@pytest.fixture
def gpu_config(tmp_path) -> dict:
    return yaml.safe_load(compose_config(tmp_path, "compose.yaml", "compose.gpu.yaml").stdout)


def _binds(service: dict) -> list[tuple[str, str, str]]:
    """(host path, container path, mode) of the bind mounts; named volumes left out."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((v["source"], v["target"], "ro" if v.get("read_only") else "rw"))
            continue
        parts = v.split(":")
        if parts[0].startswith(("/", ".")):
            out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return out


def _named(service: dict) -> dict[str, str]:
    """container path -> named volume."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            if v.get("type") == "volume":
                out[v["target"]] = v["source"]
            continue
        parts = v.split(":")
        if not parts[0].startswith(("/", ".")):
            out[parts[1]] = parts[0]
    return out


def _host_path(service: dict, container_path: str) -> Path | None:
    """The repository file a container path comes from, through the service's bind mounts."""
    for src, dst, _ in _binds(service):
        if container_path == dst or container_path.startswith(dst.rstrip("/") + "/"):
            return Path(src) / os.path.relpath(container_path, dst)
    return None


def _flag(service: dict, name: str) -> str | None:
    for arg in service.get("command", []):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


# -- compose -----------------------------------------------------------------------------------
def test_compose_config_is_valid(config):
    assert set(config["services"]) == SERVICES
    assert "version" not in yaml.safe_load((REPO / "compose.yaml").read_text())


def test_grafana_password_is_required_and_not_inline(tmp_path):
    text = (REPO / "compose.yaml").read_text()
    assert "GRAFANA_ADMIN_PASSWORD:?" in text
    result = compose_config(tmp_path, env={"GRAFANA_ADMIN_PASSWORD": None}, check=False)
    assert result.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in result.stderr
    example = (REPO / ".env.example").read_text()
    assert re.search(r"^GRAFANA_ADMIN_PASSWORD=", example, re.M)


def test_every_compose_variable_is_documented_in_env_example():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(),
                                re.M))
    for name in ("compose.yaml", "compose.gpu.yaml", "compose.cluster.yaml"):
        for var in re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (REPO / name).read_text()):
            assert var in documented, f"{name}: ${{{var}}} is not in .env.example"


def test_gpu_override(gpu_config):
    svc = gpu_config["services"]["scribewatch"]
    assert svc["build"]["dockerfile"] == "Dockerfile.cuda"
    (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert svc["environment"]["SCRIBEWATCH_DEVICE"] == "cuda"
    assert svc["image"] != gpu_config["services"]["prometheus"]["image"]


def test_gpu_jit_cache_is_kept_on_a_volume(gpu_config):
    """CUDA's JIT cache (PTX compiled for Hopper/Blackwell on first use, ~12 s) lives on a named
    volume and may grow past the PTX of CTranslate2's kernels, so a restart does not pay again;
    the base file's volumes are still there."""
    svc = gpu_config["services"]["scribewatch"]
    env = svc["environment"]
    cache = Path(env["CUDA_CACHE_PATH"])
    named = _named(svc)
    mounts = [target for target in named if cache == Path(target) or Path(target) in cache.parents]
    assert mounts, f"CUDA_CACHE_PATH {cache} is not on a named volume ({named})"
    assert named[mounts[0]] in gpu_config["volumes"]
    # CUDA's maximum: 4 GiB
    assert 1 * 1024 ** 3 <= int(env["CUDA_CACHE_MAXSIZE"]) <= 4 * 1024 ** 3
    assert {"/data", "/models"} <= set(named)
    steps = _instructions(REPO / "Dockerfile.cuda")
    assert any(w == "ENV" and f"CUDA_CACHE_PATH={cache}" in a for w, a in steps)
    assert any(w == "VOLUME" and str(cache.parent) in a for w, a in steps)


def test_host_paths_exist(config, gpu_config, tmp_path):
    for cfg in (config, gpu_config):
        for name, svc in cfg["services"].items():
            for src, dst, _ in _binds(svc):
                assert Path(src).exists(), f"{name}: bind source {src} (-> {dst}) does not exist"
            build = svc.get("build")
            if build:
                context = Path(build["context"])
                assert context.is_dir(), build
                assert (context / build.get("dockerfile", "Dockerfile")).is_file(), build
    media = [b for b in _binds(config["services"]["scribewatch"]) if b[1] == "/media"]
    assert media and Path(media[0][0]) == tmp_path, "MEDIA_DIR is not mounted on /media"


def test_config_folders_are_mounted_read_only(config):
    s = config["services"]
    expected = {
        "prometheus": {REPO / "prometheus"},
        "alertmanager": {REPO / "alertmanager"},
        "grafana": {REPO / "grafana/provisioning", REPO / "grafana/dashboards"},
    }
    for name, folders in expected.items():
        binds = {Path(src): mode for src, _, mode in _binds(s[name])}
        for folder in folders:
            assert binds.get(folder) == "ro", f"{name}: {folder} not mounted read-only: {binds}"


def test_data_lives_in_named_volumes(config):
    s = config["services"]
    wanted = {"scribewatch": ["/data", "/models"], "prometheus": ["/prometheus"],
              "alertmanager": ["/alertmanager"], "grafana": ["/var/lib/grafana"]}
    for name, paths in wanted.items():
        named = _named(s[name])
        for path in paths:
            assert path in named, f"{name}: {path} is not a named volume ({named})"
            assert named[path] in config["volumes"]
    assert _flag(s["prometheus"], "--storage.tsdb.path") == "/prometheus"
    assert _flag(s["alertmanager"], "--storage.path") == "/alertmanager"
    env = s["scribewatch"]["environment"]
    assert env["SCRIBEWATCH_DB"].startswith("/data/")
    assert env["HF_HOME"].startswith("/models")


def test_healthchecks(config):
    expect = {"scribewatch": "/readyz", "prometheus": "/-/ready", "alertmanager": "/-/ready",
              "grafana": "/api/health"}
    for name, path in expect.items():
        hc = config["services"][name].get("healthcheck")
        assert hc and not hc.get("disable"), f"{name}: no health check"
        assert any(path in part for part in hc["test"]), f"{name}: {hc['test']}"


def test_images_pinned(config, gpu_config):
    for cfg in (config, gpu_config):
        for name, svc in cfg["services"].items():
            image = svc.get("image")
            assert image, f"{name}: no image (tag)"
            repo, _, tag = image.rpartition(":")
            assert repo and "/" not in tag, f"{name}: {image} has no tag"
            assert tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"{name}: {image}"


def test_the_stack_is_wired(config):
    """Cross-file wiring: config files the services are pointed at exist and agree."""
    s = config["services"]
    env = s["scribewatch"]["environment"]
    assert env["SCRIBEWATCH_LISTEN"].endswith(":9847")
    assert env["SCRIBEWATCH_WATCH_DIRS"] == "/media"
    # Grafana: the provider reads where the dashboards are mounted; the home dashboard exists.
    provider = yaml.safe_load(
        (REPO / "grafana/provisioning/dashboards/scribewatch.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert _host_path(s["grafana"], path) == REPO / "grafana/dashboards"
    home = s["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path(s["grafana"], home).is_file(), home
    assert _host_path(s["grafana"], "/etc/grafana/provisioning") == REPO / "grafana/provisioning"
    # Alertmanager's config file comes from ./alertmanager.
    am = _host_path(s["alertmanager"], _flag(s["alertmanager"], "--config.file"))
    assert am and am.is_file(), am
    # Prometheus' config comes from ./prometheus, loads the project's rules ...
    prom_path = _host_path(s["prometheus"], _flag(s["prometheus"], "--config.file"))
    assert prom_path and prom_path.is_file(), prom_path
    prom = yaml.safe_load(prom_path.read_text())
    rule_files = {Path(f).name for f in prom.get("rule_files", [])}
    assert {"recording.yml", "alerts.yml"} <= rule_files or any("*" in f for f in rule_files)


def test_prometheus_in_compose_scrapes_the_daemon_service(config):
    """Inside the compose network the daemon is `scribewatch:9847` and Alertmanager
    `alertmanager:9093`: the config file compose gives Prometheus must say so."""
    s = config["services"]
    prom_path = _host_path(s["prometheus"], _flag(s["prometheus"], "--config.file"))
    prom = yaml.safe_load(prom_path.read_text())
    targets = [t for job in prom["scrape_configs"] if job["job_name"] == "scribewatch"
               for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
    am_targets = [t for am in prom.get("alerting", {}).get("alertmanagers", [])
                  for sc in am.get("static_configs", []) for t in sc.get("targets", [])]
    assert "scribewatch:9847" in targets, (
        f"{prom_path.relative_to(REPO)} scrapes {targets}: in the compose stack the daemon is "
        "scribewatch:9847 (localhost is the Prometheus container itself)")
    assert "alertmanager:9093" in am_targets, (
        f"{prom_path.relative_to(REPO)} sends alerts to {am_targets}, not alertmanager:9093")


def test_ports(config):
    published = {}
    for name, svc in config["services"].items():
        for p in svc.get("ports", []):
            text = (p if isinstance(p, str)
                    else f"{p.get('host_ip', '')}:{p['published']}:{p['target']}")
            host_ip, published_port, target = re.fullmatch(
                r"(?:([\d.]+):)?(\d+):(\d+)(?:/tcp)?", text).groups()
            published[name] = (host_ip, int(published_port), int(target))
    assert published["scribewatch"][1:] == (9847, 9847)
    assert published["prometheus"][1:] == (9090, 9090)
    assert published["alertmanager"][1:] == (9093, 9093)
    assert published["grafana"][1:] == (3000, 3000)
    # No login on the first three: loopback unless the user opts in.
    for name in ("scribewatch", "prometheus", "alertmanager"):
        assert published[name][0] == "127.0.0.1", (name, published[name])


# -- Dockerfiles -------------------------------------------------------------------------------
def test_stack_docs_cover_the_essentials():
    text = (REPO / "README.md").read_text()
    for needed in ("docker compose up", "compose.gpu.yaml", ":9847", ":9090", ":9093", ":3000",
                   "GRAFANA_ADMIN_PASSWORD", "grafana/dashboards", "prometheus/rules"):
        assert needed in text, f"README does not mention {needed}"


def test_env_file_is_ignored_by_git():
    check = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO)
    assert check.returncode == 0, ".env (the stack's password) is not in .gitignore"
    check = subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=REPO)
    assert check.returncode == 1, ".env.example must stay tracked"


@pytest.mark.parametrize("password, starts", [("change-me", False), ("", False),
                                              (PASSWORD, True)])
def test_grafana_refuses_the_example_password(tmp_path, password, starts):
    """The entrypoint compose gives Grafana, run with sh and the environment compose resolves
    for it: the example password stops it with a message; any other runs the image's command."""
    resolved = compose_config(tmp_path, env={"GRAFANA_ADMIN_PASSWORD": password or PASSWORD})
    grafana = yaml.safe_load(resolved.stdout)["services"]["grafana"]
    env = dict(grafana["environment"])
    if not password:   # compose's `:?` refuses an empty one itself; the check does too
        env["GF_SECURITY_ADMIN_PASSWORD"] = ""
    shell, script, *command = grafana["entrypoint"]
    assert shell == "/bin/sh" and command == ["/run.sh"]   # the grafana image's own entrypoint
    host_script = _host_path(grafana, script)
    assert host_script and host_script.is_file(), script
    marker = tmp_path / "started"
    result = subprocess.run(["sh", str(host_script), "touch", str(marker)], env=env,
                            capture_output=True, text=True, timeout=10)
    assert marker.exists() == starts
    if starts:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1
        assert "change-me" in result.stderr and ".env" in result.stderr


# -- the cluster override: PostgreSQL and a second node ------------------------------------------
@pytest.fixture
def cluster_config(tmp_path) -> dict:
    return yaml.safe_load(compose_config(tmp_path, "compose.yaml", "compose.cluster.yaml",
                                         env={"POSTGRES_PASSWORD": "pg-test-only"}).stdout)


def test_cluster_override_adds_postgres_and_a_second_node(cluster_config):
    s = cluster_config["services"]
    assert set(s) == SERVICES | {"postgres", "scribewatch-b"}
    pg = s["postgres"]
    repo, _, tag = pg["image"].rpartition(":")
    assert repo == "postgres" and re.match(r"15\.\d+", tag), pg["image"]
    assert _named(pg)["/var/lib/postgresql/data"] in cluster_config["volumes"]
    assert "pg_isready" in pg["healthcheck"]["test"]
    nodes = [s["scribewatch"], s["scribewatch-b"]]
    urls = {n["environment"]["SCRIBEWATCH_STORE_URL"] for n in nodes}
    assert urls == {"postgresql://scribewatch:pg-test-only@postgres:5432/scribewatch"}
    assert {n["environment"]["SCRIBEWATCH_NODE_NAME"] for n in nodes} == {"node-a", "node-b"}
    for node in nodes:
        assert node["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert node["environment"]["SCRIBEWATCH_LIBRARIES"] == "{media: /media}"
        assert [b[1] for b in _binds(node)] == ["/media"]
    assert s["scribewatch-b"]["image"] == s["scribewatch"]["image"]
    # The nodes' settings as the daemon reads them from that environment.
    from scribewatch.pipeline import config as config_mod
    cfg = config_mod.load(None, {k: str(v) for k, v in nodes[1]["environment"].items()
                                 if k.startswith("SCRIBEWATCH_")})
    assert cfg.libraries == {"media": "/media"} and cfg.watch_dirs == ()
    assert cfg.heartbeat_seconds * 2 <= cfg.lease_seconds


def test_cluster_override_needs_a_postgres_password(tmp_path):
    result = compose_config(tmp_path, "compose.yaml", "compose.cluster.yaml",
                            env={"POSTGRES_PASSWORD": None}, check=False)
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr
    assert "pg-test-only" not in (REPO / "compose.cluster.yaml").read_text()


def test_cluster_prometheus_scrapes_both_nodes_as_one_cluster(cluster_config):
    prom_service = cluster_config["services"]["prometheus"]
    prom_path = _host_path(prom_service, _flag(prom_service, "--config.file"))
    prom = yaml.safe_load(prom_path.read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "scribewatch"]
    (static,) = job["static_configs"]
    assert sorted(static["targets"]) == ["scribewatch-b:9847", "scribewatch:9847"]
    assert static["labels"]["cluster"]
    base = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    assert prom["rule_files"] == base["rule_files"] and prom["alerting"] == base["alerting"]
