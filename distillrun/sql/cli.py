"""`distillrun sql check` and `distillrun sql compare`: the run's validator, pointed at your SQL.

  distillrun sql check --schema FILE --dialect D [--data FILE] [QUERIES]
      one JSON verdict per query: {"line", "id"?, "ok", "reason", "message", "rows", "ms"}
  distillrun sql compare --schema FILE --dialect D [--data FILE] [--spider] [PAIRS]
      one JSON line per gold/predicted pair, then {"pairs", "scored", "matched", "accuracy",
      "unjudgeable", "gold_empty", "gold_failed"}

Both use exactly the rules of the validate and evaluate stages (`judge`, `sql.pairs`), so a
query accepted here is accepted in a run, and a pair is scored as the evaluate stage scores it.
QUERIES is a .sql file whose statements end with `;` (over any number of lines), a file of one
query per line, or JSON Lines with a `sql` field (and an optional `id`); PAIRS is JSON Lines
with `gold` and `pred` (or the evaluate stage's `gold_sql` and `predicted_sql`, which is null
when the answer held no SQL). Either may be `-` for stdin (the default). Queries run in a
sandbox built from the schema and the optional seed rows; for postgres and mysql that is a
sandbox server named by the DISTILLRUN_SANDBOX_* variables.

Bad input files end with a message naming the file (and line) and exit status 1, never a
traceback. `check` also exits 1 when it rejected a query, as a linter does; `compare`'s
verdicts do not change its exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from rich.console import Console

from distillrun.api.spec import ComparisonMode, ComparisonSpec, Dialect, SandboxSpec

if TYPE_CHECKING:  # the SQL layer (sqlglot, the sandboxes) loads only when a command runs
    from distillrun.sql.sandbox import Sandbox
    from distillrun.sql.schema import SchemaInfo
    from distillrun.sql.verdict import Verdict


class InputError(Exception):
    """An input file that cannot be used; the message names it (and the line)."""


@dataclass(frozen=True)
class Item:
    """One query (or pair) from an input file: its line number, optional id and fields."""

    line: int
    id: str | None
    fields: dict[str, str]


def _read_text(path: str, what: str) -> str:
    """The text of an input file (`-`: stdin), read as UTF-8; other encodings are named."""
    from distillrun.api.text import NotUtf8, decode_text

    origin = "stdin" if path == "-" else path
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        return decode_text(data, f"{what} {origin}")
    except OSError as error:
        raise InputError(f"cannot read {what} {path}: {error}") from None
    except NotUtf8 as error:
        raise InputError(str(error)) from None


def _json_line(raw: str, origin: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InputError(f"{origin} line {number}: not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise InputError(f"{origin} line {number}: expected a JSON object")
    return value


def _field(record: dict[str, Any], names: tuple[str, ...], origin: str, number: int) -> str:
    for name in names:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    wanted = " or ".join(f'"{n}"' for n in names)
    raise InputError(f"{origin} line {number}: needs a non-empty string field {wanted}")


def _nullable_field(
    record: dict[str, Any], names: tuple[str, ...], origin: str, number: int
) -> str | None:
    """Like `_field`, but a field given as null (or blank) reads as None: the evaluate stage
    writes `predicted_sql: null` when an answer held no SQL."""
    present = [name for name in names if name in record]
    if present and all(record[name] is None or record[name] == "" for name in present):
        return None
    return _field(record, names, origin, number)


def _identity(record: dict[str, Any]) -> str | None:
    value = record.get("id")
    return None if value is None else str(value)


def read_queries(path: str, dialect: Dialect) -> list[Item]:
    """Queries from a file: JSON Lines when the first non-blank line is an object; else, when
    the text has a `;` ending a statement, each statement (over as many lines as it takes);
    else one query per non-blank line. An item's line is where its query starts."""
    origin = "stdin" if path == "-" else path
    text = _read_text(path, "queries")
    lines = [(n, raw) for n, raw in enumerate(text.splitlines(), 1) if raw.strip()]
    if not lines:
        raise InputError(f"{origin} holds no query")
    if not lines[0][1].lstrip().startswith("{"):
        statements = split_statements(text, dialect)
        if statements is not None:
            return [Item(n, None, {"sql": sql}) for n, sql in statements]
        return [Item(n, None, {"sql": raw.strip()}) for n, raw in lines]
    items = []
    for number, raw in lines:
        record = _json_line(raw, origin, number)
        sql = _field(record, ("sql",), origin, number)
        items.append(Item(number, _identity(record), {"sql": sql}))
    return items


def split_statements(text: str, dialect: Dialect) -> list[tuple[int, str]] | None:
    """(line, statement) for each statement of a script whose statements end with `;`, as the
    dialect's lexer reads strings and comments; None when no `;` ends a statement (or the text
    does not tokenize), so the text is read one query per line."""
    from sqlglot.errors import TokenError

    from distillrun.sql.ddl_text import token_statements

    try:
        statements = token_statements(text, dialect)
    except TokenError:
        return None
    if not any(s.closed for s in statements):
        return None
    return [(s.line, s.text(text)) for s in statements]


def read_pairs(path: str) -> list[Item]:
    """Gold/predicted pairs from JSON Lines; a pair whose prediction is null (no SQL) has no
    "pred" field."""
    origin = "stdin" if path == "-" else path
    items = []
    for number, raw in enumerate(_read_text(path, "pairs").splitlines(), 1):
        if not raw.strip():
            continue
        record = _json_line(raw, origin, number)
        gold = _field(record, ("gold", "gold_sql"), origin, number)
        pred = _nullable_field(record, ("pred", "predicted_sql", "predicted"), origin, number)
        fields = {"gold": gold} if pred is None else {"gold": gold, "pred": pred}
        items.append(Item(number, _identity(record), fields))
    if not items:
        raise InputError(f"{origin} holds no pair")
    return items


def _schema(args: argparse.Namespace) -> tuple[SchemaInfo, str | None]:
    from distillrun.sql.schema import SchemaError, parse_schema

    ddl = _read_text(args.schema, "schema")
    try:
        schema = parse_schema(ddl, Dialect(args.dialect))
    except SchemaError as error:
        raise InputError(f"schema {args.schema}: {error}") from None
    for warning in schema.warnings:
        sys.stderr.write(f"distillrun sql: schema {args.schema}: warning: {warning}\n")
    seed = _read_text(args.data, "data") if args.data else None
    return schema, seed


@contextmanager
def _sandbox(
    schema: SchemaInfo, seed: str | None, args: argparse.Namespace
) -> Iterator[Sandbox | None]:
    from distillrun.sql.errors import SandboxError
    from distillrun.sql.sandbox import open_sandbox

    if getattr(args, "no_execute", False):
        yield None
        return
    limits = SandboxSpec(statement_timeout_ms=args.timeout_ms, max_rows=args.max_rows)
    try:
        sandbox = open_sandbox(schema, seed, limits)
    except SandboxError as error:
        origin = {"seed": f"data {args.data}: ", "schema": f"schema {args.schema}: "}
        prefix = next((o for k, o in origin.items() if error.message.startswith(k)), "")
        raise InputError(f"cannot build the sandbox: {prefix}{error.message}") from None
    with sandbox:
        yield sandbox


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _head(item: Item) -> dict[str, Any]:
    return {"line": item.line, **({"id": item.id} if item.id is not None else {})}


def _verdict_fields(verdict: Verdict) -> dict[str, Any]:
    return {
        "ok": verdict.ok,
        "reason": None if verdict.reason is None else str(verdict.reason),
        "message": verdict.message,
        "rows": verdict.rows,
        "ms": None if verdict.ms is None else round(verdict.ms, 3),
    }


def _check(args: argparse.Namespace, err: Console) -> int:
    from distillrun.sql.judge import judge

    items = read_queries(args.queries, Dialect(args.dialect))
    schema, seed = _schema(args)
    counts: Counter[str] = Counter()
    with _sandbox(schema, seed, args) as sandbox:
        for item in items:
            verdict, _, _ = judge(item.fields["sql"], schema, sandbox)
            counts[str(verdict.reason) if verdict.reason else "accepted"] += 1
            _emit({**_head(item), **_verdict_fields(verdict)})
    accepted = counts.pop("accepted", 0)
    detail = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
    noun = "query" if len(items) == 1 else "queries"
    summary = f"{len(items)} {noun}: {accepted} accepted, {sum(counts.values())} rejected"
    err.print(summary + (f" ({detail})" if detail else ""), highlight=False, markup=False)
    return 1 if counts else 0


def _comparison(args: argparse.Namespace) -> ComparisonSpec:
    if args.keep_distinct and not args.spider:
        raise InputError("--keep-distinct applies to --spider only (the default keeps DISTINCT)")
    mode = ComparisonMode.SPIDER if args.spider else ComparisonMode.STRICT
    return ComparisonSpec(mode=mode, keep_distinct=args.keep_distinct, max_rows=args.max_rows)


def _compare(args: argparse.Namespace, err: Console) -> int:
    from distillrun.sql.pairs import GOLD_EMPTY, GOLD_FAILED, UNJUDGEABLE, judge_pair

    comparison = _comparison(args)
    items = read_pairs(args.pairs)
    schema, seed = _schema(args)
    outcomes: Counter[str] = Counter()
    scored = matched = 0
    with _sandbox(schema, seed, args) as sandbox:
        assert sandbox is not None
        for item in items:
            pair = judge_pair(
                item.fields["gold"], item.fields.get("pred"), schema, sandbox, comparison
            )
            outcomes[pair.outcome] += 1
            scored += pair.scored
            matched += pair.match
            _emit(
                {
                    **_head(item),
                    "match": pair.match,
                    "reason": pair.outcome,
                    "message": pair.message,
                }
            )
    accuracy = round(matched / scored, 6) if scored else 0.0
    apart = {name: outcomes[name] for name in (UNJUDGEABLE, GOLD_EMPTY, GOLD_FAILED)}
    _emit(
        {"pairs": len(items), "scored": scored, "matched": matched, "accuracy": accuracy, **apart}
    )
    counted_apart = ", ".join(f"{name} {n}" for name, n in apart.items() if n)
    err.print(
        f"execution accuracy {accuracy:.3f} ({matched} of {scored} scored pairs, "
        f"{comparison.mode} rules)"
        + (f"; counted apart: {counted_apart}" if counted_apart else ""),
        highlight=False,
        markup=False,
    )
    return 0


def _handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    from distillrun.sql.errors import SandboxError

    try:
        code: int = args.sql_handler(args, err)
    except InputError as error:
        err.print(f"distillrun sql {args.sql_command}: {error}", highlight=False, markup=False)
        return 1
    except SandboxError as error:
        err.print(
            f"distillrun sql {args.sql_command}: the sandbox failed: {error.message}",
            highlight=False,
            markup=False,
        )
        return 1
    return code


def _spec_bounded(model: type[BaseModel], field: str) -> Callable[[str], int]:
    """An argparse type: a whole number within the bounds the spec sets for `model.field`, so a
    value the run would refuse is refused here with the spec's words, not a traceback."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        try:
            model.model_validate({field: value})
        except ValidationError as error:
            raise argparse.ArgumentTypeError(error.errors()[0]["msg"].lower()) from None
        return value

    return parse


def _common(
    parser: argparse.ArgumentParser, rows: type[BaseModel], *, max_rows: int, rows_help: str
) -> None:
    """The options both commands share; `rows` is the model whose `max_rows` bounds --max-rows."""
    parser.add_argument("--schema", required=True, metavar="FILE", help="CREATE TABLE statements")
    parser.add_argument(
        "--dialect", required=True, choices=[str(d) for d in Dialect], help="SQL dialect"
    )
    parser.add_argument("--data", metavar="FILE", help="seed rows (INSERT statements)")
    parser.add_argument(
        "--timeout-ms",
        type=_spec_bounded(SandboxSpec, "statement_timeout_ms"),
        default=2000,
        help="statement timeout (default 2000)",
    )
    parser.add_argument(
        "--max-rows",
        type=_spec_bounded(rows, "max_rows"),
        default=max_rows,
        help=f"{rows_help} (default {max_rows})",
    )


def register(commands: Any) -> None:
    """Adds `sql check` and `sql compare` to the `distillrun` command's subparsers."""
    sql = commands.add_parser("sql", help="check or compare your own SQL as a run would")
    sql.set_defaults(handler=_handle)
    actions = sql.add_subparsers(dest="sql_command", required=True)

    check = actions.add_parser("check", help="one JSON verdict per query")
    _common(check, SandboxSpec, max_rows=SandboxSpec().max_rows, rows_help="rows fetched per query")
    check.add_argument(
        "--no-execute", action="store_true", help="static checks only (no sandbox, no rows)"
    )
    check.add_argument(
        "queries", nargs="?", default="-", help="one query per line, or JSONL with 'sql'"
    )
    check.set_defaults(sql_handler=_check)

    compare = actions.add_parser("compare", help="execution match of gold/predicted pairs")
    _common(
        compare,
        ComparisonSpec,
        max_rows=ComparisonSpec().max_rows,
        rows_help="rows fetched per query to compare whole results; two longer ones with "
        "equal row counts are unjudgeable",
    )
    compare.add_argument(
        "--spider",
        action="store_true",
        help="the official Spider test-suite evaluator's rules (see the README)",
    )
    compare.add_argument(
        "--keep-distinct",
        action="store_true",
        help="with --spider: keep DISTINCT (the evaluator's --keep_distinct)",
    )
    compare.add_argument(
        "pairs",
        nargs="?",
        default="-",
        help="JSONL with 'gold' and 'pred' (or gold_sql/predicted_sql; null: no SQL)",
    )
    compare.set_defaults(sql_handler=_compare)
