"""The schema an LLM teacher is shown is the DDL the student reads: rendered in the dialect,
not the user's text, so the teacher writes no query from information the student never sees."""

from __future__ import annotations

import pytest

from distillrun.api.spec import Dialect
from distillrun.jobs import prompting
from distillrun.sql.schema import parse_schema
from distillrun.teacher.base import ShardRequest
from distillrun.teacher.prompt import build_prompt

HR = {
    Dialect.POSTGRES: """
        -- people on the payroll; salary is in cents
        CREATE TABLE "Departments" (id INTEGER PRIMARY KEY, "Name" TEXT NOT NULL);
        CREATE TABLE "Leave Requests" (
            employee INTEGER NOT NULL,
            dept INTEGER REFERENCES "Departments"(id),
            "from" DATE, "to" DATE,
            tags TEXT[],
            PRIMARY KEY (employee, "from")
        );
    """,
    Dialect.MYSQL: """
        /* people on the payroll; salary is in cents */
        CREATE TABLE `Leave Requests` (
            employee INT NOT NULL,
            `from` DATE, `to` DATE,
            created TIMESTAMP NULL DEFAULT NULL,
            kind ENUM('sick', 'annual') NOT NULL,
            PRIMARY KEY (employee, `from`)
        ) ENGINE=InnoDB;
    """,
}


@pytest.mark.parametrize("dialect", list(HR))
def test_the_teacher_reads_the_ddl_the_student_reads(dialect: Dialect) -> None:
    schema = parse_schema(HR[dialect], dialect)
    student = prompting.system_message(schema, reasoning=False)
    system = build_prompt(ShardRequest("k", 0, 5, 1, schema, (), False)).system

    shown = prompting.schema_ddl(schema)
    assert shown in student
    assert f"\n{shown}\n" in system
    assert "payroll" not in system  # the user's comments and layout stay out of both
    assert "NOT NULL" not in system
    assert "PRIMARY KEY (employee, " in system  # one composite key, names quoted for the engine
    assert ("Leave Requests" in system) and ("Leave Requests (" not in system)
