"""The running side of the pipeline: the `Daemon` (service.py) and what it owns — the workers on
their devices, one file's run through the stages, a claimed job's lease and hooks, the lease
keeping, the prefetch, the status snapshot."""

from .service import Daemon, NodeNameInUse

__all__ = ["Daemon", "NodeNameInUse"]
