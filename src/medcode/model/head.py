"""Run a causal LM's body and its output head separately, so the head (Gemma's 262k-row
vocabulary projection: over half the model) is applied only where it is needed: at labelled
positions when training or scoring, and over the allowed tokens only when decoding."""

from __future__ import annotations

from typing import Any


def unwrap(model: Any) -> Any:
    """The transformers ``*ForCausalLM`` inside a PEFT wrapper (LoRA layers stay active)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def hidden_states(model: Any, input_ids: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    """Final hidden states ``[batch, length, hidden]`` from the model body (no head)."""
    body = unwrap(model).get_decoder()
    return body(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state


def head_logits(model: Any, hidden: Any, token_ids: Any = None) -> Any:
    """Logits for ``hidden`` ``[..., hidden]``: over the whole vocabulary, or only over
    ``token_ids`` (a 1-D tensor of vocabulary ids) when given."""
    import torch

    inner = unwrap(model)
    weight = inner.get_output_embeddings().weight
    if token_ids is not None:
        weight = weight.index_select(0, token_ids)
    logits = torch.nn.functional.linear(hidden, weight.to(hidden.dtype))
    cap = getattr(inner.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def token_log_probs(model: Any, hidden: Any, targets: Any, chunk: int = 256) -> Any:
    """Log-probability of each ``targets[i]`` given ``hidden[i]`` (both flattened over
    positions), computing the full-vocabulary softmax ``chunk`` positions at a time."""
    import torch

    pieces = []
    for start in range(0, hidden.shape[0], chunk):
        logits = head_logits(model, hidden[start : start + chunk]).float()
        picked = logits.gather(-1, targets[start : start + chunk, None]).squeeze(-1)
        pieces.append(picked - torch.logsumexp(logits, dim=-1))
    return torch.cat(pieces) if pieces else hidden.new_zeros(0)
