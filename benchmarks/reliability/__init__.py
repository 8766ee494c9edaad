"""Reliability probes of study folders (issue 8): run them, count them, and check that nothing told is lost.

Usage::

    python -m benchmarks.reliability [--kills N] [--seed S] [--out FILE.json] [--workdir DIR]
                                     [--disk-full DIR]

Four categories; each probe records an outcome, the number of told values it compared
bit-exactly with what is stored, and the number lost (missing, changed, or invented). A probe
whose outcome is not an allowed one (a wrong exception type, a changed folder, a refused read)
is *unexpected*. Any lost value or unexpected outcome is printed loudly and the exit code is 1.

1. **SIGKILL points** (``KILLS``): a child process (``--child cycle``) creates a study with a
   tiny random-weight MLP prior and asks/tells forever, printing a marker before and after each
   step (the store's ``create``/``write_snapshot``/``insert_points``/``prune_snapshots``/
   ``record_tells`` are wrapped to print too) and each told value (hex) after ``tell`` returns.
   It gets SIGKILL at a seeded random delay after a seeded trigger: the parent sends it during
   the interpreter start; for the other targets (the store assembling a new study, the k-th
   ask, snapshot write, commit or tell; windows measured by a calibration run) the child arms
   a timer thread that sends SIGKILL to its own process, exact to about a millisecond where
   the parent's reaction through the pipe takes 10-100 ms. The parent classifies where the
   kill landed from the last marker, and checks: no study or a complete one (never a half one;
   ``.NAME.creating-*`` leftovers are removed by the next create once older than the store's
   60 s grace, simulated by back-dating them); every printed told value stored bit-exactly;
   nothing invented (at most the one value announced before a ``tell``/``tell_external`` whose
   commit landed before the kill); every printed asked id stored; and that the study resumes
   (attach, orphan snapshots pruned, pending told, ask again).
2. **Concurrent writers**: two optimizers in one process; a second process attaching while a
   writer child runs (StudyError at once), ``CONCURRENT_READS`` read-only loads by that process
   while the writer runs (each must load, and every value it saw must be the one finally
   stored), the ``sqdf-bbo tell`` console script from a second shell (exit 2, one stderr line),
   attaching after the writer was SIGKILLed (its lock dies with it); and ``CLI_TELLS`` sequential
   CLI ``tell`` calls (the CLI entry point, in-process, each loading, telling and closing like the
   console script) while another process polls ``status --json``.
3. **Corruption** (``CORRUPTIONS``): each case damages a copy of a study with told, failed,
   external and excluded points; loading it detached and attached must either give every point
   back intact (state, value bits and design bytes) or raise StudyError; a failed load (and any
   detached load) must leave the folder and any outside folder byte-identical (except SQLite's
   ``-shm`` index, which any reader of a database with a ``-wal`` file creates or updates).
4. **Hostile input** (``API_CASES``, ``CLI_CASES``): the API must raise ValueError / TypeError /
   KeyError, the CLI exit 2 with one stderr line, and the study (in memory and on disk) must be
   unchanged; the few inputs that are valid (a UTF-8 BOM) must store exactly what was given.
5. **Disk full** (only with ``--disk-full DIR``, an empty folder on a small filesystem such as
   a 2 MB tmpfs, which the probe fills): tell, tell_external and ask on a full disk must fail
   without changing the optimizer, a detached load must work, and once space is freed every
   told value is there and the study resumes.

Child processes run ``python -m benchmarks.reliability --child cycle|reader|poller``.

Modules: ``common`` (counts, records, shared helpers), ``roles`` (the children's side),
``processes`` (starting, reading and killing children), one module per category (``kills``,
``concurrency``, ``corruption``, ``hostile``, ``disk_full``), ``report`` (running them all, the
table and the JSON) and ``command`` (the command line).
"""

from __future__ import annotations

from benchmarks.reliability.command import main
from benchmarks.reliability.common import DEFAULT, Probe, Sizes, child_env
from benchmarks.reliability.report import render_table, run_all, summarize

__all__ = ["Probe", "Sizes", "DEFAULT", "run_all", "summarize", "render_table", "main", "child_env"]
