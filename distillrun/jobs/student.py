"""Finding, building and loading the student model.

`spec.student.model` may be a hub id (`Qwen/Qwen3-0.6B`), a local directory, an `s3://` or
`file://` URI (copied through the artifact store into a local cache), or a builtin student.
Every kind ends up as one thing, a `Student` whose `location` goes to
`AutoTokenizer.from_pretrained` / `AutoModelForCausalLM.from_pretrained`, so training and
evaluation load a builtin student exactly as they load a real one.

Two builtin students run offline, both a scaled-down `Qwen3Config` (the real architecture)
with a byte-level BPE tokenizer, ChatML special tokens and chat template:

- `builtin:sql-qwen3`, the quickstart's: a base first trained in full on Text-to-SQL over
  bundled example schemas (`jobs.builtin`), built once per machine and cached, so a run's LoRA
  adapts a model that already writes SQL, as real distillation does;
- `builtin:tiny-qwen3`, for smoke tests: random weights and a tokenizer trained on the spot on
  the run's own texts. It learns only with `method: full`; LoRA on random weights cannot.

The base a run uses is saved to its store under `student/base/` with a done marker holding its
fingerprint, so evaluation, workers and a rerun use the identical base.

Heavy imports (torch, transformers, tokenizers) happen inside the functions that need them.
"""

# mypy: disable-error-code="no-untyped-call"
# (transformers' tokenizer, config and logging helpers are untyped)

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillrun.api.failures import FailureReason
from distillrun.api.layout import BASE_DONE_KEY, BASE_PREFIX
from distillrun.api.settings import CacheSettings
from distillrun.api.spec import HardwareProfileName, StudentSpec
from distillrun.api.status import StageName
from distillrun.jobs.context import StageFailed
from distillrun.store import Store, StoreError, open_store

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

BUILTIN_SCHEME = "builtin:"
TINY_QWEN3 = "builtin:tiny-qwen3"
SQL_QWEN3 = "builtin:sql-qwen3"
BUILTIN_MODELS = (SQL_QWEN3, TINY_QWEN3)

# Bump when the builder changes what it builds: a stored base of another version is rebuilt.
BUILDER_VERSION = 1

# ChatML, as Qwen models use it; renders a prompt alone (add_generation_prompt) as an exact
# prefix of prompt + answer, which completion-only loss relies on.
END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END)
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
_ROLE_WORDS = "system user assistant"


@dataclass(frozen=True)
class TinyQwen3Shape:
    """The builtin student's size: small enough to train on two CPU cores in a minute."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    max_position_embeddings: int = 2048
    # Not Qwen3's 0.02: at this width that keeps every logit near zero (the tied output
    # embedding times a normalised hidden state), so a LoRA adapter could never make the
    # frozen head confident. ~1/sqrt(hidden_size) lets signals and logits reach a useful range.
    initializer_range: float = 0.088
    min_frequency: int = 2
    max_token_length: int | None = None
    merge_across_spaces: bool = True
    """True: tokens may span words (short sequences for a tokenizer trained on one run's own
    texts). False: words, underscores and punctuation stay apart, so a word the tokenizer never
    saw (another schema's names) still splits the same way in a question and in its SQL."""


@dataclass(frozen=True)
class Student:
    """A student ready for `from_pretrained`.

    `location` is a local directory or a hub id; `model_id` names the base in fingerprints and
    in the model card (for a builtin student it carries the fingerprint of what was built).
    """

    location: str
    model_id: str
    kind: str  # builtin | hub | local | uri
    info: dict[str, Any] = field(default_factory=dict)


@contextmanager
def known_library_warnings() -> Iterator[None]:
    """Silences one known, harmless library mismatch and nothing else.

    peft 0.21 reads `model.is_gradient_checkpointing` when it wraps a model (in
    `get_peft_model`, which SFTTrainer calls, and in `PeftModel.from_pretrained`), and
    transformers 5.23 deprecated that property with a FutureWarning. Remove once peft reads
    `is_activation_checkpointing`.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"`is_gradient_checkpointing` is deprecated",
            category=FutureWarning,
        )
        yield


def quiet_library_progress() -> None:
    """Turns off the progress bars of transformers and datasets: a stage reports its progress
    through its ProgressSink, and stray bars would garble the CLI's display."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()


def limit_torch_threads() -> int:
    """Uses the cores this process may run on (a container's share), not the host's count."""
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)
    return cores


def model_dtype(spec: StudentSpec) -> torch.dtype:
    """float32 on CPU (no bf16/fp16 kernels worth having there), bfloat16 on GPU profiles."""
    import torch

    if spec.hardware_profile == HardwareProfileName.CPU or not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (transformers' helper covers all three)."""
    from transformers import set_seed

    set_seed(seed)


def _sha256(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def corpus_fingerprint(texts: Sequence[str], shape: TinyQwen3Shape, seed: int) -> str:
    """What a builtin base depends on: builder version, shape, seed and the tokenizer corpus."""
    header = json.dumps(
        {"builder": BUILDER_VERSION, "shape": asdict(shape), "seed": seed}, sort_keys=True
    )
    return _sha256(header, *texts)


def train_bpe_tokenizer(texts: Sequence[str], shape: TinyQwen3Shape) -> PreTrainedTokenizerBase:
    """A byte-level BPE tokenizer trained on `texts` (any byte still encodes), with ChatML
    special tokens, `<|im_end|>` as end of sequence and `<|endoftext|>` as padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    # With merge_across_spaces, merges may cross spaces (a run's texts repeat whole phrases:
    # the schema, "SELECT COUNT(*) FROM", ...), which makes sequences about six times shorter,
    # so the tiny student's examples fit maxSeqLength 256 untruncated; but never a newline, so the
    # chat template's line breaks stay token boundaries and a prompt tokenizes the same alone
    # as in front of its answer. Digits go one by one and quotes alone, so a number or a quoted
    # value is the same tokens in the question as in the SQL.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Split("'", behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(
                add_prefix_space=False, use_regex=not shape.merge_across_spaces
            ),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=shape.vocab_size,
        min_frequency=shape.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=shape.max_token_length,
        show_progress=False,
    )
    backend.train_from_iterator([_ROLE_WORDS, *texts], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        unk_token=None,
        model_max_length=shape.max_position_embeddings,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_qwen3(
    texts: Sequence[str], out_dir: Path, *, seed: int = 0, shape: TinyQwen3Shape | None = None
) -> Path:
    """Builds the builtin student into `out_dir` (tokenizer, config, random weights)."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    shape = shape or TinyQwen3Shape()
    if not texts:
        raise ValueError("the builtin student's tokenizer needs training texts")
    tokenizer = train_bpe_tokenizer(texts, shape)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    pad_id = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    assert isinstance(eos_id, int) and isinstance(pad_id, int)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=shape.max_position_embeddings,
        initializer_range=shape.initializer_range,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=eos_id, pad_token_id=pad_id, do_sample=False
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _builtin_fingerprint(model: str, corpus: Sequence[str] | None, seed: int) -> str | None:
    """What the builtin base `model` is, or None when that depends on a corpus not given."""
    if model == SQL_QWEN3:
        from distillrun.jobs.builtin.cache import DEFAULT_RECIPE

        return DEFAULT_RECIPE.fingerprint()
    return corpus_fingerprint(corpus, TinyQwen3Shape(), seed) if corpus is not None else None


def _build_builtin(
    model: str,
    corpus: Sequence[str] | None,
    seed: int,
    local: Path,
    note: Callable[[str], None] | None,
) -> dict[str, Any]:
    """Builds (tiny) or copies from the machine's cache (sql) the base into `local`; returns
    what its marker records beyond the fingerprint."""
    if model == SQL_QWEN3:
        from distillrun.jobs.builtin.cache import DEFAULT_RECIPE, ensure_base

        shutil.copytree(ensure_base(cache_root(), DEFAULT_RECIPE, note), local, dirs_exist_ok=True)
        return {"recipe": asdict(DEFAULT_RECIPE)}
    assert corpus is not None
    shape = TinyQwen3Shape()
    build_tiny_qwen3(corpus, local, seed=seed, shape=shape)
    return {"shape": asdict(shape), "seed": seed, "corpus_texts": len(corpus)}


def _builtin(
    spec: StudentSpec,
    store: Store,
    workdir: Path,
    corpus: Sequence[str] | None,
    seed: int,
    stage: StageName,
    note: Callable[[str], None] | None,
) -> Student:
    _check_builtin(spec.model, stage)
    local = workdir / "student-base"
    stored = store.get_json(BASE_DONE_KEY) if store.exists(BASE_DONE_KEY) else None
    wanted = _builtin_fingerprint(spec.model, corpus, seed)
    if (
        stored is not None
        and stored.get("model") == spec.model
        and (wanted is None or stored.get("fingerprint") == wanted)
    ):
        store.get_tree(BASE_PREFIX, local)
        fingerprint = str(stored["fingerprint"])
        return Student(
            location=str(local),
            model_id=_builtin_id(spec.model, fingerprint),
            kind="builtin",
            info={"reused": True, **stored},
        )
    if wanted is None:
        raise StageFailed(
            stage,
            FailureReason.NO_STUDENT_BASE,
            f"the builtin student is built by the train stage and saved under {BASE_PREFIX}, "
            "but the store has none: run the train stage first",
        )
    details = _build_builtin(spec.model, corpus, seed, local, note)
    store.delete(BASE_DONE_KEY)  # first: a half-replaced base is never taken for complete
    for key in store.list_keys(BASE_PREFIX):
        store.delete(key)
    store.put_tree(BASE_PREFIX, local)
    marker = {"model": spec.model, "fingerprint": wanted, "builder": BUILDER_VERSION, **details}
    store.put_json(BASE_DONE_KEY, marker)  # last: the base is complete once this exists
    return Student(
        location=str(local),
        model_id=_builtin_id(spec.model, wanted),
        kind="builtin",
        info={"reused": False, **marker},
    )


def _builtin_id(model: str, fingerprint: str) -> str:
    return f"{model}@{fingerprint[:16]}"


def _check_builtin(model: str, stage: StageName) -> None:
    if model not in BUILTIN_MODELS:
        raise StageFailed(
            stage,
            FailureReason.STUDENT_NOT_FOUND,
            f"unknown builtin student {model!r}; builtin students: {', '.join(BUILTIN_MODELS)}",
        )


def student_model_id(
    spec: StudentSpec, *, stage: StageName, corpus: Sequence[str] | None = None, seed: int = 0
) -> str:
    """The `model_id` `resolve_student` will give, without building or fetching anything: what
    the train stage compares with a finished adapter's marker before deciding to train."""
    model = spec.model
    if model.startswith(BUILTIN_SCHEME):
        _check_builtin(model, stage)
        wanted = _builtin_fingerprint(model, corpus, seed)
        if wanted is None:
            raise ValueError("a builtin student's identity depends on its tokenizer corpus")
        return _builtin_id(model, wanted)
    path = Path(model).expanduser()
    if not model.startswith(("s3://", "file://")) and path.is_dir():
        return str(path.resolve())
    return model


def cache_root() -> Path:
    """Where students copied from a URI are kept between runs (`DISTILLRUN_CACHE_DIR`)."""
    configured = CacheSettings.from_env().cache_dir
    return configured if configured is not None else Path.home() / ".cache" / "distillrun"


def _from_uri(uri: str, stage: StageName) -> Student:
    local = cache_root() / "students" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    complete = local / ".distillrun-complete"
    if not complete.exists():
        try:
            source = open_store(uri, require_checksums=False)  # written by other tools
            if not source.list_keys(""):
                raise StageFailed(
                    stage, FailureReason.STUDENT_NOT_FOUND, f"no model files under {uri}"
                )
            source.get_tree("", local)
        except StoreError as exc:
            raise StageFailed(
                stage, FailureReason.STUDENT_NOT_FOUND, f"spec.student.model: {exc}"
            ) from None
        complete.write_text(uri, encoding="utf-8")
    return Student(location=str(local), model_id=uri, kind="uri")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_student(
    spec: StudentSpec,
    store: Store,
    workdir: Path,
    *,
    stage: StageName,
    corpus: Sequence[str] | None = None,
    seed: int = 0,
    note: Callable[[str], None] | None = None,
) -> Student:
    """Finds (or, for a builtin student, builds or fetches) the base model.

    `corpus` is the tiny builtin tokenizer's training text: the train stage passes it and
    builds the base when the stored one was built from other texts; evaluation passes None and
    takes the stored base as it is. The SQL base is built once per machine (minutes; `note`
    hears its progress) and copied from the machine's cache into the store.
    """
    model = spec.model
    if model.startswith(BUILTIN_SCHEME):
        return _builtin(spec, store, workdir, corpus, seed, stage, note)
    if model.startswith(("s3://", "file://")):
        return _from_uri(model, stage)
    path = Path(model).expanduser()
    if path.is_dir():
        return Student(location=str(path.resolve()), model_id=str(path.resolve()), kind="local")
    if _HUB_ID.match(model) and not model.startswith((".", "/", "~")):
        return Student(location=model, model_id=model, kind="hub")
    raise StageFailed(
        stage,
        FailureReason.STUDENT_NOT_FOUND,
        f"student.model {model!r} is neither a directory, an s3:// or file:// URI, a hub id "
        f"(org/name) nor a builtin student ({', '.join(BUILTIN_MODELS)})",
    )


def load_tokenizer(location: str, *, padding_side: str = "right") -> PreTrainedTokenizerBase:
    """The tokenizer, with a pad token (its end-of-sequence token when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location, padding_side=padding_side)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(location: str, *, dtype: torch.dtype) -> PreTrainedModel:
    """The causal LM at `location`, in `dtype`, on the CPU (the trainer moves it if needed)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(location, dtype=dtype)
