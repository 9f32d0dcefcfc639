"""``medcode train``: fine-tune a LoRA adapter from a recipe (YAML) plus ``key=value``
overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

DEFAULT_RECIPE = Path("configs/cpu/gemma3_270m_lora.yaml")

console = Console()


def train(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="Recipe keys to override, key=value (e.g. max_steps=20 lora_r=8 mode=plain).",
            show_default=False,
        ),
    ] = None,
    recipe: Annotated[
        Path,
        typer.Option("--recipe", help="Training recipe (YAML): configs/cpu/... or configs/gpu/..."),
    ] = DEFAULT_RECIPE,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run folder (overrides the recipe's out).")
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            min=0,
            help="Minutes of training: stop, checkpoint and save the adapter when spent.",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint in the run folder.")
    ] = False,
) -> None:
    """Fine-tune a model with LoRA on a synthetic corpus (answer-only loss, LM head applied
    only at answer tokens); writes the adapter, medcode_model.json, config.yaml,
    train_log.jsonl and train_summary.json to the run folder."""
    from medcode.model.train import train as run_training
    from medcode.model.train_config import TrainConfig

    config = TrainConfig.load(recipe, list(overrides or []))
    if out is not None:
        config.out = str(out)
    if time_budget is not None:
        config.time_budget_minutes = time_budget
    summary = run_training(config, resume=resume)
    console.print(
        f"trained {summary['steps']:,} steps ({summary['tokens']:,} tokens in "
        f"{summary['seconds']:,.0f} s: {summary['tokens_per_second']:,.1f} tokens/s, "
        f"padding {summary['padding_fraction']:.1%}, stopped by {summary['stopped_by']}); "
        f"adapter in {config.out}"
    )
