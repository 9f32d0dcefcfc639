"""The training recipe: one flat YAML file of ``key: value`` (TRL style) plus ``key=value``
overrides from the command line, read into a typed, validated :class:`TrainConfig`.

Every key is a field of :class:`TrainConfig`; an unknown key is an error that names the key,
the file (or the override) and the closest known keys. Values are typed by the field: an
override ``lora_r=8`` is an int, ``bf16=true`` a bool, ``target_modules=q_proj,v_proj`` a
list. Relative paths (corpus, out, deepspeed, a model folder) are relative to the working
directory, not to the recipe.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from medcode.errors import MedcodeError
from medcode.model.prompt import CANDIDATE_ORDERS

MODES = ("plain", "candidates")
SCHEDULERS = ("linear", "cosine", "constant")
DEFAULT_TARGET_MODULES = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


class ConfigError(MedcodeError):
    """A recipe or an override that cannot be used."""

    exit_code = 2


@dataclass
class TrainConfig:
    """Everything that decides a training run; written back as ``OUT/config.yaml``."""

    # what to train, on what, where to
    model: str = "embedded"  # 'embedded', a model folder, a cached hub name or an adapter folder
    corpus: str = ""  # a corpus folder written by `medcode synth`
    out: str = ""  # the run folder: adapter, checkpoints/, logs
    # data
    mode: str = "candidates"  # plain | candidates (the retriever lists k codes in the prompt)
    k: int = 20  # candidates per prompt
    # candidates by the note's needs: a place per code the lexicon finds plus k/2, from k up
    # to k_max (the retriever's ``note_k``); 0: every prompt lists k
    k_max: int = 0
    # the adapter's answers list only its prompt's candidates (written into medcode_model.json
    # for `medcode predict`, serve and the demo; constrained decoding; candidates mode only:
    # plain prompts list none, and the record says false)
    candidates_only: bool = False
    # the answer ends only where the end is at least this likely (0: at the first end);
    # written into medcode_model.json as the adapter's default `--eos-min`
    eos_min: float = 0.0
    # the order prompts list the candidates in: "score" (the retriever's, best first) or
    # "code" (so the model reads the note, not the rank); written into medcode_model.json
    candidate_order: str = "score"
    max_train_notes: int = 2000  # seeded sample of the train split for the LLM; 0: all
    # a note's chance in that sample, by the categories of its codes (the largest applies;
    # a note in none weighs 1), e.g. {advanced_illness: 3.0}; empty: a uniform sample
    category_weights: dict[str, float] = field(default_factory=dict)
    retriever_holdout: bool = True  # fit the retriever on the train notes the LLM does not see
    eval_notes: int = 0  # validation notes for an answer-loss evaluation at each save; 0: none
    max_seq_len: int = 1536  # prompt + answer tokens; longer notes are cut in the middle
    context: bool = True  # prompts state the note's setting and patient (from its encounter)
    # share of the training notes whose prompt leaves the context out (the same notes in every
    # run), so the model also codes notes that come without one (real notes often do)
    context_dropout: float = 0.2
    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    top_layers: int = 0  # adapters on the top N decoder layers only (backward stops there); 0: all
    load_in_4bit: bool = False  # QLoRA: base weights in 4-bit NF4 (bitsandbytes, CUDA)
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None  # e.g. sdpa, eager, flash_attention_2; None: default
    # optimisation
    learning_rate: float = 2e-4
    lr_scheduler: str = "linear"  # linear | cosine | constant (decay over steps or time budget)
    warmup_steps: int = 5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # knowledge retention: KL(base || tuned) on the note's own tokens, the adapters switched off
    # for the base's side; only the first kl_window tokens need a base forward pass
    kl_weight: float = 0.0  # 0: off
    kl_positions: int = 32  # note positions sampled per example
    kl_window: int = 384  # positions sampled among the first N tokens
    kl_every: int = 1  # the KL on every Nth optimizer step only, weighted N times (N x cheaper)
    per_device_batch: int = 2
    gradient_accumulation: int = 1
    group_by_length: bool = True  # batch notes of similar length together (less padding)
    epochs: float = 1.0
    max_steps: int = 0  # 0: from epochs
    time_budget_minutes: float = 0.0  # stop (and save) when the training time is spent; 0: none
    # bookkeeping
    save_every: int = 50  # checkpoint every N optimizer steps (and at the end)
    save_total_limit: int = 2
    logging_steps: int = 1
    seed: int = 0
    bf16: bool | None = None  # None: bf16 when CUDA is available
    device: str = "auto"  # auto | cpu | cuda
    deepspeed: str | None = None  # DeepSpeed JSON config (ZeRO-3), e.g. configs/gpu/ds_zero3.json

    # -- reading ------------------------------------------------------------------------

    @classmethod
    def load(
        cls, recipe: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
    ) -> TrainConfig:
        """The recipe file (if any) with ``key=value`` overrides applied, validated."""
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        if recipe is not None:
            path = Path(recipe)
            for key, value in _read_yaml(path).items():
                values[key] = _coerce(key, value, str(path))
                origins[key] = str(path)
        where = f"recipe {recipe}" if recipe is not None else "no recipe"
        for item in overrides:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"override {item!r}: expected key=value, e.g. lora_r=8")
            origin = f"override {item!r} ({where})"
            _check_key(key, origin)
            values[key] = _coerce(key, _parse_override(key, text), origin)
            origins[key] = origin
        config = cls(**values)
        config.validate(origins)
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # -- checking -----------------------------------------------------------------------

    def validate(self, origins: dict[str, str] | None = None) -> None:
        """Check every value; the error names the key and where its value came from."""
        origins = origins or {}

        def fail(key: str, problem: str) -> None:
            where = origins.get(key, "default")
            raise ConfigError(f"{where}: {key}={getattr(self, key)!r}: {problem}")

        positive_int = (
            "k",
            "lora_r",
            "lora_alpha",
            "per_device_batch",
            "gradient_accumulation",
            "save_every",
            "save_total_limit",
            "logging_steps",
        )
        for key in positive_int:
            if getattr(self, key) < 1:
                fail(key, "must be at least 1")
        for key in ("max_train_notes", "eval_notes", "top_layers", "max_steps", "warmup_steps"):
            if getattr(self, key) < 0:
                fail(key, "must be 0 or more")
        if self.mode not in MODES:
            fail("mode", f"use {' or '.join(MODES)}")
        if self.lr_scheduler not in SCHEDULERS:
            fail("lr_scheduler", f"use {', '.join(SCHEDULERS)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            fail("lora_dropout", "must be in [0, 1)")
        if not self.learning_rate > 0:
            fail("learning_rate", "must be positive")
        for key in ("kl_positions", "kl_window", "kl_every"):
            if getattr(self, key) < 1:
                fail(key, "must be at least 1")
        for key in ("weight_decay", "max_grad_norm", "time_budget_minutes", "kl_weight"):
            if getattr(self, key) < 0:
                fail(key, "must be 0 or more")
        if not self.epochs > 0:
            fail("epochs", "must be positive")
        if self.k_max and self.k_max < self.k:
            fail("k_max", f"must be 0 (every prompt lists k) or at least k={self.k}")
        if not 0.0 <= self.eos_min <= 1.0:
            fail("eos_min", "must be in [0, 1]")
        if self.candidate_order not in CANDIDATE_ORDERS:
            fail("candidate_order", f"use {' or '.join(CANDIDATE_ORDERS)}")
        if not 0.0 <= self.context_dropout <= 1.0:
            fail("context_dropout", "must be in [0, 1]")
        if self.max_seq_len < 32:
            fail("max_seq_len", "must be at least 32 tokens")
        if not self.target_modules:
            fail("target_modules", "name at least one module (e.g. q_proj) or 'all-linear'")
        if self.device not in ("auto", "cpu", "cuda"):
            fail("device", "use auto, cpu or cuda (pick a GPU with CUDA_VISIBLE_DEVICES)")
        if self.seed < 0:
            fail("seed", "must be 0 or more")
        from medcode.eval.metrics import CATEGORIES

        for name, weight in self.category_weights.items():
            if name not in CATEGORIES:
                fail("category_weights", f"unknown category {name!r}: use {', '.join(CATEGORIES)}")
            if not weight > 0:
                fail("category_weights", f"the weight of {name} must be positive")

    def fingerprint(self) -> dict[str, Any]:
        """What decides the prepared data (and the retriever): a resumed run must match it."""
        order = self.candidate_order
        return {
            "corpus": str(Path(self.corpus).expanduser().resolve()) if self.corpus else "",
            "mode": self.mode,
            "k": self.k,
            **({"k_max": self.k_max} if self.k_max else {}),
            **({} if order == "score" else {"candidate_order": order}),  # old runs resume
            "max_train_notes": self.max_train_notes,
            **({"category_weights": self.category_weights} if self.category_weights else {}),
            "retriever_holdout": self.retriever_holdout,
            "eval_notes": self.eval_notes,
            "seed": self.seed,
        }


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the recipe ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{line}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of key: value, not {type(data).__name__}")
    for key in data:
        _check_key(str(key), str(path))
    return {str(k): v for k, v in data.items()}


def _check_key(key: str, origin: str) -> None:
    if key in FIELD_NAMES:
        return
    close = difflib.get_close_matches(key, FIELD_NAMES, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ConfigError(f"{origin}: unknown key {key!r}{hint}")


def _parse_override(key: str, text: str) -> Any:
    """A text field takes the override's text as it is (``null`` clears an optional one);
    other fields read it as YAML."""
    hint = _HINTS[key]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if str in allowed:
        stripped = text.strip()
        return None if stripped in ("null", "~") and type(None) in allowed else stripped
    return _parse_scalar(text)


def _parse_scalar(text: str) -> Any:
    """An override's value as YAML would read it (``3``, ``true``, ``null``, ``[a, b]``);
    anything YAML cannot read stays a string."""
    import yaml

    text = text.strip()
    if text == "":
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


_HINTS = typing.get_type_hints(TrainConfig)


def _coerce(key: str, value: Any, origin: str) -> Any:
    """``value`` converted to the type of field ``key``, or a ConfigError naming both."""
    hint = _HINTS[key]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{origin}: {key} cannot be empty (null)")
    for kind in allowed:
        if kind is type(None):
            continue
        converted = _convert(kind, value)
        if converted is not _FAIL:
            return converted
    names = " or ".join(_type_name(kind) for kind in allowed if kind is not type(None))
    raise ConfigError(f"{origin}: {key}={value!r} is not {names}")


_FAIL = object()


def _convert(kind: Any, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        return _FAIL
    if kind is int:
        if isinstance(value, bool):
            return _FAIL
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                return _FAIL
        return _FAIL
    if kind is float:
        if isinstance(value, bool):
            return _FAIL
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads 1e-4 as a string
            except ValueError:
                return _FAIL
        return _FAIL
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return _FAIL
    if typing.get_origin(kind) is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
        return _FAIL
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return _FAIL
        numbers = {k: _convert(float, v) for k, v in value.items()}
        return _FAIL if any(v is _FAIL for v in numbers.values()) else numbers
    return _FAIL  # pragma: no cover - every field type is handled above


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is list:
        return "a list of names"
    if typing.get_origin(kind) is dict:
        return "a mapping of names to numbers"
    return {bool: "true/false", int: "an integer", float: "a number", str: "text"}.get(
        kind, str(kind)
    )
