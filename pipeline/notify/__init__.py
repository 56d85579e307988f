"""After a subtitle is written: tell the media servers (Jellyfin, Emby, Plex) to look at its
folder again, and announce every finished job to the `on_finished` webhooks.

`notifier_from_config(cfg, reporter)` builds the sender with the configured targets (None when
none is configured); the daemon attaches it to its job store (`Daemon(notifier=...)`), whose
outbox holds what each finished job asks for (store/outbox.py). One module per target;
`sender.py` does the claiming, batching and retries for all of them.
"""

from __future__ import annotations

from ..contract import Reporter
from .http import DeliveryError
from .jellyfin import JellyfinTarget
from .paths import PathMap
from .plex import PlexTarget
from .sender import Sender
from .targets import Target
from .webhook import WebhookTarget

__all__ = ["PathMap", "Sender", "Target", "check_targets", "notifier_from_config",
           "targets_from_config"]


def targets_from_config(cfg) -> list[Target]:
    path_map = PathMap(cfg.path_map)
    targets: list[Target] = []
    if cfg.jellyfin_url:
        targets.append(JellyfinTarget(cfg.jellyfin_url, cfg.jellyfin_token, path_map))
    if cfg.emby_url:
        targets.append(JellyfinTarget(cfg.emby_url, cfg.emby_token, path_map, emby=True))
    if cfg.plex_url:
        targets.append(PlexTarget(cfg.plex_url, cfg.plex_token, path_map,
                                  section=cfg.plex_section))
    targets += [WebhookTarget(url, path_map, secret=cfg.webhook_secret)
                for url in cfg.on_finished]
    return targets


def notifier_from_config(cfg, reporter: Reporter | None = None) -> Sender | None:
    targets = targets_from_config(cfg)
    if not targets:
        return None
    if reporter is not None:
        reporter.notification_targets(tuple(sorted({t.name for t in targets})))
    return Sender(targets, reporter=reporter, batch_seconds=cfg.notify_batch_seconds,
                  max_attempts=cfg.notify_max_attempts,
                  backoff_seconds=cfg.notify_retry_backoff_seconds)


def check_targets(cfg) -> list[tuple[bool, str]]:
    """(ok, what) per media server, for `scribewatch check`: reachable, the token accepted, the
    watch folders in a Plex library. Nothing is refreshed and no webhook is sent."""
    path_map = PathMap(cfg.path_map)
    folders = [path_map(d) for d in cfg.watch_dirs]
    results = []
    for target in targets_from_config(cfg):
        check = getattr(target, "check", None)
        if check is None:
            results.append((True, f"{target.name} {target.shown}: not called (it would be "
                                  "an event)"))
            continue
        try:
            results.append((True, check(folders)))
        except DeliveryError as e:
            results.append((False, f"{target.name}: {e}"))
        except ValueError as e:     # an answer that is not the server's JSON
            results.append((False, f"{target.name}: unexpected answer ({e})"))
    return results
