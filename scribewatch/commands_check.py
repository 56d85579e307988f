"""`scribewatch check` (the configuration, folders, store, model and GPUs before a start) and
`scribewatch status` (what a running daemon is doing, from its /api/status)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .common import EXIT_FAILURE, EXIT_OK, load_config, setup_logging


# -- check -------------------------------------------------------------------------------------
def cmd_check(args) -> int:
    import yaml

    cfg = load_config(args)
    setup_logging("warning")
    print("# resolved configuration")
    from .pipeline.store import describe, is_postgres_url, sqlite_path

    shown = cfg.as_dict()
    if shown.get("store_url"):
        shown["store_url"] = describe(shown["store_url"])   # never print the password
    from .pipeline.notify.http import shown_url

    for key in ("jellyfin_url", "emby_url", "plex_url"):
        if shown.get(key):
            shown[key] = shown_url(shown[key])
    # a webhook URL's path is often its secret (Slack, Discord, Home Assistant)
    shown["on_finished"] = [shown_url(u, secret_path=True) for u in shown.get("on_finished") or ()]
    print(yaml.safe_dump(shown, sort_keys=False).rstrip())
    print("# checks")
    problems = 0

    def report(ok: bool, what: str) -> None:
        nonlocal problems
        problems += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}")

    for d in cfg.watch_dirs:
        report(os.path.isdir(d) and os.access(d, os.R_OK | os.X_OK), f"watch folder {d} readable")
    if cfg.output_mode == "output_dir":
        report(os.path.isdir(cfg.output_dir) and os.access(cfg.output_dir, os.W_OK),
               f"output folder {cfg.output_dir} writable")
    for name, d in cfg.libraries.items():
        report(os.path.isdir(d) and os.access(d, os.R_OK | os.X_OK),
               f"library {name}: folder {d} readable")
    if cfg.store_url and is_postgres_url(cfg.store_url):
        _check_shared_store(cfg, report)
    else:
        db = sqlite_path(cfg.store_url) if cfg.store_url else cfg.db
        db_dir = Path(db).resolve().parent
        report(db_dir.is_dir() and os.access(db_dir, os.W_OK),
               f"job store folder {db_dir} writable")
        from .pipeline.instance_lock import network_filesystem

        found = network_filesystem(db_dir)
        report(found is None or found[0] != "refuse", f"job store folder {db_dir} on a local "
               "filesystem" + (f" ({found[0]}: {found[1]})" if found else ""))
    from .pipeline.daemon.runner import model_from_config

    manager = model_from_config(cfg)
    try:
        manager.load()
        report(True, f"model {manager.name} loads on {manager.device}/{manager.compute_type} "
                     f"in {manager.load_seconds:.2f}s ({manager.source})")
    except Exception as e:
        report(False, f"model {manager.name}: {e}")
    from .pipeline.notify import check_targets

    for ok, what in check_targets(cfg):
        report(ok, what)
    from .exporter.gpu import Nvml

    gpus = Nvml().read()
    if gpus:
        for g in gpus:
            print(f"info gpu {g.index}: {g.name}, {(g.memory_total_bytes or 0) / 2**30:.1f} GiB")
    else:
        print("info no usable NVIDIA GPU (NVML unavailable): CPU inference")
    return EXIT_FAILURE if problems else EXIT_OK


# -- status ------------------------------------------------------------------------------------
def cmd_status(args) -> int:
    from .web.status_cli import StatusError, fetch_status, format_status, url_for_listen

    url = args.url
    if url is None:
        cfg = load_config(args)
        url = url_for_listen(cfg.listen, tls=bool(cfg.tls_cert_file))
    password = None
    if args.password_file:
        password = Path(args.password_file).read_text().strip()
    try:
        status = fetch_status(url, user=args.user, password=password, cafile=args.cafile,
                              insecure=args.insecure)
    except StatusError as e:
        print(f"scribewatch status: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return EXIT_OK


def _check_shared_store(cfg, report) -> None:
    """A PostgreSQL store: reachable, its schema created or migrated, writable."""
    from .pipeline.store import StoreUnavailable, describe, open_store

    where = describe(cfg.store_url)
    try:
        store = open_store(cfg.store_url)
    except StoreUnavailable as e:
        report(False, f"job store {where}: {e}")
        return
    except ImportError:
        report(False, f"job store {where}: psycopg not installed "
                      "(pip install 'scribewatch[postgres]')")
        return
    try:
        counts = store.counts()
        report(store.check_writable(), f"job store {where} reachable and writable (schema "
                                       f"{store.schema_version()}, {counts['queued']} queued)")
    finally:
        store.close()
