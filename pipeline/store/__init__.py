"""The job store: the queue and the history. `interface.py` says what a store does; `sqlite.py`
(one machine) and `postgres.py` (several) do it, sharing `sql.py`."""
