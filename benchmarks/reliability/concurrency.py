"""Category 2, concurrent writers and readers: two optimizers in one process, a second process
while a writer child runs (attach refused, reads allowed, the console script refused), and
sequential CLI tells while another process polls ``status --json``."""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.reliability.common import (
    ROOT,
    Probe,
    Sizes,
    Stored,
    child_command,
    child_env,
    cli_call,
    cli_study,
    console_script,
    new_sqdf,
    one_line,
    one_line_error,
    random_value,
    read_study,
    resume_attached,
    same_value,
    stored_of,
    told_problems,
)
from benchmarks.reliability.kills import invented, read_log
from benchmarks.reliability.processes import BackgroundChild, ChildRun, wait_for_events
from sqdf_bbo.optimizers.sqdf import SQDF
from sqdf_bbo.study.errors import StudyError


# ---------------------------------------------------------------------------- category 2
def expect_study_error(action: Callable[[], Any]) -> tuple[str, float]:
    """Run ``action``; return what happened (``"StudyError: <reason>"``, another type, or
    ``"accepted"``) and the seconds it took."""
    t = time.monotonic()
    try:
        result = action()
    except StudyError as err:
        return f"StudyError: {error_reason(str(err))}", time.monotonic() - t
    except Exception as err:  # a wrong type is the finding
        return f"{type(err).__name__}: {one_line(str(err), 120)}", time.monotonic() - t
    getattr(result, "close", lambda: None)()  # a second writer was let in: let go of it
    return "accepted", time.monotonic() - t


def probe_in_process(work: Path) -> list[Probe]:
    """Two optimizers of one process on one study: the second writer is refused at once,
    a detached load works, and after ``close`` the study attaches again."""
    study = work / "in-process"
    first = new_sqdf(study)
    batch = first.ask()
    told = dict(zip(batch.ids[:3], [1.5, math.nan, -(2.0**-40)]))
    first.tell(list(told), list(told.values()))
    probes = []
    # 1. A second attach and a second create are refused (the flock / the existing study).
    for name, action, expected in (
        ("second attach, same process", lambda: SQDF.load(study), "locked by the writer"),
        ("second create, same path", lambda: new_sqdf(study), "already a study"),
    ):
        outcome, seconds = expect_study_error(action)
        probes.append(
            Probe(
                "concurrency",
                name,
                outcome,
                ok=outcome == f"StudyError: {expected}" and seconds < 30,
                detail=f"{seconds:.2f}s",
            )
        )
    # 2. A detached load sees every told value; the first writer still works.
    problems = told_problems(read_study(study), told)
    first.tell(batch.ids[3], 4.0)
    told[batch.ids[3]] = 4.0
    first.close()
    # 3. Closed: the study attaches again and holds everything.
    again = SQDF.load(study)
    problems += told_problems(stored_of(again), told)
    again.close()
    probes.append(
        Probe(
            "concurrency",
            "detached load while attached, attach after close",
            "loaded intact" if not problems else "values differ",
            checked=2 * len(told),
            lost=len(problems),
            ok=not problems,
            detail="; ".join(problems[:3]),
        )
    )
    return probes


def cli_tell_subprocess(study: Path, csv_path: Path) -> tuple[int, str]:
    """Run the ``sqdf-bbo tell`` console script from a second shell; (exit code, stderr)."""
    done = subprocess.run(
        [*console_script(), "tell", "--study", str(study), str(csv_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=300,
    )
    return done.returncode, done.stderr


def error_reason(message: str) -> str:
    """A short name for why a study refused: the writer's lock, a vanished snapshot, other."""
    if "open for writing elsewhere" in message:
        return "locked by the writer"
    if "already holds a study" in message:
        return "already a study"
    if "snapshot" in message and ("No such file" in message or ": missing (" in message):
        return "snapshot pruned under the reader"
    return one_line(message, 60)


def _attach_probe(res: Mapping[str, Any]) -> Probe:
    """Judge the second process's attach attempt (``ATTACH`` line)."""
    message = str(res.get("message", ""))
    locked = res["outcome"] == "StudyError" and "open for writing elsewhere" in message
    return Probe(
        "concurrency",
        "second process attaches while a writer runs",
        f"{res['outcome']}: {error_reason(message)}" if message else res["outcome"],
        ok=locked and res["seconds"] < 60,
        detail=f"{res['seconds']:.2f}s {one_line(message, 160)}",
    )


def _read_probe(res: Mapping[str, Any], final: Stored) -> Probe:
    """Judge one read-only load of the second process (``READ`` line) against the final study."""
    name = "read-only load while a writer runs"
    if not res["ok"]:
        outcome = f"read failed ({res['type']}: {error_reason(res['message'])})"
        return Probe("concurrency", name, outcome, ok=False, detail=one_line(res["message"], 200))
    seen = {int(i): float.fromhex(h) for i, h in res["told"].items()}
    problems = [
        f"reader saw id {i} = {v!r}, stored {final.values.get(i)!r}"
        for i, v in seen.items()
        if i not in final.values or not same_value(final.values[i], v)
    ]
    outcome = "read ok" if not problems else "read differs"
    detail = "; ".join(problems[:3])
    return Probe("concurrency", name, outcome, len(seen), len(problems), not problems, detail)


def _reader_probes(lines: list[str], final: Stored) -> list[Probe]:
    """Judge the second process's attach attempt and read-only loads."""
    probes = []
    for line in lines:
        kind, _, payload = line.partition(" ")
        if kind == "ATTACH":
            probes.append(_attach_probe(json.loads(payload)))
        elif kind == "READ":
            probes.append(_read_probe(json.loads(payload), final))
    return probes


def _shell_probe(rc: int, stderr: str, still_pending: bool) -> Probe:
    """Judge ``sqdf-bbo tell`` from a second shell: exit 2, one line, the writer's lock."""
    outcome = f"exit {rc}: {error_reason(stderr)}" if stderr.strip() else f"exit {rc}"
    ok = one_line_error(rc, stderr, "open for writing elsewhere") and still_pending
    name = "sqdf-bbo tell from a second shell while a writer runs"
    return Probe("concurrency", name, outcome, ok=ok, detail=one_line(stderr, 200))


def probe_cross_process(work: Path, reads: int) -> list[Probe]:
    """A writer child holds a study; a second process attaches (refused) and reads
    (allowed); the console script tells from a second shell (refused, exit 2); the writer
    is SIGKILLed; every value it confirmed is stored and the study attaches again."""
    study = work / "cross" / "s"
    study.parent.mkdir(parents=True)
    # 1. The writer runs until killed; wait until it told a few values.
    writer = BackgroundChild(child_command("cycle", str(study), "7"), study.parent / "w.err")
    try:
        wait_for_events(writer.events, "TOLD", 6, timeout=300)
        asked = [ev for ev in writer.events() if ev.name == "ASKED"]
        pending_id = int(asked[0].args[3])  # the writer never tells the 4th point of a batch
        # 2. A second process: attach, then read-only loads while the writer keeps writing.
        reader = subprocess.run(
            child_command("reader", str(study), str(reads)),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=child_env(),
            timeout=600,
        )
        # 3. The console script from a second shell.
        csv_path = study.parent / "late.csv"
        csv_path.write_text(f"id,value\n{pending_id},0.5\n")
        rc, stderr = cli_tell_subprocess(study, csv_path)
    finally:
        writer.finish(kill=True)
    # 4. The writer is dead: judge what it confirmed, then attach (its lock died with it).
    log = read_log(ChildRun(writer.events(), writer.proc.returncode, ""))
    final = read_study(study)
    probes = _reader_probes(reader.stdout.splitlines(), final)
    probes.append(_shell_probe(rc, stderr, final.states.get(pending_id) == "pending"))
    lost = told_problems(final, log.told) + invented(final, log)
    more_lost, more, checked = resume_attached(study, log.told)
    problems = lost + more_lost + more
    probes.append(
        Probe(
            "concurrency",
            "writer SIGKILLed: its values stored, study attaches again",
            "attached" if not problems else "attach problems",
            checked=len(log.told) + checked,
            lost=len(lost) + len(more_lost),
            ok=not problems,
            detail="; ".join(problems[:3]),
        )
    )
    return probes


def probe_cli_loop(work: Path, tells: int, seed: int) -> list[Probe]:
    """``tells`` sequential CLI tell calls while another process polls ``status --json``."""
    # 1. A study with enough pending points; the poller starts and signals it is polling.
    study, _ = cli_study(work / "cli-loop", "s", tells)
    stop = study.parent / "stop"
    poller = BackgroundChild(child_command("poller", str(study), str(stop)), study.parent / "p.err")
    rng = np.random.default_rng(seed)
    told: dict[int, float] = {}
    probes = []
    try:
        deadline = time.monotonic() + 300
        while not any(line.startswith("STATUS") for line in poller.lines()):
            if time.monotonic() > deadline or poller.proc.poll() is not None:
                raise RuntimeError(
                    f"the status poller did not start: {poller.err_path.read_text()}"
                )
            time.sleep(0.05)
        # 2. One tell per call, each a one-row CSV with a value written by repr.
        for i in range(tells):
            v = random_value(rng)
            path = study.parent / f"t{i}.csv"
            path.write_text(f"id,value\n{i},{'nan' if math.isnan(v) else repr(v)}\n")
            rc, _, err = cli_call(["tell", "--study", str(study), str(path)])
            if rc == 0:
                told[i] = v
            probes.append(
                Probe(
                    "concurrency",
                    "CLI tell while a reader polls status",
                    "told (exit 0)" if rc == 0 else f"exit {rc}",
                    ok=rc == 0,
                    detail=one_line(err, 200),
                )
            )
    finally:
        stop.write_text("")
        poller.finish()
    # 3. Every poll succeeded and saw counts that only grow; every value is stored.
    polls = [line.split() for line in poller.lines() if line.startswith("STATUS")]
    counts = [int(p[2]) + int(p[3]) for p in polls if p[1] == "0"]
    failed = [" ".join(p) for p in polls if p[1] != "0"]
    ok = not failed and counts == sorted(counts) and counts[-1] <= len(told)
    probes.append(
        Probe(
            "concurrency",
            f"status --json polled {len(polls)} times during the tells",
            "polls ok" if ok else "poll problems",
            ok=ok,
            detail="; ".join(failed[:3]),
        )
    )
    lost = told_problems(read_study(study), told)
    probes.append(
        Probe(
            "concurrency",
            "values of the CLI tell loop",
            "stored" if not lost else "lost",
            checked=len(told),
            lost=len(lost),
            ok=not lost,
            detail="; ".join(lost[:3]),
        )
    )
    return probes


def concurrency_probes(
    work: Path, sizes: Sizes, seed: int, log: Callable[[str], None]
) -> list[Probe]:
    """Category 2: the probe groups named in ``sizes.concurrency``."""
    probes: list[Probe] = []
    if "in-process" in sizes.concurrency:
        probes += probe_in_process(work)
    if "cross-process" in sizes.concurrency:
        probes += probe_cross_process(work, sizes.reads)
    if "cli-loop" in sizes.concurrency:
        probes += probe_cli_loop(work, sizes.cli_tells, seed)
    log(f"  {len(probes)} concurrency probes")
    return probes
