"""``medcode serve``: options, errors, and the real command serving a baseline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest


def test_help_lists_the_options(cli):
    status, out, _ = cli("serve", "--help")
    assert status == 0
    for option in ("--model", "--host", "--port", "--workers", "--backend", "--timeout"):
        assert option in out


def test_a_missing_model_is_one_sentence(cli, tmp_path):
    status, _, err = cli("serve", "--model", str(tmp_path / "nowhere"), "--port", "0")
    assert status != 0 and "error:" in err and "Traceback" not in err


def test_a_missing_extra_is_named(cli, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_uvicorn(name, *args, **kwargs):
        if name == "uvicorn":
            raise ImportError("no uvicorn", name="uvicorn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvicorn)
    status, _, err = cli("serve", "--model", "x")
    assert status != 0 and "serve extra" in err and "uvicorn" in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, data: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_medcode_serve_codes_a_note(baseline_folder, tmp_path):
    """The real command in a subprocess on a loopback port, with the shipped lexicon and an
    API key; its log has request ids and no note text."""
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    port = _free_port()
    env = {**os.environ, "MEDCODE_API_KEY": "k1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medcode",
            "serve",
            "--model",
            str(baseline_folder),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a loaded machine starts slowly
        while True:
            try:
                if _get(f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        body = json.dumps({"text": "Essential hypertension, stable. UNIQUEMARKER55"}).encode()
        headers = {"Content-Type": "application/json", "X-API-Key": "k1"}
        status, data = _get(f"{base}/v1/code", body, headers)
        assert status == 200 and data["codes"][0]["code"] == "I10"
        assert data["codes"][0]["evidence"][0]["text"] == "Essential hypertension"
        status, data = _get(f"{base}/v1/code", body, {"Content-Type": "application/json"})
        assert status == 401
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert "request_id=" in output and "UNIQUEMARKER55" not in output


def test_worker_factory_reads_its_config(monkeypatch, baseline_folder):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from medcode.errors import MedcodeError
    from medcode.serve.commands import CONFIG_ENV, worker_app

    monkeypatch.setenv(CONFIG_ENV, json.dumps({"model": str(baseline_folder), "timeout": 5}))
    app = worker_app()
    assert app.service.timeout_s == 5 and app.service.state == "loading"
    monkeypatch.setenv(CONFIG_ENV, json.dumps({"timeout": 5}))
    with pytest.raises(MedcodeError, match="at least a model"):
        worker_app()
