"""``sqdf-bbo``: run a study from the shell, one call per lab step (days may pass between calls).

    sqdf-bbo init   --study DIR --prior digits [--batch-size 64 --seed 0 --method sqdf --set k=v]
    sqdf-bbo ask    --study DIR [--n 96] --out batch.csv        # + batch.npy (n, *shape) beside it
    sqdf-bbo tell   --study DIR results.csv                     # columns id,value; empty/nan = failed
    sqdf-bbo add    --study DIR data.csv                        # external data: x0..x{D-1},value
    sqdf-bbo fail   --study DIR --ids 3,7 [--reason TEXT]       # or --ids-file CSV (an id column)
    sqdf-bbo status --study DIR [--json]
    sqdf-bbo export --study DIR --out history.csv [--state pending]
    sqdf-bbo bench  --suite quick --out runs/bench               # benchmarks.runner.bench_cli
    sqdf-bbo demo   --out runs/demo                              # benchmarks.demo.demo_cli

Every call loads the study, acts, and commits before it exits (see :mod:`sqdf_bbo.study.store`).
Errors print one line to stderr and exit with code 2.

Asked (and exported) CSVs carry a ``study`` column, the study's uid: ``tell`` refuses a file
whose ``study`` column names another study, and when the file has design columns
``x0..x{D-1}`` they must equal the designs asked under those ids. ``--set KEY=VALUE`` values
are parsed by the type of the config field (:func:`sqdf_bbo.config.parse_field`).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import os
import re
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "CLIError"]

FAILED_TOKENS = ("", "nan", "na", "n/a", "failed")
DESIGN_RTOL = 1e-6  # x columns written with repr round-trip exactly; allow re-saved copies
DESIGN_ATOL = 1e-9
_XCOL = re.compile(r"x\d+")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise CLIError(f"{self.prog}: {message}")


# ---------------------------------------------------------------------------- helpers
def _load_prior(name: str, device: str) -> Any:
    from sqdf_bbo.diffusion.prior import DiffusionPrior

    if Path(name).is_dir():
        return DiffusionPrior.load(name, device=device)
    from sqdf_bbo.diffusion.priors import available_priors, load_prior

    names = available_priors()
    if name not in names:
        raise CLIError(
            f"unknown prior {name!r}; available: {', '.join(names) or 'none'} (or a folder)"
        )
    return load_prior(name, device=device)


def _config_class(cls: type) -> type | None:
    """The config dataclass a method's ``config=`` takes (``config_class`` or its annotation)."""
    import dataclasses
    import typing

    found = getattr(cls, "config_class", None)
    if found is not None:
        return found
    try:
        hint = typing.get_type_hints(cls.__init__).get("config")
    except Exception:  # unresolvable annotations: fall back to untyped values
        return None
    options = typing.get_args(hint) or (hint,)
    return next((a for a in options if isinstance(a, type) and dataclasses.is_dataclass(a)), None)


def _parse_untyped(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _parse_sets(items: Sequence[str], config_class: type | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` items, each value parsed by the type of the config field KEY."""
    from sqdf_bbo.config import parse_field

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
        if config_class is None:
            out[key] = _parse_untyped(raw)
        else:
            out[key] = parse_field(config_class, key, raw)
    return out


def _optimizer_classes() -> dict[str, type]:
    from sqdf_bbo.optimizers.registry import registered_methods  # the package registers all

    return {k: v for k, v in registered_methods().items() if not k.startswith("test-")}


def _load_study(path: str, attach: bool = True) -> Any:
    from sqdf_bbo.optimizers.base import Optimizer

    _optimizer_classes()
    return Optimizer.load(path, attach=attach)


def _write_atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_designs_csv(
    path: Path, ids: list[int], x: Any, extra: dict[str, list] | None = None
) -> None:
    flat = x.reshape(x.shape[0], -1).double().cpu().numpy()
    header = ["id"] + [f"x{j}" for j in range(flat.shape[1])] + list(extra or {})

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for k, i in enumerate(ids):
                row = [str(i)] + [repr(float(v)) for v in flat[k]]
                row += [str(col[k]) for col in (extra or {}).values()]
                w.writerow(row)

    _write_atomic(path, write)


def _check_header(header: list[str], path: str) -> None:
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise CLIError(f"{path} has a duplicate column {name!r} (columns: {', '.join(header)})")
        seen.add(name)


def _row_dict(header: list[str], fields: list[str], where: str) -> dict[str, str]:
    """One row as ``{column: stripped text}``; a short row or extra non-empty fields are errors."""
    extra = fields[len(header) :]
    if len(fields) < len(header) or any(f.strip() for f in extra):
        raise CLIError(
            f"{where} has {len(fields)} field(s) but the header has {len(header)} "
            "(write an empty field or nan for a failed evaluation)"
        )
    return {name: value.strip() for name, value in zip(header, fields) if name}


def _read_csv(path: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and ``(line number, row)`` pairs of a CSV file (UTF-8, with or without a BOM)."""
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"no such file: {path}")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            first = next(reader, None)
            if first is None:
                raise CLIError(f"{path} is empty (expected a header line)")
            header = [h.strip() for h in first]
            _check_header(header, path)
            rows = [
                (reader.line_num, _row_dict(header, fields, f"{path} line {reader.line_num}"))
                for fields in reader
                if fields  # blank lines
            ]
    except UnicodeDecodeError as err:
        raise CLIError(
            f"{path} is not UTF-8 text (byte {err.start}); save it as CSV UTF-8"
        ) from None
    except csv.Error as err:
        raise CLIError(f"{path} is not a readable CSV file: {err}") from None
    return header, rows


def _require_columns(header: list[str], columns: Sequence[str], path: str) -> None:
    for col in columns:
        if col not in header:
            raise CLIError(f"{path} has no {col!r} column (columns: {', '.join(header)})")


def _parse_id(raw: str, where: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise CLIError(f"{where}: id {raw!r} is not an integer") from None


def _study_uid(opt: Any) -> str:
    """The uid shared by every copy of a study (store meta ``study_uid``)."""
    return str(opt._study_uid)


def _check_study_column(
    header: list[str], rows: list[tuple[int, dict[str, str]]], opt: Any, path: str
) -> None:
    """A ``study`` column, when present, must name ``opt``'s study on every row."""
    if "study" not in header:
        return
    uid = _study_uid(opt)
    for line, r in rows:
        if r["study"] != uid:
            raise CLIError(
                f"{path} line {line}: this row is from another study (study {r['study']!r}, "
                f"this study is {uid}); nothing was changed"
            )


def _design_columns(header: list[str]) -> list[str]:
    return [h for h in header if _XCOL.fullmatch(h)]


def _check_design_columns(header: list[str], dim: int, path: str) -> list[str]:
    """The columns ``x0..x{dim-1}``, which must be exactly the file's design columns."""
    found = _design_columns(header)
    expected = [f"x{j}" for j in range(dim)]
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    if missing or unexpected:
        parts = [
            f"{what} {', '.join(cols[:5])}{', ...' if len(cols) > 5 else ''}"
            for what, cols in (("missing", missing), ("unexpected", unexpected))
            if cols
        ]
        raise CLIError(
            f"{path}: the design columns must be exactly x0..x{dim - 1} (the study's designs "
            f"have {dim} values); " + "; ".join(parts)
        )
    return expected


def _parse_designs(
    rows: list[tuple[int, dict[str, str]]], xcols: list[str], path: str
) -> list[list[float]]:
    out = []
    for line, r in rows:
        values = []
        for c in xcols:
            try:
                values.append(float(r[c]))
            except ValueError:
                raise CLIError(
                    f"{path} line {line}: design value {c}={r[c]!r} is not a number"
                ) from None
        out.append(values)
    return out


def _check_told_designs(
    header: list[str], rows: list[tuple[int, dict[str, str]]], ids: list[int], opt: Any, path: str
) -> None:
    """When a results file has x columns, each known id's row must match its stored design."""
    import numpy as np

    if not _design_columns(header):
        return
    xcols = _check_design_columns(header, int(np.prod(opt.shape)), path)
    given = _parse_designs(rows, xcols, path)
    known = set(int(i) for i in opt.history["id"])
    picked = [k for k, i in enumerate(ids) if i in known]  # unknown ids: reported by tell
    if not picked:
        return
    stored = opt.designs([ids[k] for k in picked]).reshape(len(picked), -1)
    stored = stored.double().cpu().numpy()
    for row, k in zip(stored, picked):
        x = np.asarray(given[k], dtype=np.float64)
        if not np.allclose(x, row, rtol=DESIGN_RTOL, atol=DESIGN_ATOL):
            diff = float(np.nanmax(np.abs(x - row))) if np.isfinite(x).all() else math.nan
            raise CLIError(
                f"{path} line {rows[k][0]}: the x columns of id {ids[k]} differ from the design "
                f"asked under that id (largest difference {diff:.3g}); is the file from another "
                "study? nothing was changed"
            )


def _parse_value(raw: str, where: str) -> float:
    if raw.lower() in FAILED_TOKENS:
        return math.nan
    try:
        return float(raw)
    except ValueError:
        raise CLIError(
            f"{where}: value {raw!r} is not a number (leave it empty or write nan for a failed evaluation)"
        ) from None


# ---------------------------------------------------------------------------- commands
def cmd_init(args: argparse.Namespace) -> int:
    import inspect

    classes = _optimizer_classes()
    cls = classes.get(args.method)
    if cls is None:
        raise CLIError(f"unknown method {args.method!r}; available: {', '.join(sorted(classes))}")
    kwargs: dict[str, Any] = {"batch_size": args.batch_size, "seed": args.seed, "study": args.study}
    params = inspect.signature(cls.__init__).parameters
    if args.set:
        if "config" not in params:
            raise CLIError(f"method {args.method!r} takes no config; drop --set")
        kwargs["config"] = _parse_sets(args.set, _config_class(cls))  # checked again by the class
    prior = _load_prior(args.prior, args.device)
    first = next(iter(n for n in params if n != "self"), None)
    if first == "prior":
        opt = cls(prior, **kwargs)
    elif first == "shape":  # methods that search a box directly (e.g. gp-bo)
        box = args.box or prior.value_range
        if box is None:
            raise CLIError(
                f"method {args.method!r} searches a box and prior {args.prior!r} is unbounded; "
                "pass --box LOW,HIGH"
            )
        if "box" in params:
            kwargs["box"] = tuple(box)
        opt = cls(prior.shape, **kwargs)
    else:
        raise CLIError(f"method {args.method!r} cannot be created from the shell")
    print(
        f"created study {opt.study} (method {args.method}, prior {args.prior}, design shape "
        f"{tuple(opt.shape)}, batch size {opt.batch_size}, seed {opt.seed})\n"
        f"next: sqdf-bbo ask --study {args.study} --out batch.csv"
    )
    opt.close()
    return 0


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    from sqdf_bbo.optimizers.base import Optimizer

    try:
        return Optimizer.check_seed(seed)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _box(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. -3,3), got {text!r}") from None
    return low, high


def cmd_ask(args: argparse.Namespace) -> int:
    import numpy as np

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise CLIError(f"--out must name a .csv file, got {args.out!r}")
    opt = _load_study(args.study)
    try:
        batch = opt.ask(args.n)
    finally:
        opt.close()
    npy = out.with_suffix(".npy")
    # The points are committed as pending now; if writing fails they can be re-exported.
    try:
        _write_designs_csv(out, batch.ids, batch.x, {"study": [_study_uid(opt)] * len(batch)})
        arr = batch.x.cpu().numpy()

        def write_npy(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)

        _write_atomic(npy, write_npy)
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
    header, rows = _read_csv(args.results)
    _require_columns(header, ("id", "value"), args.results)
    if not rows:
        raise CLIError(f"{args.results} has no rows")
    ids, values = [], []
    for line, r in rows:
        where = f"{args.results} line {line}"
        ids.append(_parse_id(r["id"], where))
        values.append(_parse_value(r["value"], where))
    opt = _load_study(args.study)
    try:
        _check_study_column(header, rows, opt, args.results)
        _check_told_designs(header, rows, ids, opt, args.results)
        opt.tell(ids, values)  # validates everything before writing anything
    finally:
        opt.close()
    n_failed = sum(1 for v in values if not math.isfinite(v))
    c = opt.counts()
    print(
        f"told {len(ids)} values ({n_failed} failed) to {args.study}; "
        f"pending {c['pending']}, complete {c['complete']}, failed {c['failed']}"
    )
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    header, rows = _read_csv(args.data)
    if "value" not in header or not _design_columns(header):
        raise CLIError(
            f"{args.data} needs columns x0..x{{D-1}} and value (got {', '.join(header)})"
        )
    if not rows:
        raise CLIError(f"{args.data} has no rows")
    values = [_parse_value(r["value"], f"{args.data} line {line}") for line, r in rows]
    opt = _load_study(args.study)
    try:
        xcols = _check_design_columns(header, int(np.prod(opt.shape)), args.data)
        xs = _parse_designs(rows, xcols, args.data)
        x = torch.tensor(xs, dtype=torch.float64).reshape(len(xs), *opt.shape)
        ids = opt.tell_external(x, values)
    finally:
        opt.close()
    print(f"added {len(ids)} external observations (ids {ids[0]}..{ids[-1]}) to {args.study}")
    return 0


def _parse_id_list(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise CLIError("--ids needs at least one id, e.g. --ids 3,7,9")
    return [_parse_id(p, "--ids") for p in parts]


def _ids_from_file(path: str) -> tuple[list[int], list[str], list[tuple[int, dict[str, str]]]]:
    header, rows = _read_csv(path)
    _require_columns(header, ("id",), path)
    if not rows:
        raise CLIError(f"{path} has no rows")
    return [_parse_id(r["id"], f"{path} line {line}") for line, r in rows], header, rows


def cmd_fail(args: argparse.Namespace) -> int:
    if args.ids_file is not None:
        ids, header, rows = _ids_from_file(args.ids_file)
    else:
        ids, header, rows = _parse_id_list(args.ids), [], []
    opt = _load_study(args.study)
    try:
        _check_study_column(header, rows, opt, args.ids_file)
        _check_told_designs(header, rows, ids, opt, args.ids_file)
        opt.mark_failed(ids, args.reason)  # validates everything before writing anything
        c = opt.counts()
    finally:
        opt.close()
    why = f" ({args.reason})" if args.reason else ""
    print(
        f"marked {len(ids)} points failed{why} in {args.study}; "
        f"pending {c['pending']}, complete {c['complete']}, failed {c['failed']}"
    )
    return 0


def _status(opt: Any) -> dict[str, Any]:
    h = opt.history
    best = opt.best()
    c = opt.counts()
    out: dict[str, Any] = {
        "study": str(opt.study) if opt.study else None,
        "method": opt.method,
        "shape": list(opt.shape),
        "batch_size": opt.batch_size,
        "seed": opt.seed,
        "round": opt.round,
        "points": len(h),
        "pending": c["pending"],
        "complete": c["complete"],
        "failed": c["failed"],
        "external": int((h["source"] == "external").sum()) if len(h) else 0,
        "best_value": None if best is None else best.value,
        "best_id": None if best is None else best.id,
    }
    prior = getattr(opt, "prior", None)
    if prior is not None:
        out["prior"] = prior.name
    return out


def cmd_status(args: argparse.Namespace) -> int:
    opt = _load_study(args.study, attach=False)
    st = _status(opt)
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
        f"failed {st['failed']} (external {st['external']})"
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
    opt = _load_study(args.study, attach=False)
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
        "study": [_study_uid(opt)] * len(ids),
    }
    _write_designs_csv(out, ids, x, extra)
    print(f"wrote {len(ids)} points to {out}")
    return 0


def _delegate(module: str, func: str, args: argparse.Namespace) -> int:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and (module == err.name or module.startswith(err.name + ".")):
            raise CLIError(
                f"'{args.command}' needs {module} ({module.replace('.', '/')}.py), which is not "
                "available in this installation"
            ) from None
        raise
    fn = getattr(mod, func, None)
    if fn is None:
        raise CLIError(f"'{args.command}' needs {module}.{func}, which does not exist")
    result = fn(args)
    return int(result) if isinstance(result, int) else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from importlib.util import find_spec

    if getattr(args, "dask", None) and find_spec("distributed") is None:
        raise CLIError('--dask needs the optional dependency dask: pip install -e ".[dask]"')
    return _delegate("benchmarks.runner", "bench_cli", args)


def cmd_demo(args: argparse.Namespace) -> int:
    return _delegate("benchmarks.demo", "demo_cli", args)


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sqdf-bbo",
        description="Online black-box optimization with SQDF-fine-tuned diffusion priors.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def study_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--study", required=True, metavar="DIR", help="study folder")

    sp = sub.add_parser("init", help="create a study folder")
    study_arg(sp)
    sp.add_argument(
        "--prior", required=True, help="embedded prior name (digits, rings) or a saved prior folder"
    )
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--seed", type=_seed, default=0, help="integer in [0, 2**62)")
    sp.add_argument("--method", default="sqdf", help="optimizer (default sqdf)")
    sp.add_argument("--device", default="cpu")
    sp.add_argument(
        "--box", type=_box, default=None, help="box of box methods (gp-bo), written --box=LOW,HIGH"
    )
    sp.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a field of the method's config (SQDFOptimizerConfig for sqdf), parsed by its "
        "type: true/false, numbers, none, JSON for mappings; repeatable",
    )
    sp.set_defaults(func=cmd_init)

    sp = sub.add_parser("ask", help="propose designs; write CSV (+ .npy beside it)")
    study_arg(sp)
    sp.add_argument(
        "--n", type=int, default=None, help="number of designs (default: the study's batch size)"
    )
    sp.add_argument("--out", default="batch.csv", help="CSV file (default batch.csv)")
    sp.set_defaults(func=cmd_ask)

    sp = sub.add_parser("tell", help="report values from a CSV with columns id,value")
    study_arg(sp)
    sp.add_argument(
        "results",
        help="CSV with columns id,value (empty or nan = failed); optional study and x0.. "
        "columns (as asked) are checked against the study",
    )
    sp.set_defaults(func=cmd_tell)

    sp = sub.add_parser("add", help="add external observations (CSV: x0..x{D-1},value)")
    study_arg(sp)
    sp.add_argument("data")
    sp.set_defaults(func=cmd_add)

    sp = sub.add_parser("fail", help="mark pending or complete points failed")
    study_arg(sp)
    which = sp.add_mutually_exclusive_group(required=True)
    which.add_argument("--ids", help="comma-separated ids, e.g. 3,7,9")
    which.add_argument("--ids-file", metavar="CSV", help="CSV with an id column")
    sp.add_argument("--reason", default="", help="why (shown in history's reason column)")
    sp.set_defaults(func=cmd_fail)

    sp = sub.add_parser("status", help="rounds, counts and best value")
    study_arg(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("export", help="write points (designs, values, states) to CSV")
    study_arg(sp)
    sp.add_argument("--out", required=True)
    sp.add_argument("--state", choices=("pending", "complete", "failed"), default=None)
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("bench", help="run a benchmark suite (benchmarks.runner)")
    sp.add_argument("--suite", choices=("smoke", "quick", "paper"), default="quick")
    sp.add_argument("--out", default="runs/bench")
    sp.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
    sp.add_argument("--methods", default=None, help="comma-separated method names")
    sp.add_argument("--tasks", default=None, help="comma-separated task names")
    sp.add_argument("--workers", type=int, default=None, help="parallel runs (default 2)")
    sp.add_argument("--threads", type=int, default=1, help="torch threads per run")
    sp.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS|local:N",
        help="run each run as a job on this Dask scheduler (local:N: a local cluster of N "
        "single-threaded processes) instead of --workers local processes",
    )
    sp.add_argument("--no-progress", dest="progress", action="store_false")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("demo", help="the digits demo (benchmarks.demo)")
    sp.add_argument("--out", default="runs/demo")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--threads", type=int, default=1, help="torch threads")
    sp.add_argument("--no-progress", dest="progress", action="store_false")
    sp.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sqdf-bbo`` console script; returns the exit code."""
    from sqdf_bbo.study.store import StudyError

    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        return int(args.func(args))
    except CLIError as err:
        msg = str(err) if str(err).startswith("sqdf-bbo") else f"sqdf-bbo: {err}"
    except StudyError as err:
        msg = f"sqdf-bbo: {err}"
    except KeyError as err:
        msg = f"sqdf-bbo: {err.args[0] if err.args else err}"
    except (ValueError, TypeError, OSError, sqlite3.Error) as err:
        msg = f"sqdf-bbo: {err}"
    except KeyboardInterrupt:
        msg = "sqdf-bbo: interrupted (everything told before is saved)"
    print(" ".join(msg.split()), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
