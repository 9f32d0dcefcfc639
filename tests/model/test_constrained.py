"""The code trie, its decoding state machine and constrained decoding with a tiny model."""

import pytest

from medcode.model import constrained
from medcode.model.constrained import CodeTrie, code_set, constrained_generate, trie_for
from medcode.model.prompt import ANSWER_HEADER, build_prompt

pytest.importorskip("transformers")

SMALL = ["E11.9", "E11.22", "E11.21", "I10", "N18.31", "99214", "99213", "G0438", "S72.001A"]
NOTES = [
    "Type 2 diabetes with diabetic CKD stage 3a; hypertension. Established patient, moderate MDM.",
    "Annual wellness visit, subsequent.",
    "Closed fracture of right femoral neck, initial encounter. " * 3,
]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from medcode.model.loading import load

    return load(str(tiny_model), device="cpu")


@pytest.fixture(scope="module")
def small_trie(tiny):
    return CodeTrie(SMALL, tiny.tokenizer)


def write(state, trie, code):
    for token in trie.sequences[code]:
        assert token in state.allowed()
        state.advance(token)


def test_every_code_decodes_exactly(small_trie):
    for code in SMALL:
        state = small_trie.state()
        write(state, small_trie, code)
        assert state.codes == [code]
        assert state.node == 0
    assert len(small_trie) == len(SMALL)


def test_invalid_prefixes_are_impossible(tiny, small_trie):
    encode = tiny.tokenizer.convert_tokens_to_ids
    state = small_trie.state()
    assert sorted(state.allowed()) == sorted(encode(["E", "I", "N", "9", "G", "S", "<eos>"]))
    for character in "E11.":
        state.advance(encode(character))
    assert sorted(state.allowed()) == sorted(encode(["9", "2"]))
    state.advance(encode("9"))
    assert state.allowed() == [encode("\n")]  # E11.9 is complete: only the newline
    with pytest.raises(ValueError):
        state.advance(encode("9"))  # E11.99 does not exist


def test_eos_only_at_line_start(small_trie):
    eos = small_trie.eos_id
    state = small_trie.state()
    assert eos in state.allowed()
    for token in small_trie.sequences["99214"]:
        state.advance(token)
        assert (eos in state.allowed()) == (state.node == 0)
    state.advance(eos)
    assert state.done and state.finished and state.codes == ["99214"]
    assert state.allowed() == []


def test_codes_are_not_repeated_and_max_codes_holds(tiny):
    trie = CodeTrie(["E11.9", "E11.22", "I10"], tiny.tokenizer)
    encode = tiny.tokenizer.convert_tokens_to_ids
    state = trie.state()
    write(state, trie, "I10")
    assert encode("I") not in state.allowed()  # every I code written
    write(state, trie, "E11.9")
    for character in "E11.":
        state.advance(encode(character))
    assert state.allowed() == [encode("2")]  # E11.9 already written
    limited = trie.state(max_codes=1)
    write(limited, trie, "E11.22")
    assert limited.allowed() == [trie.eos_id]


def test_spelling_is_context_independent(tiny):
    """A code is spelled the same wherever it appears in an answer (after a newline)."""
    tokenizer = tiny.tokenizer
    trie = CodeTrie(SMALL, tokenizer)
    answer = ["E11.22", "N18.31", "99214", "S72.001A", "I10"]
    header = tokenizer(ANSWER_HEADER, add_special_tokens=False)["input_ids"]
    whole = tokenizer(ANSWER_HEADER + "".join(f"{c}\n" for c in answer), add_special_tokens=False)
    assert whole["input_ids"] == header + trie.spell(answer)


def test_full_code_set_trie(tiny):
    codes = code_set()
    assert "E11.22" in codes and "99214" in codes and "G0438" in codes
    assert "E11.2" not in codes  # not billable
    trie = trie_for(tiny.tokenizer)
    assert trie is trie_for(tiny.tokenizer)  # cached per tokenizer
    assert len(trie) == len(codes)
    assert trie.walk(trie.sequences["E11.22"]) in trie.code_at


def test_head_over_allowed_ids_equals_full_head(tiny):
    import torch

    from medcode.model.head import head_logits, hidden_states

    encoded = tiny.tokenizer([build_prompt(NOTES[0])], return_tensors="pt")
    with torch.inference_mode():
        hidden = hidden_states(tiny.model, encoded["input_ids"], encoded["attention_mask"])
        full = tiny.model(**encoded).logits
        ids = torch.tensor(sorted(trie_for(tiny.tokenizer).tokens))
        some = head_logits(tiny.model, hidden[:, -1], ids)
        whole = head_logits(tiny.model, hidden[:, -1])
    torch.testing.assert_close(some, full[:, -1, ids])
    torch.testing.assert_close(some, whole[:, ids])


def test_constrained_decoding_emits_only_valid_codes(tiny):
    codes = code_set()
    prompts = [build_prompt(note) for note in NOTES]
    batch = constrained_generate(tiny.model, tiny.tokenizer, prompts, max_new_tokens=24)
    assert any(answer.codes for answer in batch)
    for answer in batch:
        assert all(code in codes for code in answer.codes)
        assert len(set(answer.codes)) == len(answer.codes)
        assert len(answer.scores) == len(answer.codes)
        assert all(0.0 < s <= 1.0 for s in answer.scores)
        assert answer.text == "".join(f"{c}\n" for c in answer.codes)
    singles = [
        constrained_generate(tiny.model, tiny.tokenizer, [p], max_new_tokens=24)[0] for p in prompts
    ]
    assert [s.codes for s in singles] == [a.codes for a in batch]  # batching changes nothing
    for single, batched in zip(singles, batch, strict=True):
        assert single.scores == pytest.approx(batched.scores, rel=1e-3)
    again = constrained_generate(tiny.model, tiny.tokenizer, prompts[:1], max_new_tokens=24)
    assert again[0].codes == singles[0].codes and again[0].scores == singles[0].scores


def test_cached_decoding_matches_full_forward(tiny):
    """Each token decoded with the KV cache (left-padded batch) is the argmax, over the allowed
    tokens, of a plain forward pass over the whole text."""
    import torch

    trie = trie_for(tiny.tokenizer)
    prompts = [build_prompt(NOTES[0]), build_prompt(NOTES[1])]  # different lengths: padding
    answers = constrained_generate(
        tiny.model, tiny.tokenizer, prompts, trie=trie, max_new_tokens=30, max_codes=None
    )
    for prompt, answer in zip(prompts, answers, strict=True):
        prompt_ids = tiny.tokenizer(prompt)["input_ids"]
        written = trie.spell(answer.codes)
        with torch.inference_mode():
            logits = tiny.model(torch.tensor([prompt_ids + written])).logits[0]
        state = trie.state()
        for offset, token in enumerate(written):
            allowed = state.allowed()
            row = logits[len(prompt_ids) + offset - 1, allowed]
            assert allowed[int(row.argmax())] == token
            state.advance(token)


def test_a_weak_end_gives_way_to_the_likeliest_code():
    import torch

    from medcode.model.constrained import _unless_weak_end

    # columns: EOS (0) and two codes' first tokens; row 3 may only end
    probabilities = torch.tensor(
        [[0.6, 0.3, 0.1], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [1.0, 0.0, 0.0]]
    )
    best = probabilities.argmax(dim=-1)
    kept = _unless_weak_end(probabilities, best, 0, 0.8)
    assert kept.tolist() == [1, 0, 1, 0]  # 0.6 < 0.8: the code instead; 0.9 ends; nothing else
    assert _unless_weak_end(probabilities, best, 0, 0.5).tolist() == best.tolist()


def test_eos_min_lists_at_least_as_many_codes(tiny):
    prompts = [build_prompt(note) for note in NOTES]
    first_end = constrained_generate(tiny.model, tiny.tokenizer, prompts, max_new_tokens=40)
    confident = constrained_generate(
        tiny.model, tiny.tokenizer, prompts, max_new_tokens=40, eos_min=0.99
    )
    for early, late in zip(first_end, confident, strict=True):
        if early.finished:  # the same greedy path up to where the early answer ended
            assert late.codes[: len(early.codes)] == early.codes
            assert len(late.codes) >= len(early.codes)


def test_cut_stops_where_the_rule_first_holds():
    from medcode.model.constrained import Decoded

    answer = Decoded(
        ["A", "B", "C"], [0.9, 0.8, 0.7], False, "A\nB\nC\n", 12,
        [(0.1, 0.8), (0.6, 0.3), (0.95, 0.05), (0.97, 0.01)],
    )  # fmt: skip
    assert answer.cut(0.0).codes == ["A"]  # the end is likeliest before B
    assert answer.cut(0.0).scores == [0.9] and answer.cut(0.0).finished
    assert answer.cut(0.0).text == "A\n" and answer.cut(0.0).ends == answer.ends[:2]
    assert answer.cut(0.9).codes == ["A", "B"]  # 0.6 is too weak an end; 0.95 is not
    assert answer.cut(0.99) is answer  # nowhere strong enough: the answer as decoded


def test_a_never_ending_answer_cut_equals_decoding_with_the_rule(tiny, monkeypatch):
    import torch

    head, eos = constrained.head_logits, trie_for(tiny.tokenizer).eos_id

    def ending_head(model, hidden, ids):  # the random model never ends: give the end a chance
        logits = head(model, hidden, ids)
        push = 4 * torch.sin(logits.float().sum(dim=-1) * 7)  # varies from step to step
        return logits + push[:, None] * (ids == eos).to(logits.dtype)[None, :]

    monkeypatch.setattr(constrained, "head_logits", ending_head)
    prompts = [build_prompt(note) for note in NOTES]
    settings = {"max_new_tokens": 200, "max_codes": 6}
    never = constrained_generate(tiny.model, tiny.tokenizer, prompts, eos_min=1.01, **settings)
    for answer in never:
        assert len(answer.ends) >= len(answer.codes)  # one before each code at least
        assert all(0 <= end <= 1 and 0 < code <= 1 for end, code in answer.ends)
    lengths = []
    for eos_min in (0.0, 0.3, 0.9):
        direct = constrained_generate(
            tiny.model, tiny.tokenizer, prompts, eos_min=eos_min, **settings
        )
        for cut_from, decoded in zip(never, direct, strict=True):
            assert cut_from.cut(eos_min).codes == decoded.codes
        lengths.append([len(answer.codes) for answer in direct])
    assert lengths[0] != lengths[-1]  # the rule mattered: the cut was tested


def test_token_limit_drops_the_partial_code(tiny):
    prompts = [build_prompt(NOTES[0])]
    answer = constrained_generate(tiny.model, tiny.tokenizer, prompts, max_new_tokens=9)[0]
    assert not answer.finished
    assert all(code in code_set() for code in answer.codes)
    assert sum(len(trie_for(tiny.tokenizer).sequences[c]) for c in answer.codes) <= 9


def test_plain_generate_parses_text(tiny):
    answer = constrained.plain_generate(
        tiny.model, tiny.tokenizer, [build_prompt(NOTES[1])], max_new_tokens=8
    )[0]
    assert answer.scores is None
    assert isinstance(answer.text, str)


@pytest.mark.slow
def test_embedded_model_decodes_valid_codes():
    from medcode.model.loading import load

    loaded = load("embedded")
    tokenizer = loaded.tokenizer
    trie = trie_for(tokenizer)
    sample = ["E11.22", "N18.31", "99214", "S72.001A", "M1A.9XX0", "G0438", "C84.AA", "I10"]
    header = tokenizer(ANSWER_HEADER, add_special_tokens=False)["input_ids"]
    whole = tokenizer(ANSWER_HEADER + "".join(f"{c}\n" for c in sample), add_special_tokens=False)
    assert whole["input_ids"] == header + trie.spell(sample)
    answer = constrained_generate(
        loaded.model, tokenizer, [build_prompt(NOTES[0])], trie=trie, max_new_tokens=48
    )[0]
    assert answer.codes
    assert all(code in code_set() for code in answer.codes)
