"""What every target (Jellyfin, Emby, Plex, a webhook) offers the sender.

A target turns a finished job into items (strings: the outbox keeps them; in the transaction that
finishes the job, so no I/O, nothing slow), groups a batch of items into requests, and sends one
request (in the sender's thread: HTTP).
"""

from __future__ import annotations

from typing import Protocol, Sequence

from ..job import Job


class Target(Protocol):
    name: str        # the `target` metric label: jellyfin | emby | plex | webhook
    key: str         # the outbox's name for it: `name`, a webhook's with a hash of its URL
    batch: bool      # items within the batch window are sent together (per folder, once)

    def items(self, job: Job) -> list[str]:
        """What this job asks of the target: videos or folders to refresh, or a webhook body."""

    def requests(self, items: Sequence[str]) -> list[tuple[object, list[str]]]:
        """The requests that carry a batch of distinct items: (payload, the items it carries)."""

    def send(self, payload: object) -> None:
        """One request. Raises http.DeliveryError when it did not succeed."""


def subtitle_folders(job: Job, folder_of) -> list[str]:
    """The (mapped) folders that got a new subtitle from this job: what a media server must
    look at again. Nothing for a skipped or failed job: no new file there."""
    if job.status != "succeeded":
        return []
    return sorted({folder_of(out) for out in job.outputs})
