"""Decoding constrained to valid codes: a prefix trie over the code set, spelled in token ids.

The target text is codes one per line, then the end-of-sequence token (``prompt.py``). Each
code is tokenised as it appears there (after a newline, followed by a newline), so the trie
holds the exact token sequences a model is trained to write, newline included: for Gemma
``E11.22`` is ``E 1 1 . 2 2 \\n``, but letter pairs merge (``S72.001XA`` ends ``... 1 XA \\n``),
and the trie follows the tokenizer, not an assumption about it.

The decoding state machine, per row: at a line start the allowed tokens are the first tokens
of codes not yet written, or EOS (stop); inside a code, the trie children; at a complete code,
the children (a longer code) or the newline that ends it. A code already written cannot be
written again (each node counts the codes below it). Nothing else can be produced, so every
decoded code is valid by construction.

Decoding runs the model body with a KV cache and applies the output head to the last position
only, over the union of the batch's allowed tokens (a few dozen rows of Gemma's 262k).
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from medcode.model.head import head_logits, hidden_states, unwrap
from medcode.model.prompt import parse_codes

NEWLINE = "\n"


# --------------------------------------------------------------------------- the code set


def _icd_release() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("simple-icd-10-cm")
    except PackageNotFoundError:  # pragma: no cover - the package is a dependency
        return "unknown"


def billable_icd10cm() -> list[str]:
    """Every billable ICD-10-CM code in dotted form (``E11.22``), sorted; read from a disk
    cache keyed by the ``simple-icd-10-cm`` release (loading the tabular takes seconds)."""
    from medcode.model.loading import cache_dir

    path = cache_dir() / "codesets" / f"icd10cm-billable-{_icd_release()}.txt"
    try:
        codes = path.read_text(encoding="utf-8").split()
        if codes:
            return codes
    except OSError:
        pass
    from medcode.terminology import icd10cm

    tabular = icd10cm.tabular()
    codes = sorted({icd10cm.normalize(c) for c in icd10cm.all_codes() if tabular.is_leaf(c)})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".tmp-{id(codes)}")
        staging.write_text("\n".join(codes) + "\n", encoding="utf-8")
        staging.replace(path)
    except OSError:
        pass  # a read-only cache only costs time
    return codes


def code_set() -> frozenset[str]:
    """The codes a coder may output: billable ICD-10-CM (dotted) plus the CPT/HCPCS table
    (including a licensed CPT file given through ``$MEDCODE_CPT_FILE``)."""
    from medcode.terminology import cpt

    return _code_set(tuple(cpt.procedure_table()))


@cache
def _code_set(procedures: tuple[str, ...]) -> frozenset[str]:
    return frozenset(billable_icd10cm()) | frozenset(procedures)


# --------------------------------------------------------------------------- the trie


def _encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(list(texts), add_special_tokens=False)]
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


class CodeTrie:
    """Token-id prefix trie over ``code + newline`` as the tokenizer spells it after a newline.

    Nodes are integers (0 is the root, a line start); ``children[n]`` maps token id to child;
    ``count[n]`` is the number of codes below ``n``; ``code_at[n]`` is the code completed
    when ``n`` is reached (its newline written), after which decoding is back at the root.
    """

    def __init__(self, codes: Iterable[str], tokenizer: Any) -> None:
        codes = sorted(set(codes))
        prefix = _encode(tokenizer, [NEWLINE])[0]
        if not prefix:
            raise ValueError("the tokenizer writes nothing for a newline")
        self.eos_id = int(tokenizer.eos_token_id)
        self.children: list[dict[int, int]] = [{}]
        self.count: list[int] = [0]
        self.code_at: dict[int, str] = {}
        self.sequences: dict[str, tuple[int, ...]] = {}
        children, count = self.children, self.count
        for code, ids in zip(
            codes, _encode(tokenizer, [f"{NEWLINE}{c}{NEWLINE}" for c in codes]), strict=True
        ):
            if ids[: len(prefix)] != prefix:
                raise ValueError(
                    f"the tokenizer merges a newline with the code after it ({code!r}): "
                    "codes are not spelled the same at every line start"
                )
            sequence = tuple(ids[len(prefix) :])
            if not sequence:
                continue
            self.sequences[code] = sequence
            node = 0
            count[0] += 1
            for token in sequence:
                child = children[node].get(token)
                if child is None:
                    child = len(children)
                    children[node][token] = child
                    children.append({})
                    count.append(0)
                node = child
                count[node] += 1
            if children[node] or node in self.code_at:
                raise ValueError(f"{code!r}: its spelling is a prefix of another code's")
            self.code_at[node] = code
        if self.eos_id in children[0]:
            raise ValueError("a code starts with the end-of-sequence token")

    def __len__(self) -> int:
        return len(self.code_at)

    @property
    def tokens(self) -> frozenset[int]:
        """Every token id a code can use, plus EOS."""
        found = {self.eos_id}
        for node in self.children:
            found.update(node)
        return frozenset(found)

    def spell(self, codes: Sequence[str]) -> list[int]:
        """The token ids of an answer listing ``codes`` (without EOS)."""
        return [token for code in codes for token in self.sequences[code]]

    def walk(self, tokens: Iterable[int]) -> int | None:
        """The node reached from the root by ``tokens``, or None when it leaves the trie."""
        node = 0
        for token in tokens:
            node = self.children[node].get(token)
            if node is None:
                return None
        return node

    def state(self, max_codes: int | None = None) -> DecodeState:
        return DecodeState(self, max_codes)


_tries: weakref.WeakKeyDictionary[Any, tuple[frozenset[str], CodeTrie]] = (
    weakref.WeakKeyDictionary()
)
_by_fingerprint: dict[tuple[str, frozenset[str]], CodeTrie] = {}


def _fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's rules and vocabulary (another instance of the same tokenizer,
    e.g. after reloading the model, reuses the trie)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(f"{tokenizer.eos_token_id}|{text}".encode()).hexdigest()


def trie_for(tokenizer: Any, codes: Iterable[str] | None = None) -> CodeTrie:
    """The trie of ``codes`` (default :func:`code_set`) for ``tokenizer``, built once per
    tokenizer and code set (about a second for the 75k codes once the code set is cached on
    disk) and kept in memory for the tokenizer object and for its fingerprint."""
    codes = code_set() if codes is None else frozenset(codes)
    try:
        held = _tries.get(tokenizer)
    except TypeError:  # not weak-referenceable
        held = None
    if held is not None and held[0] == codes:
        return held[1]
    key = (_fingerprint(tokenizer), codes)
    trie = _by_fingerprint.get(key)
    if trie is None:
        trie = CodeTrie(codes, tokenizer)
        if len(_by_fingerprint) >= 2:  # a trie of the full code set holds ~65 MB
            _by_fingerprint.pop(next(iter(_by_fingerprint)))
        _by_fingerprint[key] = trie
    with contextlib.suppress(TypeError):
        _tries[tokenizer] = (codes, trie)
    return trie


@dataclass
class DecodeState:
    """Where one row is in the answer: the current node, the codes written and their token
    probabilities, and whether it has stopped."""

    trie: CodeTrie
    max_codes: int | None = None
    node: int = 0
    codes: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    done: bool = False
    finished: bool = False  # stopped by EOS (not by a limit)
    tokens: int = 0  # generated so far, EOS included
    ends: list[tuple[float, float]] = field(default_factory=list)  # see Decoded.ends
    _written: dict[int, int] = field(default_factory=dict)
    _path: list[int] = field(default_factory=list)
    _probability: float = 1.0

    def allowed(self) -> list[int]:
        """Token ids allowed next (empty once done)."""
        if self.done:
            return []
        trie, written = self.trie, self._written
        at_start = self.node == 0
        if at_start and self.max_codes is not None and len(self.codes) >= self.max_codes:
            return [trie.eos_id]
        allowed = [
            token
            for token, child in trie.children[self.node].items()
            if written.get(child, 0) < trie.count[child]
        ]
        if at_start:
            allowed.append(trie.eos_id)
        return allowed

    def advance(self, token: int, probability: float = 1.0) -> None:
        """Write ``token`` (which must be allowed)."""
        trie = self.trie
        self.tokens += 1
        if self.node == 0 and token == trie.eos_id:
            self.done = self.finished = True
            return
        child = trie.children[self.node].get(token)
        if child is None:
            raise ValueError(f"token {token} is not allowed here")
        self._path.append(child)
        self._probability *= probability
        self.node = child
        code = trie.code_at.get(child)
        if code is not None:
            self.codes.append(code)
            self.scores.append(self._probability)
            self._written[0] = self._written.get(0, 0) + 1
            for node in self._path:
                self._written[node] = self._written.get(node, 0) + 1
            self._path, self._probability, self.node = [], 1.0, 0

    def stop(self) -> None:
        """Stop at a limit: a code being written is dropped."""
        self.done = True


# --------------------------------------------------------------------------- decoding


@dataclass
class Decoded:
    """One answer: codes, a confidence per code (None for unconstrained decoding), whether the
    model stopped by itself (EOS) rather than at ``max_new_tokens``, the raw text and the
    number of tokens generated."""

    codes: list[str]
    scores: list[float] | None
    finished: bool
    text: str = ""
    tokens: int = 0
    # constrained only: before code i (and after the last one), where the answer could end,
    # the probability of the end and of the likeliest code token
    ends: list[tuple[float, float]] = field(default_factory=list)

    def cut(self, eos_min: float) -> Decoded:
        """The answer greedy decoding gives with ``eos_min`` (its stop rule: the end is the
        likeliest token and at least ``eos_min`` likely), from an answer decoded with a
        higher ``eos_min``: the codes up to that point are the same, as each step takes the
        likeliest code token whenever it does not end (see :func:`constrained_generate`)."""
        for index, (end, code) in enumerate(self.ends):
            if end >= code and end >= eos_min and index < len(self.codes):
                codes = self.codes[:index]
                scores = None if self.scores is None else self.scores[:index]
                text = "".join(f"{c}{NEWLINE}" for c in codes)
                return Decoded(codes, scores, True, text, self.tokens, self.ends[: index + 1])
        return self


def _encode_prompts(tokenizer: Any, prompts: Sequence[str], device: Any) -> tuple[Any, Any]:
    encoded = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left").to(
        device
    )
    return encoded["input_ids"], encoded["attention_mask"]


def constrained_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    trie: CodeTrie | None = None,
    max_new_tokens: int = 256,
    max_codes: int | None = 32,
    eos_min: float = 0.0,
    tries: Sequence[CodeTrie] | None = None,
) -> list[Decoded]:
    """Greedy decoding of one batch of prompts, constrained to the codes of ``trie`` (default:
    the full code set), or of ``tries``, one per prompt (e.g. each note's candidates). A
    code's score is its probability under the constrained distribution: the product of its
    tokens' probabilities, each a softmax over the allowed tokens only. With ``eos_min`` the
    answer ends only when the end is at least that likely between codes (else the likeliest
    next code is written): a model that stops early lists more."""
    import torch
    from transformers import DynamicCache

    if not prompts:
        return []
    if tries is not None and len(tries) != len(prompts):
        raise ValueError(f"{len(tries)} tries for {len(prompts)} prompts")
    trie = tries[0] if tries else (trie or trie_for(tokenizer))
    device = next(model.parameters()).device
    ids, mask = _encode_prompts(tokenizer, prompts, device)
    states = [t.state(max_codes) for t in (tries or [trie] * len(prompts))]
    rows = list(range(len(prompts)))  # the states still decoding, in batch order
    cache = DynamicCache(config=unwrap(model).config)
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        hidden = hidden_states(
            model, ids, mask, position_ids=positions, cache=cache, use_cache=True
        )[:, -1]
        next_position = positions[:, -1:] + 1
        for step_number in range(max_new_tokens):
            allowed = [states[row].allowed() for row in rows]
            union = sorted(set().union(*allowed))
            where = {token: column for column, token in enumerate(union)}
            keep = torch.zeros(len(rows), len(union), dtype=torch.bool)
            for index, tokens in enumerate(allowed):
                keep[index, [where[t] for t in tokens]] = True
            logits = head_logits(model, hidden, torch.tensor(union, device=device)).float()
            logits = logits.masked_fill(~keep.to(device), float("-inf"))
            probabilities = torch.softmax(logits, dim=-1)
            best = probabilities.argmax(dim=-1)
            if eos_min > 0 and trie.eos_id in where:
                best = _unless_weak_end(probabilities, best, where[trie.eos_id], eos_min)
            if trie.eos_id in where:
                _note_ends(states, rows, probabilities, where[trie.eos_id])
            chosen = [union[c] for c in best.tolist()]
            best_p = probabilities.gather(-1, best[:, None]).squeeze(-1).tolist()
            for row, token, p in zip(rows, chosen, best_p, strict=True):
                states[row].advance(token, p)
            alive = [i for i, row in enumerate(rows) if not states[row].done]
            if not alive or step_number == max_new_tokens - 1:
                break
            step = torch.tensor(chosen, device=device)[:, None]
            if len(alive) < len(rows):
                index = torch.tensor(alive, device=device)
                cache.batch_select_indices(index)
                mask, step, next_position = mask[index], step[index], next_position[index]
                rows = [rows[i] for i in alive]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=-1)
            hidden = hidden_states(
                model, step, mask, position_ids=next_position, cache=cache, use_cache=True
            )[:, -1]
            next_position = next_position + 1
    for row in rows:
        states[row].stop()
    return [
        Decoded(
            list(s.codes),
            list(s.scores),
            s.finished,
            "".join(f"{c}{NEWLINE}" for c in s.codes),
            s.tokens,
            s.ends,
        )
        for s in states
    ]


def _note_ends(states: list[DecodeState], rows: list[int], probabilities: Any, eos: int) -> None:
    """For each row between codes, the end's probability and the likeliest code token's."""
    others = probabilities.clone()
    others[:, eos] = 0.0
    end_p = probabilities[:, eos].tolist()
    code_p = others.max(dim=-1).values.tolist()
    for index, row in enumerate(rows):
        state = states[row]
        if state.node == 0 and not state.done and code_p[index] > 0:
            state.ends.append((end_p[index], code_p[index]))


def _unless_weak_end(probabilities: Any, best: Any, eos: int, eos_min: float) -> Any:
    """``best`` with an end less likely than ``eos_min`` replaced by the likeliest other
    allowed token (where there is one)."""
    import torch

    weak = (best == eos) & (probabilities[:, eos] < eos_min)
    if not bool(weak.any()):
        return best
    others = probabilities.clone()
    others[:, eos] = -1.0
    alternative = others.argmax(dim=-1)
    allowed = others.gather(-1, alternative[:, None]).squeeze(-1) > 0
    return torch.where(weak & allowed, alternative, best)


def plain_generate(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 256
) -> list[Decoded]:
    """Unconstrained greedy ``model.generate`` (full-vocabulary head), codes parsed from the
    text with :func:`parse_codes`: for comparison, and for models whose codes are not in the
    code set."""
    import torch
    from transformers import GenerationConfig

    if not prompts:
        return []
    device = next(model.parameters()).device
    ids, mask = _encode_prompts(tokenizer, prompts, device)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.inference_mode():
        output = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    results = []
    for row in output[:, ids.shape[1] :].tolist():
        finished = tokenizer.eos_token_id in row
        if finished:
            row = row[: row.index(tokenizer.eos_token_id)]
        text = tokenizer.decode(row, skip_special_tokens=True)
        results.append(Decoded(parse_codes(text), None, finished, text, len(row) + finished))
    return results
