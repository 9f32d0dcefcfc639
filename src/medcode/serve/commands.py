"""``medcode serve``: the coding service under uvicorn."""

from __future__ import annotations

import json
import logging
import os
from typing import Annotated, Any

import typer

from medcode.errors import MedcodeError

CONFIG_ENV = "MEDCODE_SERVE_CONFIG"  # how `--workers N` hands the options to each worker
KEY_ENV = "MEDCODE_API_KEY"
DEFAULTS: dict[str, Any] = {
    "backend": "hf",
    "base_url": None,
    "backend_key": None,
    "batch_size": 8,
    "device": None,
    "max_bytes": 1_000_000,
    "timeout": 30.0,
    "log_level": "info",
}


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise MedcodeError(
            f"medcode serve needs the serve extra ({error.name} is missing): "
            "scripts/install.sh serve"
        ) from None


def configure_logging(level: str = "info") -> None:
    """One line per event on stderr; the service logs ids and timings, never note text."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


def build_app(options: dict[str, Any], *, load_now: bool) -> Any:
    """The app for ``options`` (the command's): the coder is loaded here when ``load_now``
    (errors reach the command line), else in the background (workers)."""
    from medcode.serve.app import create_app
    from medcode.serve.coders import load_served_coder

    def loader():
        return load_served_coder(
            options["model"],
            backend=options["backend"],
            base_url=options["base_url"],
            api_key=options["backend_key"],
            batch_size=options["batch_size"],
            device=options["device"],
        )

    limits = {
        "api_key": os.environ.get(KEY_ENV) or None,
        "max_bytes": options["max_bytes"],
        "timeout_s": options["timeout"],
    }
    if load_now:
        return create_app(loader(), **limits)
    return create_app(loader=loader, **limits)


def worker_app() -> Any:
    """uvicorn factory for ``--workers N`` (or ``uvicorn medcode.serve.commands:worker_app
    --factory``): each worker process builds its own app from ``$MEDCODE_SERVE_CONFIG``, a JSON
    object with at least ``model`` (other keys: :data:`DEFAULTS`)."""
    try:
        options = {**DEFAULTS, **json.loads(os.environ[CONFIG_ENV])}
        if not options.get("model"):
            raise KeyError("model")
    except (KeyError, ValueError, TypeError) as error:
        raise MedcodeError(
            f"{CONFIG_ENV} must be a JSON object with at least a model ({error})"
        ) from None
    configure_logging(options["log_level"])
    return build_app(options, load_now=False)


def serve(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="A baseline folder (medcode baseline train), 'embedded', a Hugging Face model "
            "folder or an adapter folder (medcode train); with --backend openai the served "
            "model name.",
        ),
    ],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Processes, each with its own model.")
    ] = 1,
    backend: Annotated[
        str, typer.Option("--backend", help="LLM backend: hf (here) or openai (a server).")
    ] = "hf",
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            envvar="MEDCODE_BASE_URL",
            help="OpenAI-compatible server for --backend openai, e.g. http://vllm:8000/v1.",
        ),
    ] = None,
    backend_key: Annotated[
        str | None,
        typer.Option("--backend-key", envvar="OPENAI_API_KEY", help="Key of that server."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="LLM: notes coded together.")
    ] = 8,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 ...")] = None,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", min=1024, help="Largest request body accepted.")
    ] = 1_000_000,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds a request may take (504 after).")
    ] = 30.0,
    keep_alive: Annotated[
        int,
        typer.Option(
            "--keep-alive",
            min=1,
            help="Seconds an idle connection is kept (behind a load balancer: above its idle "
            "timeout).",
        ),
    ] = 5,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Serve a coder over HTTP: REST API, FHIR output and the review page (/review).

    Set MEDCODE_API_KEY to require that key (X-API-Key header) on the API."""
    _require_extra()
    import uvicorn

    configure_logging(log_level)
    options = {
        "model": model,
        "backend": backend,
        "base_url": base_url,
        "backend_key": backend_key,
        "batch_size": batch_size,
        "device": device,
        "max_bytes": max_bytes,
        "timeout": timeout,
        "log_level": log_level,
    }
    common = {
        "host": host,
        "port": port,
        "access_log": False,  # the service logs each request itself (ids and timings only)
        "log_level": log_level,
        "timeout_keep_alive": keep_alive,
    }
    if workers == 1:
        uvicorn.run(build_app(options, load_now=True), **common)
        return
    os.environ[CONFIG_ENV] = json.dumps(options)
    uvicorn.run("medcode.serve.commands:worker_app", factory=True, workers=workers, **common)
