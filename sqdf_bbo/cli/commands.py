"""The study commands: ``init``, ``ask``, ``tell``, ``add``, ``fail``, ``status``, ``export``.

Each loads the study, acts, and commits before it returns (the exit code, 0); a problem is a
:class:`~sqdf_bbo.cli.errors.CLIError` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sqdf_bbo.cli.csvio import (
    has_designs,
    ids_from_file,
    parse_flag,
    parse_id,
    parse_id_list,
    parse_value,
    read_csv,
    read_designs,
    require_columns,
    write_atomic,
    write_designs_csv,
)
from sqdf_bbo.cli.errors import CLIError
from sqdf_bbo.cli.studies import (
    check_study_column,
    check_told_designs,
    config_class,
    load_study,
    open_prior,
    optimizer_classes,
    parse_sets,
    recorded_changes,
    settings_of,
    status_of,
    study_class,
    study_uid,
    units_of,
)
from sqdf_bbo.optimizers.registry import build

__all__ = [
    "cmd_init",
    "cmd_ask",
    "cmd_tell",
    "cmd_add",
    "cmd_fail",
    "cmd_status",
    "cmd_export",
    "cmd_config",
]


def cmd_init(args: argparse.Namespace) -> int:
    classes = optimizer_classes()
    cls = classes.get(args.method)
    if cls is None:
        raise CLIError(f"unknown method {args.method!r}; available: {', '.join(sorted(classes))}")
    kwargs: dict[str, Any] = {"batch_size": args.batch_size, "seed": args.seed, "study": args.study}
    params = inspect.signature(cls.__init__).parameters
    if args.set:
        if "config" not in params:
            raise CLIError(f"method {args.method!r} takes no config; drop --set")
        kwargs["config"] = parse_sets(args.set, config_class(cls))  # checked again by the class
    prior = open_prior(args.prior, args.device)
    first = next(iter(n for n in params if n != "self"), None)
    if first == "shape" and args.box is None and prior.value_range is None:
        raise CLIError(
            f"method {args.method!r} searches a box and prior {args.prior!r} is unbounded; "
            "pass --box LOW,HIGH"
        )
    if first not in ("prior", "shape"):
        raise CLIError(f"method {args.method!r} cannot be created from the shell")
    opt = build(cls, prior, args.box, **kwargs)
    print(
        f"created study {opt.study} (method {args.method}, prior {args.prior}, design shape "
        f"{tuple(opt.shape)}, batch size {opt.batch_size}, seed {opt.seed})\n"
        f"next: sqdf-bbo ask --study {args.study} --out batch.csv"
    )
    opt.close()
    return 0


def parse_condition(text: str) -> int | str:
    """One condition of the command line or a CSV cell: an integer class label, or a prompt."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return text


def parse_conditions(text: str, n: int) -> list[int | str]:
    """``--conditions``: comma-separated conditions cycled over ``n`` designs."""
    items = [parse_condition(t) for t in text.split(",") if t.strip()]
    if not items:
        raise CLIError(f"--conditions {text!r} names no condition")
    return [items[i % len(items)] for i in range(n)]


def cmd_ask(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise CLIError(f"--out must name a .csv file, got {args.out!r}")
    opt = load_study(args.study)
    try:
        n = args.n if args.n is not None else opt.batch_size
        conditions = parse_conditions(args.conditions, n) if args.conditions else None
        batch = opt.ask(n, conditions=conditions) if conditions else opt.ask(args.n)
    finally:
        opt.close()
    npy = out.with_suffix(".npy")
    # The points are committed as pending now; if writing fails they can be re-exported.
    try:
        extra = {"study": [study_uid(opt)] * len(batch)}
        if batch.conditions is not None:
            extra["condition"] = [str(c) for c in batch.conditions]
        write_designs_csv(out, batch.ids, batch.x, extra, units_of(opt))
        arr = batch.x.cpu().numpy()

        def write_npy(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)

        write_atomic(npy, write_npy)
    except OSError as err:
        raise CLIError(
            f"asked {len(batch)} points but could not write {out}: {err}; recover them with "
            f"sqdf-bbo export --study {args.study} --state pending --out FILE.csv"
        ) from None
    print(
        f"asked {len(batch)} designs (ids {batch.ids[0]}..{batch.ids[-1]}, round {opt.round}) "
        f"-> {out} and {npy} (shape {tuple(batch.x.shape)})\n"
        f"next: evaluate them, add a value column to {out.name} (or write a CSV with columns "
        f"id,value), then sqdf-bbo tell --study {args.study} FILE.csv"
    )
    return 0


def cmd_tell(args: argparse.Namespace) -> int:
    header, rows = read_csv(args.results)
    require_columns(header, ("id", "value"), args.results)
    if not rows:
        raise CLIError(f"{args.results} has no rows")
    ids, values, reasons, transient = [], [], [], []
    for line, r in rows:
        where = f"{args.results} line {line}"
        ids.append(parse_id(r["id"], where))
        values.append(parse_value(r["value"], where))
        reasons.append(r.get("reason") or None)
        transient.append(parse_flag(r.get("transient", ""), where))
    opt = load_study(args.study)
    try:
        check_study_column(header, rows, opt, args.results)
        check_told_designs(header, rows, ids, opt, args.results)
        # validates everything before writing anything
        opt.tell(ids, values, reasons=reasons, transient=transient)
    finally:
        opt.close()
    n_failed = sum(1 for v in values if not math.isfinite(v))
    n_transient = sum(transient)
    c = opt.counts()
    print(
        f"told {len(ids)} values ({n_failed} failed, {n_transient} of them transient) to "
        f"{args.study}; pending {c['pending']}, complete {c['complete']}, failed {c['failed']}"
    )
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """External observations (an archive, docs/offline.md): columns ``x0..x{D-1}`` and
    ``value`` as in an asked batch file, optional ``reason`` and ``transient`` for failed rows
    (an ``id`` column is ignored: the study gives new ids). ``--from-export``: the file is
    ``sqdf-bbo export`` output of another study (its ``study`` column is not checked, its
    pending rows are skipped, and a row whose ``state`` is failed is a failed point)."""
    header, rows = read_csv(args.data)
    if "value" not in header:
        raise CLIError(
            f"{args.data} needs columns x0..x{{D-1}} and value (got {', '.join(header)})"
        )
    skipped = 0
    if args.from_export:
        require_columns(header, ("state",), args.data)
        kept = [(line, r) for line, r in rows if r["state"] != "pending"]
        skipped = len(rows) - len(kept)
        rows = kept
    if not rows:
        raise CLIError(f"{args.data} has no rows" + (" that were told" if skipped else ""))
    opt = load_study(args.study)
    try:
        if not args.from_export:
            try:
                check_study_column(header, rows, opt, args.data)
            except CLIError as err:
                raise CLIError(
                    f"{err} (to warm-start from another study's export, add --from-export)"
                ) from None
        values, reasons, transient = _archive_rows(rows, args.data, args.from_export)
        units = units_of(opt)
        if not has_designs(header, units):
            names = "x0..x{D-1}" if units is None else ", ".join(units.names)
            raise CLIError(f"{args.data} needs columns {names} and value (got {', '.join(header)})")
        xs = read_designs(header, rows, int(np.prod(opt.shape)), args.data, units)
        x = torch.tensor(xs, dtype=torch.float64).reshape(len(xs), *opt.shape)
        # validates everything before writing anything
        conds = None
        if "condition" in header:  # a conditional prior's archive: one condition per row
            conds = [parse_condition(r["condition"]) for _, r in rows]
        ids = opt.tell_external(x, values, reasons=reasons, transient=transient, conditions=conds)
    finally:
        opt.close()
    n_failed = sum(1 for v in values if not math.isfinite(v))
    pending = f"; {skipped} pending rows skipped" if skipped else ""
    print(
        f"added {len(ids)} external observations (ids {ids[0]}..{ids[-1]}; {n_failed} failed, "
        f"{sum(transient)} of them transient{pending}) to {args.study}; the next ask fits "
        "them first"
    )
    return 0


def _archive_rows(
    rows: list, path: str, from_export: bool
) -> tuple[list[float], list[str | None], list[bool]]:
    """Values (NaN: failed), reasons and transient flags of an archive's rows."""
    values, reasons, transient = [], [], []
    for line, r in rows:
        where = f"{path} line {line}"
        failed = from_export and _export_state(r["state"], where) == "failed"
        values.append(math.nan if failed else parse_value(r["value"], where))
        reasons.append(r.get("reason") or None)
        transient.append(parse_flag(r.get("transient", ""), where))
        if math.isfinite(values[-1]) and (reasons[-1] or transient[-1]):
            raise CLIError(
                f"{where}: a reason or transient flag is for a failed row, but value is "
                f"{r['value']!r} (leave the value empty or write nan for a failed point)"
            )
    return values, reasons, transient


def _export_state(raw: str, where: str) -> str:
    if raw not in ("complete", "failed"):
        raise CLIError(f"{where}: state {raw!r} is not pending, complete or failed")
    return raw


def cmd_fail(args: argparse.Namespace) -> int:
    if args.ids_file is not None:
        ids, header, rows = ids_from_file(args.ids_file)
    else:
        ids, header, rows = parse_id_list(args.ids), [], []
    opt = load_study(args.study)
    try:
        check_study_column(header, rows, opt, args.ids_file)
        check_told_designs(header, rows, ids, opt, args.ids_file)
        # validates everything before writing anything
        opt.mark_failed(ids, args.reason, transient=not args.design_failure)
        c = opt.counts()
    finally:
        opt.close()
    why = f" ({args.reason})" if args.reason else ""
    kind = "design failures" if args.design_failure else "transient failures"
    print(
        f"marked {len(ids)} points failed{why} as {kind} in {args.study}; "
        f"pending {c['pending']}, complete {c['complete']}, failed {c['failed']}"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    opt = load_study(args.study, attach=False)
    st = status_of(opt)
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    h = opt.history
    print(
        f"study    {args.study}  (method {st['method']}, prior {st.get('prior', '-')}, shape {tuple(st['shape'])})"
    )
    print(f"rounds   {st['round']} fitted; batch size {st['batch_size']}; seed {st['seed']}")
    print(
        f"points   {st['points']}: pending {st['pending']}, complete {st['complete']}, "
        f"failed {st['failed']} (design {st['failed_design']}, transient "
        f"{st['failed_transient']}; external {st['external']})"
    )
    if st["best_value"] is None:
        print("best     - (no successful evaluation yet)")
    else:
        print(f"best     {st['best_value']:.6g} (id {st['best_id']})")
    if len(h):
        per = h.groupby("round").agg(
            asked=("source", lambda s: int((s == "asked").sum())),
            complete=("state", lambda s: int((s == "complete").sum())),
            mean=(
                "value",
                lambda v: (
                    float(v[v.map(math.isfinite)].mean())
                    if v.map(math.isfinite).any()
                    else math.nan
                ),
            ),
            best=(
                "value",
                lambda v: (
                    float(v[v.map(math.isfinite)].max()) if v.map(math.isfinite).any() else math.nan
                ),
            ),
        )
        print("per round:")
        print(per.to_string())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    opt = load_study(args.study, attach=False)
    h = opt.history
    if args.state:
        h = h[h["state"] == args.state]
    ids = [int(i) for i in h["id"]]
    out = Path(args.out)
    if not ids:
        raise CLIError(f"no points with state {args.state!r} in {args.study}")
    x = opt.designs(ids)
    extra = {
        "round": h["round"].tolist(),
        "state": h["state"].tolist(),
        "value": ["" if math.isnan(v) else repr(v) for v in h["value"].tolist()],
        "source": h["source"].tolist(),
        "reason": ["" if r is None else r for r in h["reason"].tolist()],
        "transient": ["true" if t else "false" for t in h["transient"].tolist()],
        "study": [study_uid(opt)] * len(ids),
    }
    if "condition" in h.columns:
        extra["condition"] = ["" if c is None else str(c) for c in h["condition"].tolist()]
    write_designs_csv(out, ids, x, extra, units_of(opt))
    print(f"wrote {len(ids)} points to {out}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Show a study's settings and their recorded changes, or change them (``--set``)."""
    if not args.set:
        settings = settings_of(load_study(args.study, attach=False))
        changes = recorded_changes(args.study)
        print(json.dumps({"settings": settings, "changes": changes}, indent=2))
        return 0
    changes = parse_sets(args.set, config_class(study_class(args.study)))
    before = len(recorded_changes(args.study))
    load_study(args.study, config_changes=changes).close()
    log = recorded_changes(args.study)
    if len(log) == before:
        print(f"no setting of {args.study} changed (the values given are the current ones)")
        return 0
    for key, (old, new) in log[-1]["changes"].items():
        print(f"{key}: {json.dumps(old)} -> {json.dumps(new)}")
    print(f"recorded in {args.study} (sqdf-bbo config --study {args.study} lists every change)")
    return 0
