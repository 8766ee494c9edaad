"""The reliability harness (benchmarks/reliability/) itself: a tiny run of each category
finds nothing lost and the expected outcome classes, and its judging logic is checked on
made-up child output."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.reliability.common import Probe, Sizes, Stored, told_problems
from benchmarks.reliability.corruption import corruption_probes
from benchmarks.reliability.kills import invented, landing, read_log
from benchmarks.reliability.processes import ChildRun, Event, parse_event
from benchmarks.reliability.report import render_table, run_all, shout, summarize

TINY = Sizes(
    kills=1,
    kill_targets=("tell",),
    spans=(
        ("startup", 4.0),
        ("create", 1.0),
        ("ask", 0.03),
        ("snapshot", 0.02),
        ("commit", 0.02),
        ("tell", 0.002),
    ),
    concurrency=("in-process", "cli-loop"),
    cli_tells=2,
    corruptions=(
        "flip middle byte of snapshot tensors.safetensors",
        "delete snapshot checksums.json",
        "snapshots/ is a link to an outside folder",
    ),
    tamperings=("delete the last rows (their ids would be reused)", "drop the points' crc column"),
    batch_cases=("CommandOracle writes 1e39 first (the issue's case)",),
    hang_cases=("thread pool: jobs that never return",),
    setting_cases=("init --set finetune.lr=1e300", "config --set finetune.lr=0.0005"),
    api_cases=("tell 1e39", "tell values as a set"),
    cli_cases=("tell: short row", "tell: UTF-8 BOM (valid: must store the value)"),
)


def outcomes(probes: list[Probe], category: str) -> dict[str, str]:
    return {p.name: p.outcome for p in probes if p.category == category}


def test_a_tiny_run_loses_nothing(tmp_path: Path) -> None:
    probes = run_all(tmp_path, TINY, seed=3, log=lambda _: None)
    summary = summarize(probes)
    assert list(summary) == [
        "sigkill",
        "concurrency",
        "corruption",
        "tampering",
        "oracle batches",
        "stuck workers",
        "absurd settings",
        "hostile input",
    ]
    bad = [p for p in probes if p.lost or not p.ok]
    assert not bad, bad
    assert all(row["lost"] == 0 and row["unexpected"] == 0 for row in summary.values())
    assert shout(probes) == 0

    (kill,) = [p for p in probes if p.category == "sigkill"]
    assert kill.checked > 0
    assert kill.outcome.split("/")[0].split(" ")[0] in {
        "create",
        "ask",
        "tell",
        "external",
        "between",
    }

    conc = outcomes(probes, "concurrency")
    assert conc["second attach, same process"] == "StudyError: locked by the writer"
    assert conc["second create, same path"] == "StudyError: already a study"
    assert conc["values of the CLI tell loop"] == "stored"
    assert sum(p.checked for p in probes if p.category == "concurrency") >= 2

    assert outcomes(probes, "corruption") == {
        "flip middle byte of snapshot tensors.safetensors": "StudyError",
        "delete snapshot checksums.json": "loaded intact",
        "snapshots/ is a link to an outside folder": "StudyError",
    }
    assert outcomes(probes, "tampering") == {
        "delete the last rows (their ids would be reused)": "StudyError",
        "drop the points' crc column": "StudyError",
    }
    assert outcomes(probes, "oracle batches") == {
        "CommandOracle writes 1e39 first (the issue's case)": (
            "run returned: 3 told, 1 failed with a reason"
        )
    }
    (stuck,) = [p for p in probes if p.category == "stuck workers"]
    assert stuck.outcome.startswith("returned: ") and stuck.ok
    assert outcomes(probes, "absurd settings") == {
        "init --set finetune.lr=1e300": "exit 2, one line, no study",
        "config --set finetune.lr=0.0005": "changed, recorded, reloaded",
    }
    assert outcomes(probes, "hostile input") == {
        "API: tell 1e39": "refused (ValueError)",
        "API: tell values as a set": "refused (TypeError)",
        "CLI tell: short row": "exit 2, one line",
        "CLI tell: UTF-8 BOM (valid: must store the value)": "accepted exactly",
    }
    table = render_table(summary)
    assert table.count("\n") == 1 + len(summary)


def test_a_flipped_value_in_the_database_is_detected(tmp_path: Path) -> None:
    """SQLite pages carry no checksum; the store's per-row CRC catches a flipped bit inside a
    told value (it loaded silently before the row checksums existed)."""
    sizes = Sizes(corruptions=("flip a told value's byte in study.sqlite",))
    (probe,) = corruption_probes(tmp_path, sizes, 0, lambda _: None)
    assert probe.ok and probe.lost == 0, probe


def events(*lines: str) -> list[Event]:
    return [e for e in (parse_event(0.0, f"0.0 {line}\n") for line in lines) if e is not None]


def test_landing_names_the_open_call_and_its_last_store_step() -> None:
    assert landing(events()) == "startup (imports)"
    assert landing(events("CREATE", "create")) == "create/assemble folder"
    assert landing(events("CREATE", "READY", "ASK")) == "ask/fit + propose"
    assert landing(events("CREATE", "READY", "ASK", "write_snapshot")) == "ask/snapshot"
    ask = ("CREATE", "READY", "ASK", "write_snapshot", "write_snapshot-end", "insert_points")
    assert landing(events(*ask)) == "ask/commit"
    assert landing(events(*ask, "insert_points-end")) == "ask/after commit"
    tell = ("CREATE", "READY", "TELL 3 0x1p+0", "record_tells", "record_tells-end")
    assert landing(events(*tell)) == "tell/after commit"
    assert landing(events(*tell, "TOLD 3 0x1p+0")) == "between calls"


def test_a_line_cut_by_the_kill_is_not_read() -> None:
    assert parse_event(0.0, "0.1 TOLD 3 0x1p+0\n") is not None
    assert parse_event(0.0, "0.1 TOLD 3") is None  # no newline: the kill cut it


def test_only_the_announced_value_may_appear_untold() -> None:
    run = ChildRun(events("CREATE", "READY", "TOLD 0 0x1p+0", "TELL 1 0x1.8p+1"), -9, "")
    log = read_log(run)
    assert log.told == {0: 1.0} and log.announced == [(1, 3.0)]
    stored = Stored({0: "complete", 1: "complete"}, {0: 1.0, 1: 3.0}, {0: b"", 1: b""})
    assert invented(stored, log) == []  # committed just before the kill, never printed
    stored.values[1] = 2.0
    assert invented(stored, log) != []  # not the announced value
    assert told_problems(stored, {0: 1.0 + 2**-52}) != []  # one ulp off is lost
    assert told_problems(stored, {0: math.nan}) != []  # a failed value must be failed


def test_shout_fails_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    lost = Probe("sigkill", "kill", "ask/commit", checked=5, lost=1, ok=False, detail="id 3")
    assert shout([Probe("corruption", "x", "StudyError"), lost]) == 1
    assert "RELIABILITY FAILURE: 1 told value(s) lost" in capsys.readouterr().err
