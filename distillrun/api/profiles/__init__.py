"""Hardware profiles: what a class of machine can train with, kept as data.

A profile (`profiles/<name>.yaml`, shipped with the package) says which precision the GPU runs
(bf16 where it has it, fp16 otherwise), which DeepSpeed config to start from, the micro batch,
gradient accumulation and sequence limit that suit its memory, whether to checkpoint
activations and pack sequences, the NCCL settings its interconnect needs (an RTX 4090 has no
P2P or InfiniBand), and what a worker pod must ask Kubernetes for: the GPU resource name and
count, host CPU and memory, the GPU product to land on, and how many GPUs one such node has
(no worker pod may ask for more).

Teams extend the set without a release: every `*.yaml` in the directory named by
`DISTILLRUN_PROFILES_DIR` is read after the builtin ones. A file whose `name` is a builtin
profile overrides only the fields it gives (say, `microBatchSize` for your A100s); a file named
`custom-<something>` adds a profile, optionally starting from another with `extends`. The spec
accepts the builtin names and any `custom-` name; whether that custom profile exists is checked
when training is planned (and by the operator, which imports this module), because the spec's
model cannot see a team's files. DeepSpeed configs can be added the same way under `deepspeed/`
in that directory (`distillrun.jobs.training.zero`).

The profiles sit beside the contract, not with the stages: the operator sizes the training
pods with them (`worker_resources`) and the training code plans with the same data. This module
imports neither torch nor ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from distillrun.api.settings import ProfileSettings
from distillrun.api.spec import CUSTOM_PROFILE_PREFIX, HardwareProfileName, StudentSpec
from distillrun.api.text import NotUtf8, read_text

PROFILES_ENV = ProfileSettings.env_name("profiles_dir")
"""A directory of user profile files (`*.yaml`) and DeepSpeed configs (`deepspeed/*.json`)."""

DEEPSPEED_DIR = "deepspeed"
"""The subdirectory of that directory holding DeepSpeed configs (`<name>.json`)."""

BUILTIN_PROFILES = tuple(str(p) for p in HardwareProfileName)


class ProfileError(ValueError):
    """A profile that does not exist or a profile file that cannot be used."""


class _ProfileModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


DEFAULT_GPUS_PER_NODE = 8
"""GPUs per node when a profile does not say: the usual 8-GPU server (HGX/DGX A100 and H100).
The builtin profiles assume it for the data-centre cards and 4 for the RTX 4090 (a common
workstation build); a platform team whose nodes differ overrides `gpu.perNode` in its profile
files, because a pod asking for more GPUs than any node has stays Pending forever."""


class GpuSpec(_ProfileModel):
    """The GPU a profile is for."""

    resource_name: Annotated[
        str, Field(default="nvidia.com/gpu", description="Extended resource a pod requests.")
    ] = "nvidia.com/gpu"
    memory_gib: Annotated[
        float, Field(gt=0, alias="memoryGiB", description="Memory of one GPU in GiB.")
    ]
    product: Annotated[
        str | None,
        Field(default=None, description="Value of the nvidia.com/gpu.product node label."),
    ] = None
    peak_tflops: Annotated[
        float | None,
        Field(default=None, gt=0, description="Dense bf16/fp16 peak TFLOP/s, for MFU."),
    ] = None
    per_node: Annotated[
        int,
        Field(
            default=DEFAULT_GPUS_PER_NODE,
            ge=1,
            description="GPUs one node of this class has: the most one worker pod can request.",
        ),
    ] = DEFAULT_GPUS_PER_NODE


class HostSpec(_ProfileModel):
    """Host resources per training process (one per GPU; one per pod without GPUs)."""

    cpu: Annotated[int, Field(ge=1, description="CPU cores.")]
    memory_gib: Annotated[int, Field(ge=1, alias="memoryGiB", description="Memory in GiB.")]


class HardwareProfile(_ProfileModel):
    """What one class of machine trains with; see the module docstring."""

    name: Annotated[str, Field(min_length=1, description="Name the spec refers to.")]
    description: Annotated[str, Field(default="", description="For people.")] = ""
    accelerator: Annotated[Literal["cuda", "cpu"], Field(description="cuda or cpu.")]
    gpu: Annotated[GpuSpec | None, Field(default=None, description="GPU, when cuda.")] = None
    precision: Annotated[
        Literal["bf16", "fp16", "fp32"], Field(description="Mixed precision to train in.")
    ]
    deepspeed: Annotated[
        str | None, Field(default=None, description="DeepSpeed config name, or none.")
    ] = None
    allow_offload: Annotated[
        bool, Field(default=False, description="May move optimizer state to host memory.")
    ] = False
    micro_batch_size: Annotated[int, Field(ge=1, description="Examples per device per step.")]
    gradient_accumulation_steps: Annotated[int, Field(ge=1, description="Micro batches/step.")]
    max_seq_length: Annotated[int, Field(ge=32, description="Longest sequence trained on.")]
    gradient_checkpointing: Annotated[bool, Field(description="Recompute activations.")]
    packing: Annotated[bool, Field(description="Pack sequences (padding-free) if supported.")]
    attention: Annotated[
        Literal["flash_attention_2", "sdpa", "eager"],
        Field(description="Preferred attention kernel; sdpa when it is not installed."),
    ]
    memory_headroom: Annotated[
        float, Field(default=0.9, gt=0, le=1, description="Share of GPU memory a plan may fill.")
    ] = 0.9
    host: Annotated[HostSpec, Field(description="Host resources per training process.")]
    shared_memory_gib: Annotated[
        int,
        Field(
            default=2,
            ge=1,
            alias="sharedMemoryGiB",
            description="In-memory /dev/shm per pod (NCCL and dataloader workers need it).",
        ),
    ] = 2
    env: Annotated[
        dict[str, str], Field(default_factory=dict, description="Environment (NCCL) per worker.")
    ]

    @property
    def uses_gpu(self) -> bool:
        return self.accelerator == "cuda"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(read_text(path))
    except NotUtf8 as exc:
        raise ProfileError(f"cannot read hardware profile: {exc}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: cannot read hardware profile: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ProfileError(f"{path}: a hardware profile is a mapping with a name")
    return data


def _problems(exc: ValidationError) -> str:
    """What pydantic refused, one `field: reason (got value)` per problem, fields by the names
    a profile file uses; no links to pydantic's documentation."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "the profile"
        got = f" (got {error['input']!r})" if error["type"] != "missing" else ""
        problems.append(f"{where}: {error['msg']}{got}")
    return "; ".join(problems)


def _merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _builtin_data() -> dict[str, dict[str, Any]]:
    folder = resources.files(__name__)
    data: dict[str, dict[str, Any]] = {}
    for name in BUILTIN_PROFILES:
        text = folder.joinpath(f"{name}.yaml").read_text(encoding="utf-8")
        data[name] = yaml.safe_load(text)
    return data


def user_directory() -> Path | None:
    """The directory of user profiles, from `DISTILLRUN_PROFILES_DIR` (None when unset)."""
    return ProfileSettings.from_env().profiles_dir


def profile_files(directory: Path | None = None) -> dict[str, str]:
    """The text of every file the profiles read from the user's directory (`directory`, else
    the environment), by its path there: `*.yaml` and `deepspeed/*.json` (none without a
    directory). The operator hands them to the train stage's pods, so that training plans
    with the profiles and DeepSpeed configs the operator checked the run against."""
    folder = directory if directory is not None else user_directory()
    if folder is None:
        return {}
    if not folder.is_dir():
        raise ProfileError(f"{PROFILES_ENV}={folder} is not a directory")
    paths = sorted(folder.glob("*.yaml")) + sorted((folder / DEEPSPEED_DIR).glob("*.json"))
    files: dict[str, str] = {}
    for path in paths:
        try:
            files[path.relative_to(folder).as_posix()] = read_text(path)
        except NotUtf8 as exc:
            raise ProfileError(f"cannot read a profile file: {exc}") from None
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read a profile file: {exc}") from None
    return files


def load_profiles(directory: Path | None = None) -> dict[str, HardwareProfile]:
    """The builtin profiles with the user's files (from `directory`, else the environment)
    applied on top; raises ProfileError naming the file at fault."""
    data = _builtin_data()
    files: dict[str, list[Path]] = {}
    folder = directory if directory is not None else user_directory()
    if folder is not None:
        if not folder.is_dir():
            raise ProfileError(f"{PROFILES_ENV}={folder} is not a directory")
        for path in sorted(folder.glob("*.yaml")):
            entry = _read_yaml(path)
            name = str(entry["name"])
            files.setdefault(name, []).append(path)
            if name in data:
                data[name] = _merge(data[name], entry)
                continue
            if not name.startswith(CUSTOM_PROFILE_PREFIX):
                raise ProfileError(
                    f"{path}: new profiles are named {CUSTOM_PROFILE_PREFIX}<something> (so a "
                    f"spec can name them); {name!r} is neither that nor a builtin profile "
                    f"({', '.join(BUILTIN_PROFILES)})"
                )
            parent = entry.pop("extends", None)
            if parent is not None:
                if not isinstance(parent, str) or parent not in data:
                    raise ProfileError(f"{path}: extends unknown profile {parent!r}")
                entry = _merge(data[parent], entry)
            data[name] = entry
    profiles: dict[str, HardwareProfile] = {}
    for name, entry in data.items():
        try:
            profiles[name] = HardwareProfile.model_validate(entry)
        except ValidationError as exc:
            sources = ", ".join(str(path) for path in files.get(name, ()))
            where = f" (from {sources})" if sources else ""
            raise ProfileError(
                f"hardware profile {name!r}{where} is invalid: {_problems(exc)}"
            ) from None
        if profiles[name].uses_gpu and profiles[name].gpu is None:
            raise ProfileError(f"hardware profile {name!r} has accelerator cuda but no gpu")
    return profiles


def get_profile(
    name: str, profiles: Mapping[str, HardwareProfile] | None = None
) -> HardwareProfile:
    """The profile called `name`; ProfileError lists the known ones when there is none."""
    known = profiles if profiles is not None else load_profiles()
    if name not in known:
        where = (
            f" (user profiles from {PROFILES_ENV}={user_directory()})" if user_directory() else ""
        )
        raise ProfileError(
            f"unknown hardware profile {name!r}; known profiles: {', '.join(sorted(known))}{where}"
        )
    return known[name]


class GpusExceedNode(ProfileError):
    """A worker pod would request more GPUs than one node of its profile has: no node could
    ever take it (a pod does not span nodes), so the run is refused before anything starts."""


def check_gpus_per_node(student: StudentSpec, profile: HardwareProfile) -> None:
    """Raises GpusExceedNode when `gpusPerWorker` is above the profile's `gpu.perNode`, saying
    which split of the same GPUs over more workers would fit."""
    if profile.gpu is None or student.gpus_per_worker <= profile.gpu.per_node:
        return
    per_node = profile.gpu.per_node
    total = student.workers * student.gpus_per_worker
    # The same GPUs in all, on workers no bigger than a node: the largest divisor that fits.
    fitting = max(n for n in range(1, per_node + 1) if total % n == 0)
    raise GpusExceedNode(
        f"{student.gpus_per_worker} GPUs per worker, but a node of hardware profile "
        f"{profile.name} has {per_node} (gpu.perNode) and a worker pod cannot span nodes; "
        f"for the same {total} GPUs use workers: {total // fitting} with gpusPerWorker: "
        f"{fitting}"
    )


class WorkerResources(_ProfileModel):
    """What the operator asks Kubernetes for to train one run: `replicas` pods, each with
    `requests`/`limits` (GPUs in both, as Kubernetes requires for extended resources), placed
    by `node_selector` and `tolerations`, with `env` set in the training containers."""

    replicas: Annotated[int, Field(description="Worker pods (spec.student.workers).")]
    processes_per_replica: Annotated[
        int, Field(description="Ray Train workers per pod: one per GPU, one without GPUs.")
    ]
    gpu_resource_name: Annotated[str | None, Field(description="e.g. nvidia.com/gpu.")]
    gpus_per_replica: Annotated[int, Field(description="GPUs each pod requests.")]
    gpu_memory_gib: Annotated[float | None, Field(description="Memory of each GPU.")]
    requests: Annotated[dict[str, str], Field(description="Container resource requests.")]
    limits: Annotated[dict[str, str], Field(description="Container resource limits.")]
    node_selector: Annotated[dict[str, str], Field(description="Node labels to require.")]
    tolerations: Annotated[
        list[dict[str, str]], Field(description="Taints of GPU nodes to tolerate.")
    ]
    shared_memory_gib: Annotated[int, Field(description="Size of an in-memory /dev/shm.")]
    env: Annotated[dict[str, str], Field(description="Environment of the training containers.")]


GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
"""The node label GPU feature discovery sets; a profile's `gpu.product` is matched on it."""


def worker_resources(
    student: StudentSpec, profiles: Mapping[str, HardwareProfile] | None = None
) -> WorkerResources:
    """The pods a run's training needs, from its student spec and hardware profile.

    Pure (no torch, no ray, no cluster access): the operator builds the RayJob's worker group
    from this. Raises ProfileError for an unknown profile or GPUs asked of a CPU profile, and
    GpusExceedNode for more GPUs per worker than a node of the profile has.
    """
    profile = get_profile(student.hardware_profile, profiles)
    gpus = student.gpus_per_worker
    if not profile.uses_gpu and gpus:
        raise ProfileError(f"hardware profile {profile.name} has no GPUs; set gpusPerWorker: 0")
    if profile.uses_gpu and not gpus:
        raise ProfileError(f"hardware profile {profile.name} trains on GPUs; set gpusPerWorker")
    check_gpus_per_node(student, profile)
    processes = max(gpus, 1)
    requests = {
        "cpu": str(profile.host.cpu * processes),
        "memory": f"{profile.host.memory_gib * processes}Gi",
    }
    limits = {"memory": requests["memory"]}
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, str]] = []
    resource_name = None
    gpu_memory = None
    if profile.gpu is not None:
        resource_name = profile.gpu.resource_name
        gpu_memory = profile.gpu.memory_gib
        requests[resource_name] = limits[resource_name] = str(gpus)
        tolerations.append({"key": resource_name, "operator": "Exists", "effect": "NoSchedule"})
        if profile.gpu.product:
            node_selector[GPU_PRODUCT_LABEL] = profile.gpu.product
    return WorkerResources(
        replicas=student.workers,
        processes_per_replica=processes,
        gpu_resource_name=resource_name,
        gpus_per_replica=gpus,
        gpu_memory_gib=gpu_memory,
        requests=requests,
        limits=limits,
        node_selector=node_selector,
        tolerations=tolerations,
        shared_memory_gib=profile.shared_memory_gib,
        env=dict(profile.env),
    )
