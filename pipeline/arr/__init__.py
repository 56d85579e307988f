"""Sonarr and Radarr Connect webhooks (docs/integrations.md): an import queues its file ahead of
the folder backlog with what the import says of its language, an upgrade takes the old file's
subtitle with it, a rename moves the subtitle with the file. `payload.py` reads their JSON,
`webhooks.py` acts on it (`contract.ArrHooks`, which web/hooks.py calls)."""
