"""Category 1, SIGKILL points: calibrate, kill cycle children at seeded points, judge what each
printed against what its study holds, and resume it."""

from __future__ import annotations

import math
import os
import random
import signal
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.reliability.common import (
    CALL_ENDS,
    CALLS,
    KILL_WORKERS,
    STEP_LABELS,
    Probe,
    Sizes,
    Stored,
    child_command,
    new_sqdf,
    one_line,
    read_study,
    resume_attached,
    same_value,
    told_problems,
)
from benchmarks.reliability.processes import ChildRun, Event, run_and_kill
from sqdf_bbo.study.errors import StudyError
from sqdf_bbo.study.folder import CREATING_GRACE_S


# ---------------------------------------------------------------------------- category 1
@dataclass(frozen=True)
class KillPlan:
    """Kill ``delay`` s after the ``occurrence``-th ``trigger`` marker (``None``: the start)."""

    target: str
    trigger: str | None
    occurrence: int
    delay: float


@dataclass
class ChildLog:
    """A killed cycle child's output, read back: told, announced and asked points."""

    told: dict[int, float]
    announced: list[tuple[int | None, float]]  # TELL/EXT printed, TOLD/EXTED not (≤ 1)
    asked: list[int]
    landed: str  # where the kill landed


def _durations(events: list[Event]) -> dict[str, float]:
    """Median seconds of each phase in a calibration run: by the child's clock, except the
    start-up (imports), timed by the parent up to the first marker."""

    def spans(start: str, end: str, skip: int = 0) -> list[float]:
        out, t0 = [], None
        for ev in events:
            if ev.name == start:
                t0 = ev.child_t
            elif ev.name == end and t0 is not None:
                out.append(ev.child_t - t0)
                t0 = None
        return out[skip:] or [0.05]

    first = {ev.name: ev.t for ev in reversed(events)}
    return {
        "create": statistics.median(spans("create", "create-end")),
        "ask": statistics.median(spans("ASK", "write_snapshot", skip=1)),
        "snapshot": statistics.median(spans("write_snapshot", "write_snapshot-end", skip=1)),
        "commit": statistics.median(spans("insert_points", "insert_points-end")),
        "tell": statistics.median(spans("TELL", "TOLD")),
        "startup": first.get("CREATE", 5.0),
    }


def calibrate(work: Path) -> dict[str, float]:
    """Run a cycle child for a few rounds, twice (the first warms the file caches), and
    measure the phases of the second (seconds)."""
    for attempt in ("cold", "warm"):
        study = work / f"calibration-{attempt}" / "s"
        study.parent.mkdir(parents=True)
        start = time.monotonic()
        cmd = child_command("cycle", str(study), "0")
        run = run_and_kill(cmd, "TOLD", 12, 0.0, study.parent / "err")
    events = [Event(ev.t - start, ev.name, ev.args, ev.child_t) for ev in run.events]
    if not any(ev.name == "TOLD" for ev in events):
        raise RuntimeError(f"the calibration child told nothing: {run.stderr[-2000:]}")
    return _durations(events)


def plan_kills(
    n: int, targets: Sequence[str], seed: int, spans: Mapping[str, float]
) -> list[KillPlan]:
    """``n`` kills cycling through ``targets`` (each block of them shuffled), seeded delays."""
    rng = random.Random(seed)
    order: list[str] = []
    while len(order) < n:
        block = list(targets)
        rng.shuffle(block)
        order.extend(block)
    plans = []
    for target in order[:n]:
        if target == "start":  # anywhere in interpreter start-up and imports
            plans.append(KillPlan(target, None, 0, rng.uniform(0.0, spans["startup"])))
        elif target == "create":  # while the store assembles the new folder
            plans.append(KillPlan(target, "create", 1, rng.uniform(0.0, spans["create"])))
        elif target == "ask":  # the 2nd/3rd ask fits the surrogate and fine-tunes first
            plans.append(KillPlan(target, "ASK", rng.randint(2, 3), rng.uniform(0, spans["ask"])))
        elif target == "snapshot":  # the 1st snapshot is the creation's
            k = rng.randint(2, 4)
            plans.append(KillPlan(target, "write_snapshot", k, rng.uniform(0, spans["snapshot"])))
        elif target == "commit":  # inserts of asks and of tell_external alternate
            k = rng.randint(2, 5)
            plans.append(KillPlan(target, "insert_points", k, rng.uniform(0, spans["commit"])))
        else:
            k = rng.randint(1, 7)
            plans.append(KillPlan(target, "record_tells", k, rng.uniform(0.0, spans["tell"])))
    return plans


def landing(events: Sequence[Event]) -> str:
    """Where a kill landed: the open call (create/ask/tell/external) and its last store step."""
    if not any(ev.name == "CREATE" for ev in events):
        return "startup (imports)"
    call, step = None, None
    for ev in events:
        if ev.name in CALLS:
            call, step = CALLS[ev.name], None
        elif ev.name in CALL_ENDS:
            call, step = None, None
        elif ev.name.removesuffix("-end") in STEP_LABELS:
            step = ev.name
    if call is None:
        return "between calls"
    if step is None:
        first = {"create": "build", "ask": "fit + propose", "tell": "check", "external": "check"}
        return f"{call}/{first[call]}"
    label = STEP_LABELS[step.removesuffix("-end")]
    return f"{call}/{'after ' if step.endswith('-end') else ''}{label}"


def read_log(run: ChildRun) -> ChildLog:
    """Told values, announced-but-unconfirmed values and asked ids of a killed child."""
    told: dict[int, float] = {}
    announced: list[tuple[int | None, float]] = []
    asked: list[int] = []
    for ev in run.events:
        if ev.name == "TELL":
            announced = [(int(ev.args[0]), float.fromhex(ev.args[1]))]
        elif ev.name == "EXT":
            announced = [(None, float.fromhex(ev.args[0]))]
        elif ev.name in ("TOLD", "EXTED"):
            told[int(ev.args[0])] = float.fromhex(ev.args[1])
            announced = []
        elif ev.name == "ASKED":
            asked.extend(int(a) for a in ev.args)
    return ChildLog(told, announced, asked, landing(run.events))


def invented(stored: Stored, log: ChildLog) -> list[str]:
    """Told points the child never confirmed, beyond the one announced at the kill."""
    extra = sorted(set(stored.told()) - set(log.told))
    problems = []
    for i in extra:
        match = [
            v for j, v in log.announced if (j == i or j is None) and same_value(v, stored.values[i])
        ]
        if not match or len(extra) > 1:
            problems.append(
                f"id {i} is told ({stored.values[i]!r}) but was never told by the child"
            )
    return problems


def creating_leftovers(study: Path) -> list[Path]:
    """``.NAME.creating-*`` folders beside ``study``."""
    return sorted(study.parent.glob(f".{study.name}.creating-*"))


def resume_fresh(study: Path) -> tuple[list[str], list[str], int, int]:
    """After a kill before the study existed: a later create at the same path works and
    removes the leftovers (back-dated past the store's grace period).

    Returns the lost values, the other problems, the number of told values checked and the
    number of creation leftovers found.
    """
    # 1. A leftover is only removed once older than the grace: simulate that time passing.
    old = time.time() - 2 * CREATING_GRACE_S
    leftovers = creating_leftovers(study)
    for p in leftovers:
        os.utime(p, (old, old))
    # 2. Create, ask, tell, close; then check what is stored and that the leftovers are gone.
    values = [0.25, -1.5, math.nan, 7.0]
    opt = new_sqdf(study)
    batch = opt.ask()
    opt.tell(batch.ids, values)
    opt.close()
    lost = told_problems(read_study(study), dict(zip(batch.ids, values)))
    other = [f"leftover {p.name} was not removed" for p in creating_leftovers(study)]
    return lost, other, len(values), len(leftovers)


def check_kill(study: Path, run: ChildRun, plan: KillPlan) -> Probe:
    """Judge one killed child: what it printed against what the study holds, then resume."""
    log = read_log(run)
    name = f"kill {plan.target} (trigger {plan.trigger} #{plan.occurrence} + {plan.delay:.3f}s)"
    probe = Probe("sigkill", name, log.landed)
    other: list[str] = []
    notes: list[str] = []
    if run.returncode != -signal.SIGKILL:
        other.append(f"child ended with {run.returncode}: {one_line(run.stderr[-500:])}")
    if plan.trigger is not None and run.parent_killed:
        other.append("the armed SIGKILL never fired (killed at the deadline)")
    if not study.exists():
        # 1. No study: nothing may have been told, and a later create must work.
        probe.outcome = f"{log.landed} -> no study"
        lost = [f"id {i} told without a study" for i in log.told]
        more_lost, more, checked, leftovers = resume_fresh(study)
        notes.append(f"{leftovers} creation leftover(s), removed by the next create")
    else:
        # 2. A study: complete (loads), holds every printed value and asked id, invents nothing.
        if log.landed.startswith("create/"):
            probe.outcome = f"{log.landed} -> complete study"
        try:
            stored = read_study(study)
        except StudyError as err:
            probe.ok, probe.lost = False, len(log.told)
            probe.detail = f"half-made study: {one_line(str(err))}"
            return probe
        lost = told_problems(stored, log.told) + invented(stored, log)
        other += [f"asked id {i} is missing" for i in log.asked if i not in stored.states]
        other += [f"leftover {p.name} beside a study" for p in creating_leftovers(study)]
        more_lost, more, checked = resume_attached(study, log.told)
    probe.checked = len(log.told) + checked
    probe.lost = len(lost) + len(more_lost)
    problems = lost + more_lost + other + more
    probe.ok = not problems
    probe.detail = "; ".join(problems[:5] or notes)
    return probe


def kill_one(work: Path, k: int, plan: KillPlan, seed: int) -> tuple[Path, ChildRun]:
    """Run the ``k``-th cycle child in its own folder and kill it as ``plan`` says."""
    study = work / f"kill-{k:03d}" / "s"
    study.parent.mkdir(parents=True)
    cmd = child_command("cycle", str(study), str(seed + k))
    err = study.parent / "err"
    if plan.trigger is None:  # sent by this process
        return study, run_and_kill(cmd, None, 0, plan.delay, err)
    cmd += [plan.trigger, str(plan.occurrence), repr(plan.delay)]  # armed in the child
    return study, run_and_kill(cmd, plan.trigger, plan.occurrence, plan.delay, err, self_kill=True)


def sigkill_probes(work: Path, sizes: Sizes, seed: int, log: Callable[[str], None]) -> list[Probe]:
    """Category 1: calibrate, then kill ``sizes.kills`` children at seeded points
    (``KILL_WORKERS`` children at a time; each is judged as soon as it was killed)."""
    if sizes.kills <= 0:
        return []
    spans = dict(sizes.spans) if sizes.spans is not None else calibrate(work)
    log("calibration (s): " + ", ".join(f"{k} {v:.3f}" for k, v in spans.items()))
    plans = plan_kills(sizes.kills, sizes.kill_targets, seed, spans)
    probes = []
    with ThreadPoolExecutor(max_workers=KILL_WORKERS) as pool:
        runs = pool.map(lambda kp: kill_one(work, kp[0], kp[1], seed), enumerate(plans))
        for k, (plan, (study, run)) in enumerate(zip(plans, runs)):
            probes.append(check_kill(study, run, plan))
            log(f"  [{k + 1}/{sizes.kills}] {probes[-1].name}: {probes[-1].outcome}")
    return probes
