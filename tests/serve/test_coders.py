"""One interface over the baseline and the LLM coders."""

from __future__ import annotations

import json

import pytest

from medcode.errors import MedcodeError
from medcode.serve.coders import BaselineCoder, LLMCoder, is_baseline_folder, load_served_coder


def test_a_baseline_folder_loads_as_the_baseline(baseline_folder):
    assert is_baseline_folder(baseline_folder)
    coder = load_served_coder(str(baseline_folder))
    assert isinstance(coder, BaselineCoder) and coder.kind == "baseline"
    assert coder.confidence is False and coder.name == "model"
    (prediction,) = coder.predict(["Essential hypertension, stable on lisinopril."])
    assert prediction.codes[0] == "I10" and len(prediction.scores) == len(prediction.codes)


def test_what_is_not_a_baseline_folder(tmp_path):
    assert not is_baseline_folder(tmp_path)
    (tmp_path / "model.joblib").write_bytes(b"x")
    (tmp_path / "config.json").write_text(json.dumps({"kind": "other"}))
    assert not is_baseline_folder(tmp_path)
    with pytest.raises(MedcodeError, match="without a baseline config"):
        load_served_coder(str(tmp_path))
    (tmp_path / "config.json").write_text("{broken")
    assert not is_baseline_folder(tmp_path)


def test_an_llm_folder_loads_as_an_llm_coder(tiny_model):
    coder = load_served_coder(str(tiny_model), batch_size=2)
    assert isinstance(coder, LLMCoder) and coder.kind == "llm" and coder.confidence is True
    assert coder.max_batch == 2
    coder.coder.max_new_tokens = 12
    (prediction,) = coder.predict(["Type 2 diabetes."], ["n1"])
    assert all(code in coder.coder.validator.codes for code in prediction.codes)


def test_llm_over_http(serve, tiny_model, lexicon):
    """The tiny random LLM behind the API: whatever it decodes is a valid code."""
    from medcode.serve.app import create_app

    coder = load_served_coder(str(tiny_model), batch_size=4)
    coder.coder.max_new_tokens = 12
    live = serve(create_app(coder, lexicon=lexicon))
    reply = live.call("POST", "/v1/code", {"text": "Type 2 diabetes with CKD stage 3a."})
    assert reply.status == 200, reply.body
    for code in reply.data["codes"]:
        assert code["system"] in ("ICD-10-CM", "CPT", "HCPCS")
        assert 0.0 <= code["confidence"] <= 1.0 and code["score"] is None
