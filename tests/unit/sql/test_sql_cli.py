"""`distillrun sql check` and `distillrun sql compare`: JSON verdicts per query, accuracy per
pair set, and a clear message with exit status 1 (never a traceback) for bad input files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.spec import Dialect
from distillrun.cli import main
from distillrun.sql.sandbox import ServerTarget
from distillrun.sql.target import ENV_HOST, ENV_PASSWORD, ENV_PORT, ENV_USER
from tests.unit.sql.cases import SHOP

SCHEMA = str(SHOP / "schema.sql")
SEED = str(SHOP / "seed.sql")
QUERIES = (
    "SELECT COUNT(*) FROM customers\n"
    "SELECT nme FROM customers\n"
    "\n"
    "DROP TABLE customers\n"
    "SELECT name FROM customers WHERE country = 'US' ORDER BY name\n"
)


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None
) -> tuple[int, list[dict[str, Any]], str]:
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
    try:
        code = main(["sql", *argv])
    finally:
        sys.stdin = sys.__stdin__
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    return code, lines, captured.err


@pytest.fixture
def server_env(targets: dict[Dialect, ServerTarget], monkeypatch: pytest.MonkeyPatch) -> None:
    target = targets[Dialect.POSTGRES]
    monkeypatch.setenv(ENV_HOST, target.host)
    monkeypatch.setenv(ENV_PORT, str(target.port))
    monkeypatch.setenv(ENV_USER, target.user)
    monkeypatch.setenv(ENV_PASSWORD, target.password)


@pytest.mark.parametrize("dialect", ["sqlite", "duckdb"])
def test_check_prints_one_verdict_per_query(
    dialect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = tmp_path / "queries.sql"
    queries.write_text(QUERIES)
    code, lines, err = run(
        capsys, "check", "--schema", SCHEMA, "--dialect", dialect, "--data", SEED, str(queries)
    )
    assert code == 1  # rejections fail the shell, as a linter's findings do
    assert [(v["line"], v["ok"], v["reason"]) for v in lines] == [
        (1, True, None),
        (2, False, "unknown_column"),
        (4, False, "not_select"),
        (5, True, None),
    ]
    assert lines[0]["rows"] == 1 and lines[3]["rows"] == 7 and lines[0]["ms"] >= 0
    assert lines[1]["rows"] is None and "nme" in lines[1]["message"]
    assert set(lines[0]) == {"line", "ok", "reason", "message", "rows", "ms"}
    assert "4 queries: 2 accepted, 2 rejected (not_select 1, unknown_column 1)" in err


def test_check_reads_jsonl_from_stdin_on_a_server(
    server_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = (
        json.dumps({"id": "q1", "sql": "SELECT name FROM customers WHERE id = 1"})
        + "\n"
        + json.dumps({"id": 7, "sql": "SELECT pg_read_file('/etc/passwd')"})
        + "\n"
    )
    code, lines, _ = run(
        capsys, "check", "--schema", SCHEMA, "--dialect", "postgres", "--data", SEED, stdin=stdin
    )
    assert code == 1
    assert [(v["id"], v["ok"], v["reason"], v["rows"]) for v in lines] == [
        ("q1", True, None, 1),
        ("7", False, "forbidden", None),
    ]


def test_check_without_execution_needs_no_sandbox(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(
        capsys,
        "check",
        "--schema",
        SCHEMA,
        "--dialect",
        "mysql",
        "--no-execute",
        stdin="SELECT name FROM customers\nSELECT @@datadir\n",
    )
    assert code == 1
    assert [(v["ok"], v["reason"], v["rows"]) for v in lines] == [
        (True, None, None),
        (False, "forbidden", None),
    ]


def test_check_exits_0_when_every_query_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run(capsys, *CHECK, "--no-execute", stdin="SELECT name FROM customers\n")
    assert code == 0 and [v["ok"] for v in lines] == [True]
    assert "1 query: 1 accepted, 0 rejected" in err


SCRIPT = """-- monthly report queries
SELECT name
FROM customers
WHERE country = 'US';  -- one query over three lines

/* a comment; with a semicolon */
SELECT 'a;b' AS text, COUNT(*)
  FROM orders;
SELECT nme FROM customers;
"""


def test_check_splits_a_sql_script_into_its_statements(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines, _ = run(capsys, *CHECK, "--no-execute", stdin=SCRIPT)
    assert code == 1
    assert [(v["line"], v["ok"], v["reason"]) for v in lines] == [
        (2, True, None),
        (7, True, None),
        (9, False, "unknown_column"),
    ]


def test_check_reads_bom_crlf_files_and_names_latin1_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_bytes(b"\xef\xbb\xbfCREATE TABLE t (\r\n  name TEXT\r\n);\r\n")
    queries = tmp_path / "queries.sql"
    queries.write_bytes("SELECT name FROM t WHERE name = 'Müller';\r\n".encode())
    code, lines, _ = run(
        capsys, "check", "--schema", str(schema), "--dialect", "sqlite", str(queries)
    )
    assert code == 0 and lines[0]["ok"] and lines[0]["rows"] == 0
    queries.write_bytes("SELECT name\nFROM t WHERE name = 'Müller'\n".encode("latin-1"))
    code, lines, err = run(
        capsys, "check", "--schema", str(schema), "--dialect", "sqlite", str(queries)
    )
    assert code == 1 and not lines
    assert f"queries {queries} is not UTF-8 text: it looks like Latin-1" in err
    assert "byte 0xfc on line 2" in err
    assert "Traceback" not in err


def test_check_rejects_text_no_driver_can_send(capsys: pytest.CaptureFixture[str]) -> None:
    """A Latin-1 byte escaped into JSON as a lone surrogate used to end two sandbox workers."""
    stdin = json.dumps({"sql": "SELECT name FROM customers WHERE name = 'M\udcfcller'"}) + "\n"
    code, lines, _ = run(capsys, *CHECK, "--data", SEED, stdin=stdin)
    assert code == 1
    assert lines[0]["reason"] == "parse" and "U+DCFC" in lines[0]["message"]


def test_compare_prints_matches_and_the_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {
            "id": "same",
            "gold": "SELECT name FROM customers",
            "pred": "SELECT c.name FROM customers c",
        },
        {"gold": "SELECT COUNT(*) FROM orders", "pred": "SELECT COUNT(*) FROM customers"},
        {"gold_sql": "SELECT 1 FROM nowhere", "predicted_sql": "SELECT 1"},
        {"gold": "SELECT id FROM products ORDER BY price", "pred": "SELEC id FROM products"},
        {
            "gold": "SELECT MAX(price) FROM products",
            "pred": "SELECT price FROM products ORDER BY price DESC LIMIT 1",
        },
    ]
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, lines, err = run(
        capsys, "compare", "--schema", SCHEMA, "--dialect", "sqlite", "--data", SEED, str(pairs)
    )
    assert code == 0
    assert [(p["line"], p["match"], p["reason"]) for p in lines[:-1]] == [
        (1, True, "correct"),
        (2, False, "wrong_result"),
        (3, False, "gold_failed"),
        (4, False, "parse"),
        (5, True, "correct"),
    ]
    assert lines[0]["id"] == "same"
    assert lines[-1] == {
        "pairs": 5,
        "scored": 4,
        "matched": 2,
        "accuracy": 0.5,
        "unjudgeable": 0,
        "gold_empty": 0,
        "gold_failed": 1,
    }
    assert "execution accuracy 0.500 (2 of 4 scored pairs, strict rules)" in err


def test_compare_reads_the_evaluate_stages_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`predicted_sql: null` (an answer without SQL) is a wrong prediction, not bad input; an
    empty gold result and a pair too long to compare whole are counted apart."""
    pairs = tmp_path / "predictions.jsonl"
    rows = [
        {"id": "a", "gold_sql": "SELECT name FROM customers", "predicted_sql": None},
        {
            "id": "b",
            "gold_sql": "SELECT name FROM customers WHERE country = 'Atlantis'",
            "predicted_sql": "SELECT name FROM customers WHERE 1 = 0",
        },
        {
            "id": "c",
            "gold_sql": "SELECT id FROM orders",
            "predicted_sql": "SELECT id FROM orders ORDER BY id DESC",
        },
        {"id": "d", "gold_sql": "SELECT COUNT(*) FROM orders", "predicted_sql": "SELECT 1"},
    ]
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    argv = ["compare", "--schema", SCHEMA, "--dialect", "sqlite", "--data", SEED]
    code, lines, err = run(capsys, *argv, "--max-rows", "5", str(pairs))
    assert code == 0
    assert [(p["id"], p["match"], p["reason"]) for p in lines[:-1]] == [
        ("a", False, "no_sql"),
        ("b", False, "gold_empty"),
        ("c", False, "unjudgeable"),
        ("d", False, "wrong_result"),
    ]
    summary = lines[-1]
    assert (summary["scored"], summary["matched"], summary["accuracy"]) == (2, 0, 0.0)
    assert (summary["unjudgeable"], summary["gold_empty"]) == (1, 1)
    assert "counted apart: unjudgeable 1, gold_empty 1" in err


def test_compare_in_spider_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"gold": "SELECT DISTINCT country FROM customers", "pred": "SELECT country FROM customers"},
        {
            "gold": "SELECT name FROM customers WHERE country = 'Atlantis'",
            "pred": "SELECT id, email FROM customers WHERE 1 = 0",
        },
    ]
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    argv = ["compare", "--schema", SCHEMA, "--dialect", "sqlite", "--data", SEED, str(pairs)]
    _, strict, _ = run(capsys, *argv)
    _, spider, err = run(capsys, *argv, "--spider")
    _, kept, _ = run(capsys, *argv, "--spider", "--keep-distinct")
    assert [p["reason"] for p in strict[:-1]] == ["wrong_result", "gold_empty"]
    assert [p["reason"] for p in spider[:-1]] == ["correct", "correct"]
    assert [p["reason"] for p in kept[:-1]] == ["wrong_result", "correct"]
    assert spider[-1]["accuracy"] == 1.0 and "spider rules" in err


CHECK = ["check", "--schema", SCHEMA, "--dialect", "sqlite"]
COMPARE = ["compare", "--schema", SCHEMA, "--dialect", "duckdb"]
FIRST = '{"sql": "SELECT 1"}\n'
BAD_INPUT = {
    "missing-schema": (
        ["check", "--schema", "/no/such/schema.sql", "--dialect", "sqlite"],
        "SELECT 1",
        "cannot read schema /no/such/schema.sql",
    ),
    "no-queries": (CHECK, "", "stdin holds no query"),
    "jsonl-field": (
        CHECK,
        FIRST + '{"sq": 1}\n',
        'stdin line 2: needs a non-empty string field "sql"',
    ),
    "jsonl-mixed": (CHECK, FIRST + "SELECT 2\n", "stdin line 2: not valid JSON"),
    "jsonl-array": (CHECK, FIRST + '["SELECT 1"]\n', "stdin line 2: expected a JSON object"),
    "not-ddl": (
        ["check", "--schema", SEED, "--dialect", "sqlite"],
        "SELECT 1",
        "is refused by SQLite: statement 1 at line 2 (INSERT INTO customers",
    ),
    "no-table": (["check", "--schema", "/dev/null", "--dialect", "sqlite"], "SELECT 1", "no table"),
    "bad-seed": ([*CHECK, "--data", SCHEMA], "SELECT 1", f"data {SCHEMA}: seed statement 1 failed"),
    "no-server": (
        ["check", "--schema", SCHEMA, "--dialect", "mysql"],
        "SELECT 1",
        f"set {ENV_HOST}",
    ),
    "pair-field": (
        COMPARE,
        '{"gold": "SELECT 1"}\n',
        'line 1: needs a non-empty string field "pred"',
    ),
    "pair-gold-null": (
        COMPARE,
        '{"gold_sql": null, "predicted_sql": "SELECT 1"}\n',
        'line 1: needs a non-empty string field "gold" or "gold_sql"',
    ),
    "pair-pred-number": (
        COMPARE,
        '{"gold": "SELECT 1", "pred": 7}\n',
        'line 1: needs a non-empty string field "pred"',
    ),
    "keep-distinct-alone": (
        [*COMPARE, "--keep-distinct"],
        '{"gold": "SELECT 1", "pred": "SELECT 1"}\n',
        "--keep-distinct applies to --spider only",
    ),
    "no-pairs": (COMPARE, "\n\n", "stdin holds no pair"),
}


@pytest.mark.parametrize(("argv", "stdin", "message"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_exits_1_with_a_message(
    argv: list[str],
    stdin: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_HOST, raising=False)
    code, lines, err = run(capsys, *argv, stdin=stdin)
    assert code == 1 and not lines
    assert message in err and "Traceback" not in err


def test_installed_command_never_shows_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "queries.jsonl"
    bad.write_bytes(b"\xff\xfe not text")
    result = subprocess.run(
        [sys.executable, "-m", "distillrun.cli", "sql", *CHECK, str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"queries {bad} is not UTF-8 text: it looks like UTF-16" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-rows", "2000000", "argument --max-rows: input should be less than or equal to"),
        ("--max-rows", "0", "argument --max-rows: input should be greater than or equal to 1"),
        ("--timeout-ms", "5", "argument --timeout-ms: input should be greater than or equal to"),
        ("--max-rows", "many", "argument --max-rows: 'many' is not a whole number"),
    ],
)
def test_options_out_of_the_specs_bounds_are_refused_by_name(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sql", *COMPARE, option, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
