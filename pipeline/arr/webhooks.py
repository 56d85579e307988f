"""What a Sonarr or Radarr webhook does (`contract.ArrHooks`; web/hooks.py is the HTTP side).

- `Download` (import, upgrade): each file, through `path_map` (their path → this node's), is
  taken by intake ahead of the folder backlog (`Intake.take_import`: queued, or its waiting job
  promoted; intake stays idempotent on (library, rel_path), so the watcher seeing the file later
  adds nothing), with the import's language hint. An upgrade's old files (`deletedFiles`) take
  our subtitles with them: one whose name is the new file's stem is carried to the new job as
  its own (replaced atomically when the new one is written, never a reason to skip); the others
  (a different stem: nothing shows them any more) are removed once their video is gone.
- `Rename`: our subtitles of the file (every language and format its job wrote) are renamed to
  the new stem, one atomic rename each, never over a file that is there, and the job's key
  follows (`JobStore.move_key`), so the watcher finds the renamed file done: no transcription.
- `Test` answers 200; other events (Grab, Health, …) are taken and ignored.

A path under no watched folder is refused (422, the paths in the body): a job needs a library
(its key, the mount it waits for), and a path that maps nowhere is most often a `path_map`
that is missing. Nothing is queued for it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..intake import Intake
from ..libraries import Libraries
from ..notify.paths import PathMap
from ..store import JobStore, StoreUnavailable
from ..subtitles.output import move_atomic
from . import payload
from .contract import HookAnswer

log = logging.getLogger(__name__)

# A request's outcome: the most telling of its files' (a refusal first).
_PRECEDENCE = ("outside_libraries", "missing", "queued", "promoted", "renamed", "skipped",
               "done", "ignored")
_REFUSED = {"outside_libraries", "missing"}


class ArrWebhooks:
    def __init__(self, store: JobStore, intake: Intake, libraries: Libraries,
                 path_map: PathMap, output_dir: Path | None):
        self.store, self.intake, self.libraries = store, intake, libraries
        self.path_map, self.output_dir = path_map, output_dir

    def handle(self, app: str, doc) -> HookAnswer:
        try:
            event = payload.parse(app, doc)
        except payload.BadPayload as e:
            log.warning("%s webhook refused: %s", app, e)
            return HookAnswer(400, "unknown", "bad_request", {"error": str(e)})
        if isinstance(event, payload.Other):
            test = event.event_type == "Test"
            return HookAnswer(200, "test" if test else "other", "ok" if test else "ignored",
                              {"event": event.event_type, "result": "ok" if test else "ignored"})
        name = ("rename" if isinstance(event, payload.Renamed)
                else "upgrade" if event.upgrade else "import")
        try:
            files = (self._renamed(event) if isinstance(event, payload.Renamed)
                     else self._imported(event))
        except StoreUnavailable as e:
            log.warning("%s webhook (%s): the job store is away: %s", app, name, e)
            return HookAnswer(503, name, "unavailable", {"error": f"job store unreachable: {e}"})
        outcomes = {f["result"] for f in files}
        outcome = next((o for o in _PRECEDENCE if o in outcomes), "ignored")
        status = 422 if outcomes & _REFUSED else 200
        for f in files:
            log.log(logging.WARNING if f["result"] in _REFUSED else logging.INFO,
                    "%s webhook (%s): %s: %s", app, name, f.get("path"), f["result"])
        return HookAnswer(status, name, outcome, {"event": name, "files": files})

    # -- Download ----------------------------------------------------------------------------
    def _imported(self, event: payload.Imported) -> list[dict]:
        files, placed = [], []
        for f in event.files:
            local = self.path_map.local(f.path)
            root = self.libraries.root_of(local)
            if root is None:
                files.append(_outside(f.path, local))
                continue
            placed.append((f, local, root))
        carried = self._retire(event.deleted, [local for _f, local, _r in placed])
        for f, local, root in placed:
            result = self.intake.take_import(
                local, root, language_hint=f.hint.as_dict() if f.hint else None,
                carried=tuple(carried.get(local, ())))
            entry = {"path": f.path, "local": local, "result": result,
                     "language_hint": f.hint.language if f.hint else None}
            if result == "missing":
                entry["error"] = "no such file on this node: check path_map"
            files.append(entry)
        return files

    def _retire(self, deleted: tuple[str, ...], new: list[str]) -> dict[str, list[str]]:
        """Our subtitles of an upgrade's old files: {new file: those named for its stem (its
        job replaces them)}; the rest are removed now, once their old video is gone."""
        stems = {Path(n).stem: n for n in new}
        carried: dict[str, list[str]] = {}
        for old in deleted:
            local = self.path_map.local(old)
            root = self.libraries.root_of(local)
            job = self.store.latest_for_key(*self.libraries.key(local, root)) if root else None
            for output in (job.outputs if job else ()):
                name = Path(output).name
                stem = next((s for s in stems if name.startswith(s + ".")), None)
                if stem is not None:
                    carried.setdefault(stems[stem], []).append(output)
                elif not os.path.exists(local):
                    _remove(output)
        return carried

    # -- Rename ------------------------------------------------------------------------------
    def _renamed(self, event: payload.Renamed) -> list[dict]:
        files = []
        for previous, path in event.moves:
            old, new = self.path_map.local(previous), self.path_map.local(path)
            old_root, new_root = self.libraries.root_of(old), self.libraries.root_of(new)
            if old_root is None or new_root is None:
                files.append(_outside(path, new))
                continue
            files.append({"path": path, "local": new,
                          **self._follow(old, old_root, new, new_root)})
        return files

    def _follow(self, old: str, old_root: str, new: str, new_root: str) -> dict:
        job = self.store.latest_for_key(*self.libraries.key(old, old_root))
        if job is None:
            return {"result": "ignored", "note": "no job for the previous path"}
        if job.status == "running":
            return {"result": "ignored", "note": "its job is running: the watcher takes the "
                                                 "renamed file"}
        outputs, moved = [], 0
        for output in job.outputs:
            target = self._renamed_output(Path(output), Path(old), Path(new), Path(new_root))
            if target is None:
                outputs.append(output)
                continue
            if os.path.exists(output) and not move_atomic(Path(output), target):
                log.warning("%s: not renamed to %s: a file is there", output, target)
                outputs.append(output)
                continue
            moved += os.path.exists(target)
            outputs.append(str(target))
        library, rel_path = self.libraries.key(old, old_root)
        new_library, new_rel = self.libraries.key(new, new_root)
        if self.store.move_key(library, rel_path, new, new_root, new_library, new_rel,
                               outputs) is None:
            return {"result": "ignored", "note": "its job is running: the watcher takes the "
                                                 "renamed file"}
        return {"result": "renamed", "subtitles": moved}

    def _renamed_output(self, output: Path, old: Path, new: Path,
                        new_root: Path) -> Path | None:
        """Where a subtitle of `old` goes when the video becomes `new`: the same suffix after
        the new stem (`.en.srt`, `.de.vtt`), beside the video or in output_dir's mirror of its
        folder. None: not named for the old stem (left where it is)."""
        if not output.name.startswith(old.stem + "."):
            return None
        suffix = output.name[len(old.stem):]
        if output.parent == old.parent or self.output_dir is None:
            folder = new.parent
        else:
            folder = self.output_dir / new.parent.relative_to(new_root)
        return folder / (new.stem + suffix)


def _outside(path: str, local: str) -> dict:
    return {"path": path, "local": local, "result": "outside_libraries",
            "error": "not under any watched folder (watch_dirs, libraries): check path_map"}


def _remove(output: str) -> None:
    try:
        os.unlink(output)
        log.info("removed %s: its video was replaced by an upgrade", output)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("%s: not removed: %s", output, e)
