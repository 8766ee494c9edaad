"""Category 4, hostile input: the API must raise ValueError / TypeError / KeyError and the CLI
exit 2 with one stderr line, leaving the study unchanged (valid odd input, a UTF-8 BOM, must
store exactly what was given)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.reliability.common import (
    FAST,
    Probe,
    Sizes,
    Stored,
    cli_call,
    cli_study,
    new_sqdf,
    one_line,
    one_line_error,
    read_study,
    same_study,
    stored_of,
)
from sqdf_bbo.optimizers.sqdf import SQDF


# ---------------------------------------------------------------------------- category 4
@dataclass
class ApiContext:
    """The ids of an attached hostile-input study."""

    pending: list[int]
    complete: int
    failed: int
    external: int


@dataclass(frozen=True)
class ApiCase:
    """``call(opt, ctx)`` must raise one of ``expect`` and change nothing."""

    name: str
    call: Callable[[SQDF, ApiContext], Any]
    expect: tuple[type[BaseException], ...]


V, T, K = (ValueError,), (TypeError,), (KeyError,)


def _api_cases() -> list[ApiCase]:
    """Hostile calls of the ask/tell API."""
    x_nan = torch.tensor([[math.nan, 0.0]])
    x_inf = torch.tensor([[0.0, math.inf]])
    return [
        ApiCase("tell 1e39", lambda o, c: o.tell(c.pending[:2], [0.0, 1e39]), V),
        ApiCase("tell -1e20", lambda o, c: o.tell(c.pending[:1], [-1e20]), V),
        ApiCase("tell_external value 1e39", lambda o, c: o.tell_external(torch.zeros(1, 2), [1e39]), V),
        ApiCase("tell_external design with NaN", lambda o, c: o.tell_external(x_nan, [1.0]), V),
        ApiCase("tell_external design with inf", lambda o, c: o.tell_external(x_inf, [1.0]), V),
        ApiCase("tell values as a dict", lambda o, c: o.tell(c.pending[:2], {1.0: "a", 2.0: "b"}), T),
        ApiCase("tell values as a set", lambda o, c: o.tell(c.pending[:2], {1.0, 2.0}), T),
        ApiCase("tell ids as a dict", lambda o, c: o.tell({i: 0 for i in c.pending[:2]}, [1.0, 2.0]), T),
        ApiCase("tell a string value", lambda o, c: o.tell(c.pending[:1], ["1.0"]), T),
        ApiCase("tell a complex value", lambda o, c: o.tell(c.pending[:1], [1 + 2j]), T),
        ApiCase("tell a bool value", lambda o, c: o.tell(c.pending[:1], [True]), T),
        ApiCase("tell a float id", lambda o, c: o.tell([1.5], [1.0]), T),
        ApiCase("tell a bool id", lambda o, c: o.tell([True], [1.0]), T),
        ApiCase("tell an unknown id", lambda o, c: o.tell([c.pending[0], 10**6], [1.0, 2.0]), K),
        ApiCase("tell a negative id", lambda o, c: o.tell([-1], [1.0]), K),
        ApiCase("tell an id beyond int64", lambda o, c: o.tell([2**70], [1.0]), K),
        ApiCase("tell a duplicate id", lambda o, c: o.tell([c.pending[0]] * 2, [1.0, 2.0]), V),
        ApiCase("tell an already-told id", lambda o, c: o.tell([c.pending[0], c.complete], [1.0, 2.0]), V),
        ApiCase("tell an already-failed id", lambda o, c: o.tell([c.failed], [1.0]), V),
        ApiCase("tell an external id", lambda o, c: o.tell([c.external], [1.0]), V),
        ApiCase("tell no ids", lambda o, c: o.tell([], []), V),
        ApiCase("tell 2 ids, 3 values", lambda o, c: o.tell(c.pending[:2], [1.0, 2.0, 3.0]), V),
        ApiCase("tell values of shape (2, 2)", lambda o, c: o.tell(c.pending[:2], np.ones((2, 2))), V),
        ApiCase("tell_external design of shape (1, 3)", lambda o, c: o.tell_external(torch.zeros(1, 3), [1.0]), V),
        ApiCase("tell_external no designs", lambda o, c: o.tell_external(torch.zeros(0, 2), []), V),
        ApiCase("tell_external designs as a list", lambda o, c: o.tell_external([[0.0, 1.0]], [1.0]), T),
        ApiCase("tell_external string designs", lambda o, c: o.tell_external(np.array([["a", "b"]]), [1.0]), T),
        ApiCase("ask 10**12", lambda o, c: o.ask(10**12), V),
        ApiCase("ask 0", lambda o, c: o.ask(0), V),
        ApiCase("ask -3", lambda o, c: o.ask(-3), V),
        ApiCase("ask 2.5", lambda o, c: o.ask(2.5), V),
        ApiCase("ask '4'", lambda o, c: o.ask("4"), V),
        ApiCase("mark_failed an unknown id", lambda o, c: o.mark_failed([c.complete, 999]), K),
        ApiCase("mark_failed an already-failed id", lambda o, c: o.mark_failed([c.failed]), V),
        ApiCase("mark_failed a duplicate id", lambda o, c: o.mark_failed([c.complete] * 2), V),
        ApiCase("mark_failed reason 3", lambda o, c: o.mark_failed([c.complete], reason=3), T),
        ApiCase("new optimizer batch_size 10**9", lambda o, c: SQDF(o.prior, batch_size=10**9), V),
        ApiCase("new optimizer seed 2**63", lambda o, c: SQDF(o.prior, seed=2**63), V),
        ApiCase("new optimizer finetune.steps 2.5",
                lambda o, c: SQDF(o.prior, config={**FAST, "finetune": {"steps": 2.5}}), (TypeError, ValueError)),
        ApiCase("new optimizer unknown config key",
                lambda o, c: SQDF(o.prior, config={"no_such_field": 1}), (TypeError, ValueError)),
    ]  # fmt: skip


API_CASES = tuple(c.name for c in _api_cases())


def error_class(err: BaseException, expected: tuple[type[BaseException], ...]) -> str:
    """``ValueError``, or ``ConfigError (a ValueError)`` for a subclass of an expected type."""
    name = type(err).__name__
    base = next(e.__name__ for e in expected if isinstance(err, e))
    return name if name == base else f"{name}, a {base}"


def api_probe(case: ApiCase, opt: SQDF, ctx: ApiContext) -> Probe:
    """Run one hostile API call; compare the study in memory and on disk before and after."""
    study = opt.study
    assert study is not None
    before, on_disk = stored_of(opt), read_study(study)
    try:
        case.call(opt, ctx)
        outcome = "ACCEPTED"
    except case.expect as err:
        outcome = f"refused ({error_class(err, case.expect)})"
    except Exception as err:  # a wrong type is the finding
        outcome = f"wrong error {type(err).__name__}: {one_line(str(err), 120)}"
    changed = same_study(stored_of(opt), before) + same_study(read_study(study), on_disk)
    ok = outcome.startswith("refused") and not changed
    return Probe(
        "hostile input",
        f"API: {case.name}",
        outcome,
        len(before.told()),
        len(changed),
        ok,
        "; ".join(changed[:3]),
    )


def api_probes(work: Path, names: tuple[str, ...] | None) -> list[Probe]:
    """Every hostile API case on one attached study (or those in ``names``)."""
    opt = new_sqdf(work / "hostile-api", batch_size=6)
    batch = opt.ask()
    opt.tell(batch.ids[:2], [1.25, math.nan])
    (ext,) = opt.tell_external(torch.tensor([[0.5, 0.5]]), [2.5])
    ctx = ApiContext(batch.ids[2:], batch.ids[0], batch.ids[1], ext)
    try:
        return [api_probe(c, opt, ctx) for c in _api_cases() if names is None or c.name in names]
    finally:
        opt.close()


@dataclass
class CliContext:
    """Paths and ids of the hostile-CLI studies."""

    work: Path
    study: Path
    other: Path
    batch: Path
    other_batch: Path
    pending: list[int]
    complete: int
    failed: int


@dataclass(frozen=True)
class CliCase:
    """``argv(ctx)`` must exit 2 with one stderr line and change nothing; ``accept`` cases
    must instead succeed and store exactly ``accept(ctx)`` (id → value)."""

    name: str
    argv: Callable[[CliContext], list[str]]
    accept: Callable[[CliContext], dict[int, float]] | None = None
    creates: Callable[[CliContext], Path] | None = None  # must not exist afterwards


def write_file(ctx: CliContext, name: str, text: str, encoding: str = "utf-8") -> str:
    """Write ``text`` to a file of the hostile-CLI folder; return its path."""
    path = ctx.work / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def batch_with_values(
    ctx: CliContext, batch: Path, name: str, edit: Callable[[list[list[str]]], None] | None = None
) -> str:
    """An asked batch file with a value column (what a lab sends back), optionally edited."""
    rows = [line.split(",") for line in batch.read_text().splitlines()]
    rows[0].append("value")
    for r in rows[1:]:
        r.append("0.75")
    if edit is not None:
        edit(rows)
    return write_file(ctx, name, "\n".join(",".join(r) for r in rows) + "\n")


def _tell(ctx: CliContext, name: str, text: str, encoding: str = "utf-8") -> list[str]:
    """``tell`` argv for a results file with ``text``."""
    return ["tell", "--study", str(ctx.study), write_file(ctx, name, text, encoding)]


def _add(ctx: CliContext, name: str, text: str) -> list[str]:
    """``add`` argv for a data file with ``text``."""
    return ["add", "--study", str(ctx.study), write_file(ctx, name, text)]


def _set_x0(rows: list[list[str]]) -> None:
    rows[1][1] = repr(float(rows[1][1]) + 0.5)


def _drop_x1(rows: list[list[str]]) -> None:
    for r in rows:
        del r[2]


def _init(ctx: CliContext, *extra: str) -> list[str]:
    """``init`` argv of a new study ``ctx.work/new`` with ``extra`` options."""
    return ["init", "--study", str(ctx.work / "new"), "--prior", str(ctx.work / "prior"), *extra]


def _cli_cases() -> list[CliCase]:
    """Hostile calls of the CLI."""
    s = lambda c: str(c.study)  # noqa: E731
    p0 = lambda c: c.pending[0]  # noqa: E731
    new = lambda c: c.work / "new"  # noqa: E731
    return [
        CliCase("tell: duplicate value column", lambda c: _tell(c, "dup.csv", f"id,value,value\n{p0(c)},1,2\n")),
        CliCase("tell: short row", lambda c: _tell(c, "short.csv", f"id,value\n{p0(c)},1\n{c.pending[1]}\n")),
        CliCase("tell: extra non-empty field", lambda c: _tell(c, "extra.csv", f"id,value\n{p0(c)},1,9\n")),
        CliCase("tell: BOM and duplicate id column", lambda c: _tell(c, "bomdup.csv", f"\ufeffid,id,value\n{p0(c)},{p0(c)},1\n")),
        CliCase("tell: UTF-16 file", lambda c: _tell(c, "u16.csv", f"id,value\n{p0(c)},1\n", "utf-16")),
        CliCase("tell: another study's batch file", lambda c: ["tell", "--study", s(c), batch_with_values(c, c.other_batch, "other.csv")]),
        CliCase("tell: x columns differ from the asked design", lambda c: ["tell", "--study", s(c), batch_with_values(c, c.batch, "movedx.csv", _set_x0)]),
        CliCase("tell: x1 column missing", lambda c: ["tell", "--study", s(c), batch_with_values(c, c.batch, "nox1.csv", _drop_x1)]),
        CliCase("tell: id 'a'", lambda c: _tell(c, "ida.csv", "id,value\na,1\n")),
        CliCase("tell: id 1.5", lambda c: _tell(c, "idf.csv", "id,value\n1.5,1\n")),
        CliCase("tell: value 'abc'", lambda c: _tell(c, "abc.csv", f"id,value\n{p0(c)},abc\n")),
        CliCase("tell: value 1e39", lambda c: _tell(c, "huge.csv", f"id,value\n{p0(c)},1e39\n")),
        CliCase("tell: value 1e20", lambda c: _tell(c, "big.csv", f"id,value\n{p0(c)},1e20\n")),
        CliCase("tell: unknown id", lambda c: _tell(c, "unknown.csv", f"id,value\n{p0(c)},1\n999,1\n")),
        CliCase("tell: already-told id", lambda c: _tell(c, "again.csv", f"id,value\n{p0(c)},1\n{c.complete},2\n")),
        CliCase("tell: the same id twice", lambda c: _tell(c, "twice.csv", f"id,value\n{p0(c)},1\n{p0(c)},2\n")),
        CliCase("tell: empty file", lambda c: _tell(c, "empty.csv", "")),
        CliCase("tell: header only", lambda c: _tell(c, "header.csv", "id,value\n")),
        CliCase("tell: no value column", lambda c: _tell(c, "novalue.csv", f"id,y\n{p0(c)},1\n")),
        CliCase("tell: missing file", lambda c: ["tell", "--study", s(c), str(c.work / "nope.csv")]),
        CliCase("add: x1 column missing", lambda c: _add(c, "add1.csv", "x0,value\n0.1,1\n")),
        CliCase("add: an extra x2 column", lambda c: _add(c, "add3.csv", "x0,x1,x2,value\n0.1,0.2,0.3,1\n")),
        CliCase("add: value 1e39", lambda c: _add(c, "addhuge.csv", "x0,x1,value\n0.1,0.2,1e39\n")),
        CliCase("add: design nan", lambda c: _add(c, "addnan.csv", "x0,x1,value\nnan,0.2,1\n")),
        CliCase("ask: --n 10**12", lambda c: ["ask", "--study", s(c), "--n", str(10**12), "--out", str(c.work / "b.csv")]),
        CliCase("ask: --n 0", lambda c: ["ask", "--study", s(c), "--n", "0", "--out", str(c.work / "b.csv")]),
        CliCase("ask: --n -1", lambda c: ["ask", "--study", s(c), "--n", "-1", "--out", str(c.work / "b.csv")]),
        CliCase("ask: --out not a .csv", lambda c: ["ask", "--study", s(c), "--out", str(c.work / "b.txt")]),
        CliCase("fail: unknown id", lambda c: ["fail", "--study", s(c), "--ids", f"{c.complete},999"]),
        CliCase("fail: ids a,b", lambda c: ["fail", "--study", s(c), "--ids", "a,b"]),
        CliCase("fail: already-failed id", lambda c: ["fail", "--study", s(c), "--ids", str(c.failed)]),
        CliCase("init: --set unknown key", lambda c: _init(c, "--set", "no_such_field=1"), creates=new),
        CliCase("init: --set steps_per_round=2.5", lambda c: _init(c, "--set", "steps_per_round=2.5"), creates=new),
        CliCase("init: --set alpha=nan", lambda c: _init(c, "--set", "alpha=nan"), creates=new),
        CliCase("init: --set progress=maybe", lambda c: _init(c, "--set", "progress=maybe"), creates=new),
        CliCase("init: --set without =", lambda c: _init(c, "--set", "steps_per_round"), creates=new),
        CliCase("init: --seed 2**64", lambda c: _init(c, "--seed", str(2**64)), creates=new),
        CliCase("init: --batch-size 0", lambda c: _init(c, "--batch-size", "0"), creates=new),
        CliCase("init: over an existing study", lambda c: ["init", "--study", s(c), "--prior", str(c.work / "prior")]),
        CliCase("status: a folder that is not a study", lambda c: ["status", "--study", str(c.work)]),
        CliCase("tell: UTF-8 BOM (valid: must store the value)",
                lambda c: _tell(c, "bom.csv", f"\ufeffid,value\n{c.pending[-1]},0.3125\n"),
                accept=lambda c: {c.pending[-1]: 0.3125}),
    ]  # fmt: skip


CLI_CASES = tuple(c.name for c in _cli_cases())


def cli_probe(case: CliCase, ctx: CliContext) -> Probe:
    """Run one hostile CLI call; exit 2 + one line + nothing changed (or an exact accept)."""
    before = read_study(ctx.study)
    rc, _, err = cli_call(case.argv(ctx))
    after = read_study(ctx.study)
    if case.accept is not None:
        expect = case.accept(ctx)
        want = Stored(dict(before.states), dict(before.values), before.designs)
        for i, v in expect.items():
            want.states[i], want.values[i] = "complete", v
        changed = same_study(after, want)
        ok = rc == 0 and not changed
        outcome = "accepted exactly" if ok else f"exit {rc}"
    else:
        changed = same_study(after, before)
        made = case.creates is not None and case.creates(ctx).exists()
        ok = one_line_error(rc, err) and not changed and not made
        outcome = (
            "exit 2, one line" if one_line_error(rc, err) else f"exit {rc}: {one_line(err, 80)}"
        )
        changed += ["a study folder was created"] if made else []
    return Probe(
        "hostile input",
        f"CLI {case.name}",
        outcome,
        len(before.told()),
        len(changed),
        ok,
        "; ".join(changed[:3]) or one_line(err, 160),
    )


def cli_probes(work: Path, names: tuple[str, ...] | None) -> list[Probe]:
    """Every hostile CLI case on a CLI-made study (or those in ``names``)."""
    folder = work / "hostile-cli"
    study, batch = cli_study(folder, "a", 6)
    other, other_batch = cli_study(folder, "b", 6, seed=1)
    told = folder / "told.csv"
    told.write_text("id,value\n0,1.25\n1,nan\n")
    if cli_call(["tell", "--study", str(study), str(told)])[0] != 0:
        raise RuntimeError("could not tell the hostile-CLI study")
    ctx = CliContext(folder, study, other, batch, other_batch, [2, 3, 4, 5], 0, 1)
    return [cli_probe(c, ctx) for c in _cli_cases() if names is None or c.name in names]


def hostile_probes(work: Path, sizes: Sizes, seed: int, log: Callable[[str], None]) -> list[Probe]:
    """Category 4: hostile API and CLI input."""
    probes = api_probes(work, sizes.api_cases) + cli_probes(work, sizes.cli_cases)
    log(f"  {len(probes)} hostile-input probes")
    return probes
