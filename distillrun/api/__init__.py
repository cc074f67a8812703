"""The DistillRun contract: pydantic models of spec and status, constants, manifest loading."""

from distillrun.api.errors import FieldProblem, ManifestError
from distillrun.api.resource import DistillRun, ObjectMeta, load_run, parse_run
from distillrun.api.spec import DistillRunSpec
from distillrun.api.status import DistillRunStatus, Phase, StageName

__all__ = [
    "DistillRun",
    "DistillRunSpec",
    "DistillRunStatus",
    "FieldProblem",
    "ManifestError",
    "ObjectMeta",
    "Phase",
    "StageName",
    "load_run",
    "parse_run",
]
