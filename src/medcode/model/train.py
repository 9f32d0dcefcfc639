"""LoRA fine-tuning with the transformers ``Trainer``: the data, the answer-only loss with the
output head applied only where there is a label, a time budget, and the run folder.

Checkpoints, ``--resume``, bf16, accelerate and DeepSpeed ZeRO-3 all come from the library;
:class:`AnswerTrainer` only replaces the loss. It calls the model's own forward with a
boolean ``logits_to_keep`` mask, so the model runs its body over every token and its LM head
(Gemma's 262k-row vocabulary projection: over half of the 270M model) only at the positions
that predict an answer token: the same numbers as :func:`medcode.model.head.hidden_states`
followed by the head at those positions, but through the module's ``forward``, so DDP and
ZeRO-3 hooks see an ordinary forward pass.

An example is the prompt (:func:`~medcode.model.prompt.build_prompt`) and the answer
(:func:`~medcode.model.prompt.build_target` + end-of-sequence), tokenised separately as
inference will see them; only answer tokens are labelled. A note too long for
``max_seq_len`` is cut in the middle (its header and its assessment/plan are kept), never
the answer. In ``candidates`` mode the candidates come from the retriever, fit on the part of
the train split the LLM does not see, so training prompts look like test prompts.

The run folder ``OUT`` holds the adapter (``save_pretrained``), ``medcode_model.json``,
``config.yaml``, ``train_log.jsonl``, ``train_summary.json``, ``retriever/`` (candidates
mode) and ``checkpoints/``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcode.errors import MedcodeError
from medcode.model.loading import EMBEDDED, ModelError, resolve
from medcode.model.prompt import (
    Candidate,
    NoteContext,
    build_target,
    fit_prompt,
    left_out,
    ordered,
)
from medcode.model.record import RECORD
from medcode.model.train_config import ConfigError, TrainConfig

IGNORE_INDEX = -100
CLOCK = "medcode_clock.json"
RETRIEVER_DIR = "retriever"
CHECKPOINTS = "checkpoints"
WARN_NOTES = 5  # notes named one by one in warnings


class TrainError(MedcodeError):
    """A training run that cannot start or go on."""

    exit_code = 2


# -- examples ------------------------------------------------------------------------------


def prompt_ids(
    tokenizer: Any,
    note: str,
    mode: str,
    candidates: Sequence[Candidate] | None,
    budget: int,
    context: NoteContext | None = None,
) -> tuple[list[int] | None, bool]:
    """The prompt's token ids within ``budget`` tokens (the note cut in the middle if too
    long, as :func:`medcode.model.prompt.fit_prompt` does at inference): ``(ids, truncated)``."""
    _, ids, truncated = fit_prompt(tokenizer, note, mode, candidates, budget, context)
    return ids, truncated


def encode_example(
    tokenizer: Any,
    note: str,
    codes: Sequence[str],
    *,
    mode: str = "plain",
    candidates: Sequence[Candidate] | None = None,
    max_seq_len: int = 1536,
    context: NoteContext | None = None,
) -> tuple[dict[str, list[int]] | None, bool]:
    """``({"input_ids", "labels"}, truncated)`` for one note: prompt tokens labelled
    ``IGNORE_INDEX``, answer tokens (codes, then end-of-sequence) labelled with themselves.
    None when the answer leaves no room for a prompt."""
    answer = tokenizer(build_target(codes), add_special_tokens=False)["input_ids"]
    answer = [*answer, tokenizer.eos_token_id]
    prompt, truncated = prompt_ids(
        tokenizer, note, mode, candidates, max_seq_len - len(answer), context
    )
    if prompt is None:
        return None, truncated
    return {
        "input_ids": prompt + answer,
        "labels": [IGNORE_INDEX] * len(prompt) + answer,
    }, truncated


class ExampleDataset:
    """A list of encoded examples as a map-style dataset (``len``, ``[i]``)."""

    def __init__(self, examples: list[dict[str, list[int]]]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.examples[index]


@dataclass
class AnswerCollator:
    """Right-pads a batch: ``input_ids`` with the pad id, ``labels`` with ``IGNORE_INDEX``."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), length), dtype=torch.long)
        for row, feature in enumerate(features):
            size = len(feature["input_ids"])
            input_ids[row, :size] = torch.tensor(feature["input_ids"])
            labels[row, :size] = torch.tensor(feature["labels"])
            attention_mask[row, :size] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# -- the loss -----------------------------------------------------------------------------


def answer_loss(model: Any, input_ids: Any, attention_mask: Any, labels: Any) -> tuple[Any, int]:
    """``(sum of cross-entropy over the labelled tokens, their count)``: the head runs only at
    the positions whose next token is labelled (``logits_to_keep`` as a boolean mask)."""
    import torch

    targets_mask = labels[:, 1:] != IGNORE_INDEX
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets_mask
    targets = labels[:, 1:][targets_mask]
    outputs = model(
        input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, use_cache=False
    )
    logits = outputs.logits
    if logits.dim() == 3:  # a model whose forward ignores the mask: full logits
        logits = logits[keep]
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return loss, int(targets.numel())


def kl_positions(labels: Any, attention_mask: Any, count: int, window: int, generator=None) -> Any:
    """A boolean ``[batch, length]`` mask of up to ``count`` prompt positions per row, drawn at
    random among the first ``window`` tokens, each predicting a prompt token (never an answer
    token or padding), where the KL term compares the tuned model with its base."""
    import torch

    length = labels.shape[1]
    eligible = torch.zeros_like(labels, dtype=torch.bool)
    eligible[:, :-1] = (labels[:, 1:] == IGNORE_INDEX) & (attention_mask[:, 1:] != 0)
    eligible[:, min(window, length) :] = False
    noise = torch.rand(labels.shape, generator=generator, device=labels.device)
    noise = noise.masked_fill(~eligible, 2.0)
    take = min(count, length)
    order = noise.topk(take, dim=1, largest=False).indices
    chosen = torch.zeros_like(eligible)
    chosen.scatter_(1, order, True)
    return chosen & eligible


def regularised_loss(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    labels: Any,
    kl_mask: Any,
    base_logits: Callable[[Any, Any, Any], Any],
) -> tuple[Any, int, Any, int]:
    """``(answer cross-entropy sum, answer tokens, KL sum, KL positions)`` from one forward pass
    of the tuned model whose head runs at the answer positions and the ``kl_mask`` positions;
    ``base_logits(input_ids, attention_mask, mask)`` gives the frozen base's logits at ``mask``
    (row order: batch, then position), and the KL is KL(base || tuned) over the vocabulary."""
    import torch

    targets_mask = labels[:, 1:] != IGNORE_INDEX
    answer = torch.zeros_like(labels, dtype=torch.bool)
    answer[:, :-1] = targets_mask
    keep = answer | kl_mask
    capture = getattr(base_logits, "capture", contextlib.nullcontext)
    with capture():  # lets the base reuse this pass's hidden states below the adapters
        outputs = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            logits_to_keep=keep,
            use_cache=False,
        )
    logits = outputs.logits
    if logits.dim() == 3:
        logits = logits[keep]
    logits = logits.float()
    targets = labels[:, 1:][targets_mask]
    answer_rows = answer[keep]
    ce = torch.nn.functional.cross_entropy(logits[answer_rows], targets, reduction="sum")
    kl_count = int(kl_mask.sum())
    if not kl_count:
        return ce, int(targets.numel()), logits.new_zeros(()), 0
    width = int(kl_mask.nonzero()[:, 1].max()) + 1
    with torch.no_grad():
        reference = base_logits(input_ids[:, :width], attention_mask[:, :width], kl_mask[:, :width])
        reference = torch.log_softmax(reference.float(), dim=-1)
    tuned = torch.log_softmax(logits[~answer_rows], dim=-1)
    kl = torch.nn.functional.kl_div(tuned, reference, log_target=True, reduction="sum")
    return ce, int(targets.numel()), kl, kl_count


class _BaseLogits:
    """The frozen base's logits at a mask: the same module with its adapters switched off.

    With adapters on the top layers only, the layers below them compute the same hidden states
    in the base as in the tuned model. Around the tuned pass, :meth:`capture` keeps the hidden
    states leaving the last layer without adapters; the base's pass then skips those layers
    (each returns the kept states, cut to the base's width: causal attention, so exact) and
    runs only the adapted layers and the head. Without such a split (adapters everywhere, a
    trainable module outside the decoder layers, nothing captured) it runs the whole model.
    """

    def __init__(self, model: Any) -> None:
        peft_model = model
        while not hasattr(peft_model, "disable_adapter") and hasattr(peft_model, "module"):
            peft_model = peft_model.module  # DDP / DeepSpeed wrappers
        self.model = peft_model
        self.layers, self.first = _adapted_layers(peft_model)
        self.hidden: Any = None

    @contextlib.contextmanager
    def capture(self):
        """Keep the hidden states entering the first adapted layer during a forward pass."""
        if not self.first:
            yield
            return

        def keep(module, args, output):
            self.hidden = _detached(output)

        handle = self.layers[self.first - 1].register_forward_hook(keep)
        try:
            yield
        finally:
            handle.remove()

    def __call__(self, input_ids, attention_mask, mask):
        width = input_ids.shape[1]
        kept, self.hidden = self.hidden, None
        skipped = self.layers[: self.first] if kept is not None else []
        cut = _cut(kept, width) if kept is not None else None
        try:
            for layer in skipped:
                layer.forward = lambda *args, **kwargs: cut
            with self.model.disable_adapter():
                out = self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    logits_to_keep=mask,
                    use_cache=False,
                )
        finally:
            for layer in skipped:
                del layer.forward  # the class's forward again
        logits = out.logits
        return logits[mask] if logits.dim() == 3 else logits


def _base_logits_for(model: Any) -> _BaseLogits:
    """The frozen base's logits at a mask (see :class:`_BaseLogits`)."""
    return _BaseLogits(model)


def _adapted_layers(model: Any) -> tuple[Any, int]:
    """``(decoder layers, index of the first layer with a trainable parameter)``; the index is
    0 (nothing to reuse) when a trainable parameter lies outside the decoder layers or none
    was found."""
    import torch

    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    found = None
    for name, module in model.named_modules():
        listed = isinstance(module, torch.nn.ModuleList) and name.endswith("layers")
        if listed and (count is None or len(module) == count):
            found = (name, module)
            break
    if found is None:
        return None, 0
    prefix, layers = found
    first = None
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if not name.startswith(prefix + "."):
            return layers, 0
        index = int(name[len(prefix) + 1 :].split(".", 1)[0])
        first = index if first is None else min(first, index)
    return layers, first or 0


def _detached(output: Any) -> Any:
    if isinstance(output, tuple):
        return tuple(_detached(item) for item in output)
    return output.detach() if hasattr(output, "detach") else output


def _cut(output: Any, width: int) -> Any:
    """A layer's output cut to the first ``width`` positions (hidden states only)."""
    if isinstance(output, tuple):
        return (output[0][:, :width], *output[1:])
    return output[:, :width]


def _trainer_class():
    from transformers import Trainer

    class AnswerTrainer(Trainer):
        """``Trainer`` with the answer-only, head-on-labels loss and an LR schedule that
        decays over the steps or over the time budget, whichever comes first."""

        def __init__(self, *args: Any, clock: RunClock | None = None, **kwargs: Any) -> None:
            self.clock = clock or RunClock()
            self.lr_shape: tuple[str, int] = ("linear", 0)
            super().__init__(*args, **kwargs)
            # always count the labelled tokens of the whole accumulated batch, so the loss is
            # normalised per answer token across gradient accumulation and devices
            self.model_accepts_loss_kwargs = True
            self.padded_positions = 0
            self.batch_positions = 0
            self.kl_weight = 0.0
            self.kl_sample: tuple[int, int] = (32, 384)
            self.kl_every = 1  # the KL on every Nth optimizer step, weighted N times
            self._terms = [0.0, 0, 0.0, 0]  # answer CE sum, tokens, KL sum, positions
            self._base: tuple[Any, _BaseLogits] | None = None  # (model, its base's logits)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mask = inputs["attention_mask"]
            if model.training:
                self.batch_positions += int(mask.numel())
                self.padded_positions += int(mask.numel() - mask.sum())
            labels = inputs["labels"]
            kl_step = self.state.global_step % self.kl_every == 0
            if self.kl_weight and model.training and kl_step:
                sample = kl_positions(labels, mask, *self.kl_sample)
                if self._base is None or self._base[0] is not model:
                    # built once: finding the adapted layers walks every parameter
                    self._base = (model, _base_logits_for(model))
                total, count, kl, kl_count = regularised_loss(
                    model, inputs["input_ids"], mask, labels, sample, self._base[1]
                )
            else:
                total, count = answer_loss(model, inputs["input_ids"], mask, labels)
                kl, kl_count = None, 0
            denominator = num_items_in_batch if num_items_in_batch is not None else max(count, 1)
            loss = total / denominator
            if kl_count:
                # the mean KL per sampled position, weighted by this micro-batch's share of the
                # accumulated answer tokens (a plain mean without accumulation); on every
                # kl_every-th step only, so weighted kl_every times: the same term on average
                weight = self.kl_weight * self.kl_every
                loss = loss + weight * (kl / kl_count) * (count / max(denominator, 1))
                self._terms[2] += float(kl.detach())
                self._terms[3] += kl_count
            if self.kl_weight and model.training:
                # both terms logged apart (only with the KL: no device sync otherwise)
                self._terms[0] += float(total.detach())
                self._terms[1] += count
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # DDP averages the gradients
            return (loss, {"loss": loss.detach()}) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            ce, tokens, kl, positions = self._terms
            if "loss" in logs and self.kl_weight:
                if tokens:
                    logs["answer_loss"] = round(ce / tokens, 6)
                if positions:
                    logs["kl"] = round(kl / positions, 6)
                self._terms = [0.0, 0, 0.0, 0]
            return super().log(logs, *args, **kwargs)

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                import torch

                shape, warmup = self.lr_shape
                total = max(1, num_training_steps)
                clock = self.clock

                def factor(step: int) -> float:
                    progress = step / total
                    if clock.budget:
                        progress = max(progress, clock.total() / clock.budget)
                    progress = min(1.0, progress)
                    warm = min(1.0, (step + 1) / (warmup + 1)) if warmup else 1.0
                    if shape == "cosine":
                        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
                    elif shape == "linear":
                        decay = 1.0 - progress
                    else:
                        decay = 1.0
                    return warm * decay

                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    optimizer or self.optimizer, factor
                )
                self._created_lr_scheduler = True
            return self.lr_scheduler

        def padding_fraction(self) -> float:
            return self.padded_positions / self.batch_positions if self.batch_positions else 0.0

    return AnswerTrainer


# -- time, logs, progress -------------------------------------------------------------------


@dataclass
class RunClock:
    """Training seconds: ``previous`` (earlier sessions of a resumed run) plus this session;
    ``budget`` in seconds (0: none)."""

    budget: float = 0.0
    previous: float = 0.0
    started: float | None = None
    steps: int = 0

    def start(self) -> None:
        self.started = time.perf_counter()

    def session(self) -> float:
        return time.perf_counter() - self.started if self.started is not None else 0.0

    def total(self) -> float:
        return self.previous + self.session()

    def mean_step(self) -> float:
        return self.session() / self.steps if self.steps else 0.0


def _callbacks(clock: RunClock, out: Path, console: Any, show_progress: bool) -> list:
    from transformers import TrainerCallback

    class Budget(TrainerCallback):
        """Counts time from the first step; stops (and checkpoints) before the budget would be
        overrun by one more step; records the time in every checkpoint."""

        stopped = False

        def on_train_begin(self, args, state, control, **kwargs):
            clock.start()
            clock.steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            clock.steps += 1
            if clock.budget and clock.total() + clock.mean_step() > clock.budget:
                control.should_training_stop = True
                control.should_save = True
                self.stopped = True

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    (folder / CLOCK).write_text(json.dumps({"seconds": clock.total()}))

    class JsonLog(TrainerCallback):
        """``train_log.jsonl``: one line per logging step; ``eval_log.jsonl`` for eval."""

        last_loss: float | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                self.last_loss = float(logs["loss"])
            if not state.is_world_process_zero:
                return
            if "loss" in logs:
                row = {
                    "step": state.global_step,
                    "loss": float(logs["loss"]),
                    "tokens": int(state.num_input_tokens_seen),
                    "seconds": round(clock.total(), 3),
                    "lr": logs.get("learning_rate"),
                    "grad_norm": _number(logs.get("grad_norm")),
                    "epoch": logs.get("epoch"),
                }
                for key in ("answer_loss", "kl"):
                    if key in logs:
                        row[key] = float(logs[key])
                _append_jsonl(out / "train_log.jsonl", row)
            elif "eval_loss" in logs:
                row = {
                    "step": state.global_step,
                    "eval_loss": float(logs["eval_loss"]),
                    "seconds": round(clock.total(), 3),
                }
                _append_jsonl(out / "eval_log.jsonl", row)

    class Bar(TrainerCallback):
        """A rich progress bar: steps, loss, tokens/s, ETA (the budget's when that is sooner)."""

        progress = None
        task = None
        first_tokens = 0
        loss = "–"

        def on_train_begin(self, args, state, control, **kwargs):
            if not (show_progress and state.is_world_process_zero):
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.first_tokens = state.num_input_tokens_seen
            self.progress = Progress(
                TextColumn("[bold]train[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]}"),
                TextColumn("ETA {task.fields[eta]}"),
                console=console,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "steps",
                total=state.max_steps,
                completed=state.global_step,
                loss="–",
                rate="",
                eta="–",
            )

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = f"{float(logs['loss']):.4f}"

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is None:
                return
            seconds = clock.session()
            tokens = state.num_input_tokens_seen - self.first_tokens
            remaining_steps = max(0, state.max_steps - state.global_step)
            eta = clock.mean_step() * remaining_steps
            total = state.max_steps
            if clock.budget:
                left = max(0.0, clock.budget - clock.total())
                if left < eta:
                    eta = left
                    total = (
                        state.global_step + int(left / clock.mean_step()) if clock.steps else total
                    )
            self.progress.update(
                self.task,
                completed=state.global_step,
                total=total,
                loss=self.loss,
                rate=f"{tokens / seconds:,.0f} tokens/s" if seconds else "",
                eta=_duration(eta),
            )

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(
                    self.task, total=state.global_step, completed=state.global_step
                )
                self.progress.stop()
                self.progress = None

    return [Budget(), JsonLog(), Bar()]


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _append_jsonl(path: Path, row: dict) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def _trim_jsonl(path: Path, step: int) -> None:
    """Drop the lines logged after ``step`` (a resumed run logs those steps again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except (ValueError, AttributeError):
            continue
    path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


# -- data ---------------------------------------------------------------------------------


@dataclass
class PreparedData:
    """Encoded examples and what happened on the way."""

    train: list[dict[str, list[int]]]
    eval: list[dict[str, list[int]]] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    retriever_notes: int = 0
    retriever_reused: bool = False
    candidates: dict[str, int] = field(default_factory=dict)  # note id -> candidates listed


def _spread(values: list[int]) -> dict[str, float] | None:
    """Mean, least and most of a count per note (None without notes)."""
    if not values:
        return None
    return {"mean": round(sum(values) / len(values), 2), "min": min(values), "max": max(values)}


def retriever_class() -> Any:
    """The candidate retriever (imported only in candidates mode; tests replace this)."""
    try:
        from medcode.model.retriever import Retriever
    except ImportError as error:
        raise TrainError(
            f"candidates mode needs the retriever (medcode.model.retriever: {error}); "
            "use mode=plain"
        ) from None
    return Retriever


def _fit_retriever(
    cls: Any, texts: list[str], labels: list[list[str]], k: int, say, k_max: int = 0
) -> Any:
    """``Retriever.fit(texts, labels, k=k, progress=say, k_max=k_max)``, passing only what
    it accepts."""
    static = isinstance(inspect.getattr_static(cls, "fit", None), classmethod | staticmethod)
    fit = cls.fit if static else cls().fit
    accepted = inspect.signature(fit).parameters
    given = (("k", k), ("progress", say), ("k_max", k_max))
    kwargs = {name: value for name, value in given if name in accepted}
    if not k_max:
        kwargs.pop("k_max", None)
    fitted = fit(texts, labels, **kwargs)
    return fitted if fitted is not None or static else fit.__self__


def check_corpus(folder: str | Path) -> Path:
    """The corpus folder, or a clear error when it holds no shard written by medcode synth."""
    if not str(folder):
        raise ConfigError("corpus is not set: add corpus=PATH (a folder written by medcode synth)")
    path = Path(folder).expanduser()
    data = path / "data"
    if not path.is_dir() or not (any(data.glob("*.parquet")) or any(data.glob("*.jsonl"))):
        raise TrainError(
            f"{path}: no corpus there (expected {data}/*.parquet or *.jsonl written by "
            "`medcode synth --out`)"
        )
    return path


def read_corpus(folder: str | Path) -> tuple[list[dict], list[dict]]:
    """``(train rows, validation rows)`` of a corpus written by ``medcode synth``."""
    from medcode.synth.card import read_rows

    path = check_corpus(folder)
    train, validation = [], []
    try:
        for row in read_rows(path, ["id", "text", "codes", "split", "encounter"]):
            if row["split"] == "train":
                train.append(row)
            elif row["split"] == "validation":
                validation.append(row)
    except (KeyError, OSError, ValueError) as error:
        raise TrainError(f"{path}: unreadable corpus ({error})") from None
    if not train:
        raise TrainError(f"{path}: the corpus has no note in the train split")
    return train, validation


def llm_sample(train_rows: list[dict], config: TrainConfig) -> set[int]:
    """Indices of the train notes the LLM sees: all, or a seeded sample of
    ``max_train_notes`` (uniform, or weighted by ``category_weights``)."""
    rng = random.Random(config.seed)
    count = config.max_train_notes
    if not count or count >= len(train_rows):
        return set(range(len(train_rows)))
    if config.category_weights:
        return weighted_sample(train_rows, config.category_weights, count, rng)
    return set(rng.sample(range(len(train_rows)), count))


def weighted_sample(
    rows: list[dict], weights: dict[str, float], count: int, rng: random.Random
) -> set[int]:
    """Indices of ``count`` rows drawn without replacement, each with a chance proportional
    to the largest weight among its codes' categories (1 for a row in none): the
    Efraimidis-Spirakis keys ``u ** (1 / w)``, the ``count`` largest kept."""
    from medcode.records import System
    from medcode.terminology.categories import category_names

    keys = []
    for index, row in enumerate(rows):
        names = {
            name
            for item in row["codes"]
            for name in (
                item["categories"]
                if "categories" in item  # written by medcode synth
                else category_names(item["code"], System(item["system"]))
            )
        }
        weight = max([weights[n] for n in names if n in weights], default=1.0)
        keys.append((rng.random() ** (1.0 / weight), index))
    return {index for _, index in sorted(keys, reverse=True)[:count]}


def _codes(row: dict) -> list[str]:
    return [item["code"] for item in row["codes"]]


def _context(row: dict, config: TrainConfig) -> NoteContext | None:
    """A training note's setting and patient for its prompt, unless left out."""
    if not config.context or left_out(str(row["id"]), config.context_dropout):
        return None
    return NoteContext.of_encounter(row.get("encounter"))


def prepare_data(
    config: TrainConfig,
    tokenizer: Any,
    out: Path,
    *,
    reuse_retriever: bool = False,
    save_retriever: bool = True,
    say: Callable[[str], None] = lambda message: None,
    warn: Callable[[str], None] = lambda message: None,
) -> PreparedData:
    """Read the corpus, sample the LLM's notes, fit (or reuse) the retriever, encode."""
    train_rows, validation_rows = read_corpus(config.corpus)
    chosen = llm_sample(train_rows, config)
    llm_rows = [row for i, row in enumerate(train_rows) if i in chosen]
    eval_rows: list[dict] = []
    if config.eval_notes:
        if not validation_rows:
            warn(f"{config.corpus}: no validation notes: eval_notes ignored")
        else:
            picked = random.Random(config.seed + 1).sample(
                range(len(validation_rows)), min(config.eval_notes, len(validation_rows))
            )
            eval_rows = [validation_rows[i] for i in sorted(picked)]

    prepared = PreparedData(train=[])
    candidates: dict[str, list[Candidate]] = {}
    if config.mode == "candidates":
        retriever, prepared.retriever_notes, prepared.retriever_reused = _retriever(
            config, train_rows, chosen, out, reuse_retriever, save_retriever, say
        )
        rows = llm_rows + eval_rows
        many = f"{config.k}-{config.k_max}" if config.k_max > config.k else str(config.k)
        say(f"listing {many} candidates for {len(rows):,} notes")
        lists = retriever.candidates([row["text"] for row in rows], config.k)
        candidates = {
            row["id"]: ordered(found, config.candidate_order)
            for row, found in zip(rows, lists, strict=True)
        }
        prepared.candidates = {note: len(found) for note, found in candidates.items()}

    say(f"tokenising {len(llm_rows):,} training notes")
    for rows, target in ((llm_rows, prepared.train), (eval_rows, prepared.eval)):
        for row in rows:
            example, truncated = encode_example(
                tokenizer,
                row["text"],
                _codes(row),
                mode=config.mode,
                candidates=candidates.get(row["id"]),
                max_seq_len=config.max_seq_len,
                context=_context(row, config),
            )
            if example is None:
                prepared.skipped.append(row["id"])
                warn(
                    f"note {row['id']}: its answer does not fit in max_seq_len="
                    f"{config.max_seq_len} tokens: skipped"
                )
                continue
            if truncated:
                prepared.truncated.append(row["id"])
                if len(prepared.truncated) <= WARN_NOTES:
                    warn(
                        f"note {row['id']}: longer than max_seq_len={config.max_seq_len} "
                        "tokens: the middle of the note was cut"
                    )
            target.append(example)
    if len(prepared.truncated) > WARN_NOTES:
        warn(
            f"{len(prepared.truncated):,} notes in all were cut to fit max_seq_len="
            f"{config.max_seq_len} ({', '.join(prepared.truncated[:WARN_NOTES])}, ...)"
        )
    if not prepared.train:
        raise TrainError(f"no training example fits in max_seq_len={config.max_seq_len} tokens")
    return prepared


def _retriever(config, train_rows, chosen, out, reuse, save, say):
    """The retriever for candidates mode: fit on the train notes the LLM does not see (or on
    all of them when ``retriever_holdout`` is false), saved in ``OUT/retriever``."""
    cls = retriever_class()
    folder = out / RETRIEVER_DIR
    record = out / "retriever_fit.json"
    fingerprint = config.fingerprint()
    if reuse and record.exists() and json.loads(record.read_text()).get("fit") == fingerprint:
        say(f"loading the retriever from {folder}")
        return cls.load(folder), json.loads(record.read_text()).get("notes", 0), True
    if config.retriever_holdout:
        fit_rows = [row for i, row in enumerate(train_rows) if i not in chosen]
        if not fit_rows:
            raise ConfigError(
                f"max_train_notes={config.max_train_notes} takes every train note "
                f"({len(train_rows):,}) and leaves none to fit the retriever: lower it, or set "
                "retriever_holdout=false"
            )
    else:
        fit_rows = train_rows
    say(f"fitting the retriever on {len(fit_rows):,} train notes")
    retriever = _fit_retriever(
        cls,
        [row["text"] for row in fit_rows],
        [_codes(r) for r in fit_rows],
        config.k,
        say,
        config.k_max,
    )
    if save:
        folder.mkdir(parents=True, exist_ok=True)
        retriever.save(folder)
        record.write_text(json.dumps({"fit": fingerprint, "notes": len(fit_rows)}, indent=2))
    return retriever, len(fit_rows), False


# -- the model ----------------------------------------------------------------------------


def _torch_dtype(bf16: bool):
    import torch

    return torch.bfloat16 if bf16 else torch.float32


def load_for_training(config: TrainConfig, *, bf16: bool, local_rank: int = 0):
    """``(peft model, tokenizer, ModelSource)``: the base model (4-bit when
    ``load_in_4bit``) with fresh LoRA adapters, or an adapter folder made trainable."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    source = resolve(config.model)
    base = _base_folder(source)
    tokenizer = load_tokenizer(source)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(bf16)}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    if config.load_in_4bit:
        kwargs.update(_four_bit(local_rank))
    try:
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    except (OSError, ValueError) as error:
        raise ModelError(f"{base}: cannot load the model ({_first_line(error)})") from None
    model.config.use_cache = False
    if config.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if source.adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(source.adapter), is_trainable=True)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ModelError(f"{source.adapter}: corrupt adapter ({_first_line(error)})") from None
        return model, tokenizer, source
    from peft import get_peft_model

    with warnings.catch_warnings():  # peft reads transformers' deprecated property
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        model = get_peft_model(model, lora_config(config, model.config))
    return model, tokenizer, source


def lora_config(config: TrainConfig, model_config: Any):
    """The peft ``LoraConfig``; ``top_layers`` becomes ``layers_to_transform``."""
    from peft import LoraConfig

    layers = None
    if config.top_layers:
        text_config = (
            model_config.get_text_config()
            if hasattr(model_config, "get_text_config")
            else model_config
        )
        count = text_config.num_hidden_layers
        if config.top_layers > count:
            raise ConfigError(
                f"top_layers={config.top_layers}: the model has only {count} decoder layers"
            )
        layers = list(range(count - config.top_layers, count))
    targets = config.target_modules
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else list(targets),
        layers_to_transform=layers,
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_tokenizer(source: Any):
    from transformers import AutoTokenizer

    base = _base_folder(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError) as error:
        raise ModelError(f"{base}: cannot load the tokenizer ({_first_line(error)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise ModelError(f"{base}: the tokenizer has no end-of-sequence token")
    return tokenizer


def _base_folder(source: Any) -> str:
    from medcode.model.loading import embedded_path

    return str(embedded_path()) if source.base == EMBEDDED else source.base


def _four_bit(local_rank: int) -> dict[str, Any]:
    import torch

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise TrainError(
            "load_in_4bit=true needs bitsandbytes: pip install bitsandbytes (CUDA only)"
        ) from None
    if not torch.cuda.is_available():
        raise TrainError("load_in_4bit=true needs a CUDA GPU")
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        ),
        "device_map": {"": local_rank},
    }


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# -- the run ------------------------------------------------------------------------------


def training_arguments(
    config: TrainConfig, out: Path, *, bf16: bool, use_cpu: bool, evaluate: bool
):
    """The transformers ``TrainingArguments`` for a config (checkpoints in OUT/checkpoints)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=config.per_device_batch,
        per_device_eval_batch_size=config.per_device_batch,
        gradient_accumulation_steps=config.gradient_accumulation,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.save_every,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=config.save_every if evaluate else None,
        prediction_loss_only=True,
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        use_cpu=use_cpu,
        deepspeed=config.deepspeed,
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False}
        if config.gradient_checkpointing
        else None,
        train_sampling_strategy="group_by_length"
        if config.group_by_length and config.per_device_batch > 1
        else "random",
        remove_unused_columns=False,
        label_names=["labels"],
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=not use_cpu,
        log_level="warning",
    )


def _device(config: TrainConfig) -> tuple[bool, bool]:
    """``(use_cpu, bf16)`` from ``device`` and ``bf16`` (auto: bf16 on CUDA)."""
    import torch

    cuda = torch.cuda.is_available()
    if config.device.startswith("cuda") and not cuda:
        raise TrainError(f"device={config.device}: no CUDA GPU is visible")
    use_cpu = config.device == "cpu" or (config.device == "auto" and not cuda)
    bf16 = (not use_cpu) if config.bf16 is None else config.bf16
    if bf16 and not use_cpu and not torch.cuda.is_bf16_supported():
        raise TrainError("bf16=true: this GPU does not support bfloat16; set bf16=false")
    return use_cpu, bf16


def _check_out(out: Path, resume: bool) -> str | None:
    """The checkpoint to resume from (None for a fresh run), after checking OUT."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = out / CHECKPOINTS
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume:
        if last is None:
            raise TrainError(f"{out}: no checkpoint to resume from (no {checkpoints}/checkpoint-N)")
        return last
    if last is not None or (out / RECORD).exists():
        raise TrainError(
            f"{out} already holds a training run: add --resume to continue it, or choose "
            "another --out"
        )
    return None


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    console: Any = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train a LoRA adapter as the config says; returns the summary written to
    ``OUT/train_summary.json``."""
    import yaml
    from rich.console import Console
    from transformers.utils import logging as transformers_logging

    console = console or Console(stderr=True)
    if not config.out:
        raise ConfigError("out is not set: give --out DIR (or out: in the recipe)")
    if config.deepspeed and not Path(config.deepspeed).is_file():
        raise ConfigError(f"deepspeed={config.deepspeed}: no such DeepSpeed config file")
    out = Path(config.out).expanduser()
    checkpoint = _check_out(out, resume)
    check_corpus(config.corpus)
    source = resolve(config.model)  # a missing model fails before anything is written
    use_cpu, bf16 = _device(config)

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        args = training_arguments(
            config, out, bf16=bf16, use_cpu=use_cpu, evaluate=config.eval_notes > 0
        )
        main = args.process_index == 0
        if main:
            out.mkdir(parents=True, exist_ok=True)
            header = f"# medcode train: resolved config (seed {config.seed})\n"
            (out / "config.yaml").write_text(
                header + yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8"
            )
        say = (lambda message: console.print(f"[dim]{message}...[/dim]")) if main else _quiet
        warn = (
            (lambda message: console.print(f"[yellow]warning:[/yellow] {message}"))
            if main
            else _quiet
        )
        tokenizer = load_tokenizer(source)
        with args.main_process_first(local=False, desc="preparing the data"):
            data = prepare_data(
                config,
                tokenizer,
                out,
                reuse_retriever=checkpoint is not None or not main,
                save_retriever=main,
                say=say,
                warn=warn,
            )
        say(f"loading {source.label}")
        model, tokenizer, source = load_for_training(
            config, bf16=bf16, local_rank=args.local_process_index
        )
        summary = _run(
            config, args, model, tokenizer, source, data, out, checkpoint, console, show_progress
        )
    finally:
        transformers_logging.set_verbosity(verbosity)
    return summary


def _quiet(message: str) -> None:
    return None


def _run(config, args, model, tokenizer, source, data, out, checkpoint, console, show_progress):
    clock = RunClock(budget=config.time_budget_minutes * 60.0)
    if checkpoint is not None:
        record = Path(checkpoint) / CLOCK
        if record.exists():
            clock.previous = float(json.loads(record.read_text()).get("seconds", 0.0))
    main = args.process_index == 0
    if main:
        if checkpoint is None:
            for name in ("train_log.jsonl", "eval_log.jsonl"):
                (out / name).unlink(missing_ok=True)
        else:
            step = int(Path(checkpoint).name.rsplit("-", 1)[-1])
            for name in ("train_log.jsonl", "eval_log.jsonl"):
                _trim_jsonl(out / name, step)
    if not data.eval:
        from transformers.trainer_utils import IntervalStrategy

        args.eval_strategy = IntervalStrategy.NO
    callbacks = _callbacks(clock, out, console, show_progress)
    trainer = build_trainer(config, args, model, tokenizer, data.train, data.eval, clock, callbacks)
    budget_callback = callbacks[0]
    if main:
        trainable, total = _parameter_counts(model)
        console.print(
            f"training {trainable:,} LoRA parameters ({trainable / max(total, 1):.2%} of "
            f"{total:,}) on {len(data.train):,} notes"
            + (f", evaluating on {len(data.eval):,}" if data.eval else "")
            + (f", resuming from {checkpoint}" if checkpoint else "")
            + (f", time budget {config.time_budget_minutes:g} min" if clock.budget else "")
        )
    tokens_before = 0
    if checkpoint is not None:
        state_file = Path(checkpoint) / "trainer_state.json"
        if state_file.exists():
            tokens_before = int(json.loads(state_file.read_text()).get("num_input_tokens_seen", 0))
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out))
    state = trainer.state
    seconds = clock.session()
    tokens = int(state.num_input_tokens_seen) - tokens_before
    stopped_by = (
        "time_budget"
        if budget_callback.stopped
        else "max_steps"
        if config.max_steps and state.global_step >= config.max_steps
        else "epochs"
    )
    summary = {
        "steps": state.global_step,
        "session_steps": clock.steps,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 2) if seconds else 0.0,
        "padding_fraction": round(trainer.padding_fraction(), 4),
        "total_tokens": int(state.num_input_tokens_seen),
        "total_seconds": round(clock.total(), 3),
        "final_loss": callbacks[1].last_loss,
        "stopped_by": stopped_by,
        "examples": len(data.train),
        "eval_examples": len(data.eval),
        "truncated_notes": len(data.truncated),
        "skipped_notes": len(data.skipped),
        "retriever_notes": data.retriever_notes,
        "candidates_per_note": _spread(list(data.candidates.values())),
        "resumed_from": checkpoint,
        "device": "cpu" if args.use_cpu else str(args.device),
        "bf16": bool(args.bf16),
        "processes": args.world_size,
    }
    if main:
        record = {
            "base": _base_spec(config.model, source),
            "mode": config.mode,
            "k": config.k,
            "retriever": RETRIEVER_DIR if config.mode == "candidates" else None,
            "max_seq_len": config.max_seq_len,
            "context": config.context,  # prompts state the setting and patient
            # answers list only the candidates (plain prompts list none)
            "candidates_only": config.candidates_only and config.mode == "candidates",
            "eos_min": config.eos_min,  # where an answer may end (constrained decoding)
            "candidate_order": config.candidate_order,  # the order the prompts list them in
        }
        (out / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_trainer(config, args, model, tokenizer, train_examples, eval_examples, clock, callbacks):
    """The :class:`AnswerTrainer` for encoded examples (also used by the benchmark)."""
    from transformers import PrinterCallback, ProgressCallback

    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=ExampleDataset(train_examples),
        eval_dataset=ExampleDataset(eval_examples) if eval_examples else None,
        data_collator=AnswerCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=callbacks,
        clock=clock,
    )
    trainer.lr_shape = (config.lr_scheduler, config.warmup_steps)
    trainer.kl_weight = config.kl_weight
    trainer.kl_sample = (config.kl_positions, config.kl_window)
    trainer.kl_every = config.kl_every
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    return trainer


def _base_spec(spec: str, source: Any) -> str:
    """The base model as given ('embedded', a hub name), a local folder made absolute; for
    an adapter trained further, that adapter's own base."""
    if source.adapter is not None:
        return source.base
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.is_dir() else spec


def _parameter_counts(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
