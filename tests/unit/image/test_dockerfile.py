"""The image layout, checked without a Docker engine: the Dockerfile is parsed (a small parser of
the instructions it uses) and each target's promises are checked against the code and
pyproject: the entrypoint modules exist and import, the operator image installs nothing heavy
(the transitive closure of its requirements, from the installed distributions' metadata), both
final stages run as a non-root user, every base image is pinned, and the build context lets in
exactly what the Dockerfile copies."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from distillrun.operator.builders.rayjob import ENTRYPOINT as RAYJOB_ENTRYPOINT
from tests.unit.operator.test_operator_imports import FORBIDDEN

ROOT = Path(__file__).parents[3]
DOCKERFILE = ROOT / "Dockerfile"
TARGETS = ("operator", "jobs")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper-case instruction name (FROM, RUN, COPY, ...)."""
    value: str
    """Everything after the keyword, continuation lines joined with a space."""

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ENTRYPOINT/CMD; a shell form is refused (it would run
        under /bin/sh and swallow SIGTERM)."""
        parsed = json.loads(self.value)
        assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), self.value
        return parsed


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """The build stages in order; comments, parser directives and blank lines dropped,
    backslash continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, value = line.partition(" ")
        instruction = Instruction(keyword.upper(), value.strip())
        if instruction.keyword == "ARG" and not stages:  # a build argument FROM lines may use
            continue
        if instruction.keyword == "FROM":
            words = instruction.value.split()
            has_alias = len(words) == 3 and words[1].upper() == "AS"
            assert has_alias, f"every stage is named: {line}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: build_args(text)[m[1]], words[0])
            stages.append(Stage(base=base, name=words[2]))
        else:
            assert stages, f"an instruction before the first FROM: {line}"
            stages[-1].instructions.append(instruction)
    return stages


def build_args(text: str) -> dict[str, str]:
    """The defaults of the build arguments declared before the first FROM (`ARG NAME=value`)."""
    found = {}
    for line in text.splitlines():
        if line.upper().startswith("FROM "):
            break
        if match := re.fullmatch(r"ARG (\w+)=(\S+)", line.strip()):
            found[match[1]] = match[2]
    return found


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    parsed = parse_dockerfile(DOCKERFILE.read_text())
    names = [s.name for s in parsed]
    assert len(names) == len(set(names)), f"stage names repeat: {names}"
    return {s.name: s for s in parsed}


def ancestry(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def installed_extras(stages: dict[str, Stage], target: str) -> set[str]:
    """The extras of `.[...]` that the stages copied into `target` pip-install."""
    sources = {
        flag.removeprefix("--from=")
        for copy in stages[target].all("COPY")
        for flag in copy.value.split()
        if flag.startswith("--from=")
    }
    extras: set[str] = set()
    for source in sources:
        for stage in ancestry(stages, source):
            for run in stage.all("RUN"):
                for match in re.finditer(r"pip install [^&]*?\"?\.\[([a-z,]+)\]\"?", run.value):
                    extras.update(match.group(1).split(","))
    return extras


def requirement_closure(roots: list[str]) -> set[str]:
    """Every distribution that installing `roots` brings in, from the installed metadata (the
    test environment has all of them: the dev set installs the operator extra)."""
    seen: set[str] = set()
    queue = [Requirement(r) for r in roots]
    while queue:
        requirement = queue.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        extras = sorted(requirement.extras)
        key = f"{name}[{','.join(extras)}]"
        if key in seen:
            continue
        seen.add(key)
        for raw in importlib.metadata.requires(requirement.name) or []:
            child = Requirement(raw)
            marker = child.marker
            wanted = marker is None or any(
                marker.evaluate({"extra": extra}) for extra in ["", *extras]
            )
            if wanted:
                child.marker = None
                queue.append(child)
    return {key.partition("[")[0] for key in seen}


def test_each_target_is_a_stage(stages: dict[str, Stage]) -> None:
    for target in TARGETS:
        assert target in stages, f"no `{target}` stage in the Dockerfile"


def test_base_images_are_pinned(stages: dict[str, Stage]) -> None:
    for stage in stages.values():
        if stage.base in stages:
            continue
        exact_tag = re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", stage.base)
        digest = re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", stage.base)
        assert exact_tag or digest, f"stage {stage.name}: {stage.base} is not pinned"
        assert stage.base.startswith("python:3.11."), stage.base


def test_the_base_image_is_a_build_argument_defaulting_to_the_official_one() -> None:
    """A cluster without registry access builds on a local Debian image instead
    (`--build-arg BASE_IMAGE=...`, as the e2e bed does); the default stays the pinned one."""
    text = DOCKERFILE.read_text()
    assert build_args(text)["BASE_IMAGE"].startswith("python:3.11.")
    first_from = next(line for line in text.splitlines() if line.startswith("FROM "))
    assert first_from.split()[1] == "${BASE_IMAGE}"


@pytest.mark.parametrize("target", TARGETS)
def test_final_stages_run_as_a_numeric_non_root_user(stages: dict[str, Stage], target: str) -> None:
    user = stages[target].last("USER")
    assert user is not None, f"{target} runs as root"
    uid = user.value.partition(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{target}: USER {user.value} is not a non-root UID"


def test_the_operator_image_runs_kopf_on_the_operator_module(stages: dict[str, Stage]) -> None:
    entrypoint = stages["operator"].last("ENTRYPOINT")
    assert entrypoint is not None
    argv = entrypoint.exec_form()
    assert argv[:3] == ["kopf", "run", "-m"]
    module = argv[3]
    assert module == "distillrun.operator.main"
    assert importlib.util.find_spec(module) is not None
    assert "--standalone" in argv
    assert any(a.startswith("--liveness=http://0.0.0.0:8080/healthz") for a in argv)
    scripts = {ep.name for ep in importlib.metadata.distribution("kopf").entry_points}
    assert "kopf" in scripts, "the kopf distribution provides no `kopf` command"
    cmd = stages["operator"].last("CMD")
    assert cmd is not None and cmd.exec_form() == ["--all-namespaces"]


def test_the_jobs_image_runs_the_entrypoint_the_rayjobs_submit(stages: dict[str, Stage]) -> None:
    cmd = stages["jobs"].last("CMD")
    assert cmd is not None
    argv = cmd.exec_form()
    assert argv == shlex.split(RAYJOB_ENTRYPOINT)
    module = argv[2]
    probe = f"import {module}; print({module}.main.__name__)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "main"


def test_each_target_installs_its_own_extra(stages: dict[str, Stage]) -> None:
    assert installed_extras(stages, "operator") == {"operator"}
    assert installed_extras(stages, "jobs") == {"jobs"}


def test_the_operator_extra_pulls_in_nothing_heavy() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    roots = [*project["dependencies"], *project["optional-dependencies"]["operator"]]
    closure = requirement_closure(roots)
    assert "kopf" in closure and "kubernetes" in closure
    heavy = sorted(closure & {canonicalize_name(m) for m in FORBIDDEN})
    assert heavy == [], f"the operator image would install {heavy}"


def test_the_build_context_lets_in_exactly_what_is_copied(stages: dict[str, Stage]) -> None:
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", ".dockerignore starts by excluding everything"
    let_in = {line[1:] for line in ignore if line.startswith("!")}
    copied = {
        source.removeprefix("./")
        for stage in stages.values()
        for copy in stage.all("COPY")
        if "--from=" not in copy.value
        for source in copy.value.split()[:-1]
    }
    assert copied == let_in
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
