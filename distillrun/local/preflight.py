"""What a local run checks before it pays for anything, and what `distillrun validate` checks.

The manifest model refuses what is malformed; the operator's pre-flight (`operator.preflight`)
checks what only the cluster knows. A local run can fail later for reasons that are knowable
now, on this machine, without any network call: a student that is neither builtin, a directory
nor in the local Hugging Face cache, a hardware profile that does not exist or needs GPUs this
machine lacks, a teacher model without a price, LoRA target modules the student's architecture
does not have (read from its config, built on the meta device: no weights), a gold set file
that is not there, and a schema whose prompt leaves no room for an answer in the student's
sequence limit. Each is a `FieldProblem` naming the field and what to do; all are reported
together, before the paid generate stage.
"""

# mypy: disable-error-code="no-untyped-call"
# (transformers' config helpers are untyped)

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillrun.api.errors import FieldProblem, ManifestError
from distillrun.api.profiles import (
    GpusExceedNode,
    HardwareProfile,
    ProfileError,
    load_profiles,
    worker_resources,
)
from distillrun.api.resource import DistillRun
from distillrun.api.spec import (
    DistillRunSpec,
    EvaluationSpec,
    StudentSpec,
    TeacherSpec,
    TrainingMethod,
)
from distillrun.api.text import NotUtf8, decode_text
from distillrun.jobs import prompting
from distillrun.jobs.student import BUILTIN_MODELS, BUILTIN_SCHEME, load_tokenizer
from distillrun.sql.schema import SchemaInfo
from distillrun.store import StoreError, read_uri
from distillrun.teacher.factory import TeacherUnavailable, make_teacher

BUILTIN_CHARS_PER_TOKEN = 16
"""The most characters one token of the builtin student covers on average, for the prompt
length check (its tokenizer is trained later, on the run's texts, so it cannot count now). Its
merges cross spaces and repeat the schema, about 11 characters a token on a large schema; 16
overestimates that, so a prompt is refused only when it cannot fit."""

_WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class StudentFiles:
    """Where a student's config and tokenizer are on this machine; None for the builtin
    student, which the train stage builds."""

    directory: Path | None


def local_gpu_count() -> int:
    """CUDA GPUs this process can use."""
    import torch

    return int(torch.cuda.device_count())


def check_local_run(
    run: DistillRun,
    schema: SchemaInfo,
    base_dir: Path,
    source: str,
) -> None:
    """Raises ManifestError with every problem that would stop `run` after it started paying."""
    spec = resolve_gold_set(run, base_dir).spec
    problems: list[FieldProblem] = []
    profile = _profile(spec.student, problems)
    problems += _teacher(spec.teacher)
    problems += _gold_set(spec.evaluation)
    files = _student_files(spec.student, problems)
    if files is not None:
        problems += _student_shape(spec, schema, files, profile)
    if problems:
        raise ManifestError(source, problems)


def resolve_gold_set(run: DistillRun, base_dir: Path) -> DistillRun:
    """The run with a relative gold set path made absolute against the manifest's directory,
    as schema and seed paths are, so evaluation reads the same file wherever it runs from."""
    gold = run.spec.evaluation.gold_set
    if gold is None or "://" in gold.uri or Path(gold.uri).expanduser().is_absolute():
        return run
    resolved = gold.model_copy(update={"uri": str((base_dir / gold.uri).resolve())})
    evaluation = run.spec.evaluation.model_copy(update={"gold_set": resolved})
    return run.model_copy(update={"spec": run.spec.model_copy(update={"evaluation": evaluation})})


def _profile(student: StudentSpec, problems: list[FieldProblem]) -> HardwareProfile | None:
    """The student's hardware profile, if it exists and this machine can train with it."""
    try:
        profiles = load_profiles()
        worker_resources(student, profiles)
    except GpusExceedNode as exc:
        problems.append(FieldProblem("spec.student.gpusPerWorker", str(exc)))
        return None
    except ProfileError as exc:
        problems.append(FieldProblem("spec.student.hardwareProfile", str(exc)))
        return None
    profile = profiles[student.hardware_profile]
    if profile.uses_gpu:
        needed, have = student.workers * student.gpus_per_worker, local_gpu_count()
        if needed > have:
            problems.append(
                FieldProblem(
                    "spec.student.hardwareProfile",
                    f"hardware profile {profile.name} trains on {needed} GPU(s) ({student.workers}"
                    f" workers x {student.gpus_per_worker} gpusPerWorker) and this machine has "
                    f"{have}: for a local run use hardwareProfile: cpu, or run it on a cluster "
                    "with the operator",
                )
            )
    return profile


def _teacher(teacher: TeacherSpec) -> list[FieldProblem]:
    try:
        make_teacher(teacher)
    except TeacherUnavailable as exc:
        return [FieldProblem(exc.field, str(exc))]
    return []


def _gold_set(evaluation: EvaluationSpec) -> list[FieldProblem]:
    gold = evaluation.gold_set
    if gold is None:
        return []
    try:
        decode_text(read_uri(gold.uri), gold.uri)
    except (StoreError, NotUtf8) as exc:
        return [FieldProblem("spec.evaluation.goldSet.uri", f"cannot read the gold set: {exc}")]
    return []


def _student_files(student: StudentSpec, problems: list[FieldProblem]) -> StudentFiles | None:
    """Where the student is on this machine (a relative directory is taken from the working
    directory, as the train stage takes it); None, and a problem unless it is an s3:// URI that
    only the train stage fetches, when it is not here."""
    model = student.model
    if model.startswith(BUILTIN_SCHEME):
        if model in BUILTIN_MODELS:
            return StudentFiles(None)
        problems.append(
            FieldProblem(
                "spec.student.model",
                f"unknown builtin student {model!r}; builtin students: {', '.join(BUILTIN_MODELS)}",
            )
        )
        return None
    if model.startswith("s3://"):
        return None
    path = Path(model.removeprefix("file://")).expanduser()
    if model.startswith(("file://", ".", "/", "~")) or path.is_dir():
        return _directory(path, model, problems)
    return _cached_hub_model(model, problems)


def _directory(path: Path, model: str, problems: list[FieldProblem]) -> StudentFiles | None:
    if not (path / "config.json").is_file():
        problems.append(
            FieldProblem(
                "spec.student.model",
                f"{model}: no model directory with a config.json at {path}; give the directory a "
                "model was saved to (save_pretrained), a hub id, or "
                f"{', '.join(BUILTIN_MODELS)}",
            )
        )
        return None
    return StudentFiles(path)


def _cached_hub_model(model: str, problems: list[FieldProblem]) -> StudentFiles | None:
    """The student's snapshot in the local Hugging Face cache, found without a network call:
    the train stage loads it from there, so a model that is not cached would be downloaded
    only after the teacher was paid (and fails there when the hub cannot be reached)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(model, local_files_only=True))
    except HFValidationError:
        problems.append(
            FieldProblem(
                "spec.student.model",
                f"{model!r} is neither a model directory, an s3:// or file:// URI, a hub id "
                f"(org/name) nor a builtin student ({', '.join(BUILTIN_MODELS)})",
            )
        )
        return None
    except LocalEntryNotFoundError:
        snapshot = None
    weights = snapshot is not None and any(
        p.name.endswith(_WEIGHT_SUFFIXES) for p in snapshot.iterdir()
    )
    if snapshot is None or not weights or not (snapshot / "config.json").is_file():
        offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        problems.append(
            FieldProblem(
                "spec.student.model",
                f"{model} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE})"
                f"{offline}, and a local run does not download a student after paying the "
                f"teacher: fetch it first (hf download {model}), give a local model directory, "
                f"or use {BUILTIN_MODELS[0]} for an offline trial",
            )
        )
        return None
    return StudentFiles(snapshot)


def _student_shape(
    spec: DistillRunSpec, schema: SchemaInfo, files: StudentFiles, profile: HardwareProfile | None
) -> list[FieldProblem]:
    """LoRA targets the architecture has, and a prompt that leaves room for an answer."""
    try:
        config = _config(files)
        names = module_names(config)
    except (OSError, ValueError) as exc:
        return [
            FieldProblem("spec.student.model", f"cannot be read as a causal language model: {exc}")
        ]
    problems: list[FieldProblem] = []
    if spec.student.method != TrainingMethod.FULL:
        problems += _lora_targets(spec.student, names, config.model_type)
    problems += _prompt_fits(spec, schema, files, config, profile)
    return problems


def _config(files: StudentFiles) -> Any:
    """The student's transformers config: read from its directory, or for the builtin student
    a Qwen3 config (the architecture it builds; one layer, as only the names count)."""
    from transformers import AutoConfig, Qwen3Config

    if files.directory is None:
        return Qwen3Config(num_hidden_layers=1)  # on the meta device: no memory at all
    return AutoConfig.from_pretrained(files.directory)


@dataclass(frozen=True)
class ModuleNames:
    """The module names of a model, all of them and its linear layers' last parts."""

    all: tuple[str, ...]
    linear: tuple[str, ...]


def module_names(config: Any) -> ModuleNames:
    """The modules of a model with `config`, built on the meta device (no memory, no
    weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    modules = [(name, module) for name, module in model.named_modules() if name]
    linear = {n.rsplit(".", 1)[-1] for n, m in modules if isinstance(m, torch.nn.Linear)}
    return ModuleNames(tuple(n for n, _ in modules), tuple(sorted(linear - {"lm_head"})))


def _lora_targets(student: StudentSpec, names: ModuleNames, model_type: str) -> list[FieldProblem]:
    """peft matches a target by a module's full name or its last dotted parts."""
    missing = [
        target
        for target in student.lora.target_modules
        if not any(n == target or n.endswith(f".{target}") for n in names.all)
    ]
    if not missing:
        return []
    return [
        FieldProblem(
            "spec.student.lora.targetModules",
            f"the student ({model_type}) has no module named {', '.join(missing)}; its "
            f"linear layers are {', '.join(names.linear)}",
        )
    ]


def _prompt_tokens(
    spec: DistillRunSpec, schema: SchemaInfo, files: StudentFiles
) -> tuple[int, bool]:
    """Tokens of the longest prompt (instructions, schema, the longest seed question), and
    whether that is an estimate (the builtin student's tokenizer does not exist yet)."""
    question = max(spec.seed_questions, key=len)
    messages = prompting.prompt_messages(
        schema,
        question,
        reasoning=spec.teacher.reasoning,
        with_schema=spec.student.schema_in_prompt,
    )
    if files.directory is None:
        chars = sum(len(m["content"]) for m in messages)
        return chars // BUILTIN_CHARS_PER_TOKEN, True
    tokenizer = load_tokenizer(str(files.directory))
    ids = tokenizer.apply_chat_template(
        messages,
        tokenize=True,
        return_dict=False,
        add_generation_prompt=True,
        **prompting.CHAT_TEMPLATE_KWARGS,
    )
    return len(ids), False


def _prompt_fits(
    spec: DistillRunSpec,
    schema: SchemaInfo,
    files: StudentFiles,
    config: Any,
    profile: HardwareProfile | None,
) -> list[FieldProblem]:
    """Training drops every example whose prompt fills the sequence limit (nothing of the
    answer is left to learn): a schema that large would leave no example at all."""
    student = spec.student
    limit = student.max_seq_length
    if profile is not None:
        limit = min(limit, profile.max_seq_length)
    try:
        tokens, estimated = _prompt_tokens(spec, schema, files)
    except (OSError, ValueError) as exc:
        return [FieldProblem("spec.student.model", f"cannot load the student's tokenizer: {exc}")]
    if tokens < limit:
        return []
    context = int(getattr(config, "max_position_embeddings", 0) or 0)
    about = "at least " if estimated else ""
    where = f"{limit} (maxSeqLength, capped by hardware profile)" if profile else str(limit)
    if files.directory is not None and context and tokens >= context:
        advice = (
            f"the student's context is {context} tokens, so give a schema with only the tables "
            "the questions need"
        )
    else:
        advice = (
            f"raise spec.student.maxSeqLength above {tokens} plus room for the answer, or give "
            "a schema with only the tables the questions need"
        )
    return [
        FieldProblem(
            "spec.database.schema",
            f"the prompt (instructions, schema and the longest seed question) is {about}"
            f"{tokens} tokens and the sequence limit is {where}: no example would leave room "
            f"for an answer; {advice}",
        )
    ]
