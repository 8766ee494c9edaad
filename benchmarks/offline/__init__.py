"""The offline benchmark (Design-Bench's protocol) and its online continuation (docs/offline.md).

* :mod:`.archives` — the archives: every design of a task's data with its oracle value, the
  best 10 % hidden;
* :mod:`.methods` — the offline methods: each proposes 128 designs once from the visible
  archive;
* :mod:`.run` — the declared grid, run cell by cell into a CSV (resumable), then the online
  continuation of the warm study against a cold start;
* :mod:`.report` — the tables of docs/offline.md and the README.
"""
