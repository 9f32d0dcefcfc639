"""Phrasing pools (``data/synth/phrasings.yaml``): the variants of the templates' stock
sentences, the clinicians' names for procedures and the wordings of the normal exam
statements, validated on load.

A template calls ``{{ say('med_rec') }}`` for one variant of the pool ``med_rec``,
``{{ say.exam(finding) }}`` (or a list of findings) for a wording of a normal exam statement;
the renderer names a procedure with :meth:`Say.procedure`. Choices come from a random
generator derived from the note's own one without drawing from it, so a note's facts are the
same with or without the pools and a seed gives the same text.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from medcode.errors import DataFileError, MedcodeError

MIN_VARIANTS, MAX_VARIANTS = 8, 20
MIN_EXAM, MAX_ALIASES = 4, 20
# The names a variant may leave for the note to fill ("{Pronoun} knows to call sooner").
FIELDS = frozenset({"pronoun", "Pronoun", "possessive", "Possessive", "noun", "title"})
_KEY = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$")
_SECTIONS = {"pools", "procedures", "exam"}


@dataclass(frozen=True)
class Pool:
    key: str
    variants: tuple[str, ...]
    # words of the MDM/data denylist the pool may use because the template said them already
    allow: frozenset[str]
    line: int


@dataclass(frozen=True)
class Phrasings:
    path: str
    pools: dict[str, Pool]
    procedures: dict[str, tuple[str, ...]]  # CPT/HCPCS code -> clinicians' names for it
    exam: dict[str, tuple[str, ...]]  # a normal exam statement -> its other wordings

    def aliases(self, code: str, description: str) -> tuple[str, ...]:
        """Every name a note may print for a procedure: its description, then its aliases."""
        return (description, *self.procedures.get(code, ()))


def phrasings_path() -> Path:
    from medcode.datafiles import package_data

    return package_data("synth/phrasings.yaml")


@cache
def shipped_phrasings() -> Phrasings:
    return load_phrasings(phrasings_path())


def load_phrasings(path: str | Path | None = None) -> Phrasings:
    """Read and validate a phrasings file (the shipped one unless ``path``): any problem
    raises :class:`DataFileError` with the file and line."""
    from medcode.datafiles import load_yaml

    path = Path(path) if path is not None else phrasings_path()
    data = load_yaml(path, strings=True)
    if not isinstance(data, dict):
        raise DataFileError(path, None, f"expected a mapping with {', '.join(sorted(_SECTIONS))}")
    unknown = sorted(set(data) - _SECTIONS)
    if unknown:
        raise DataFileError(path, _line(unknown[0], data), f"unknown section {unknown[0]!r}")
    if "pools" not in data:
        raise DataFileError(path, getattr(data, "line", None), "missing section 'pools'")
    return Phrasings(
        path=str(path),
        pools=_pools(path, _mapping(path, data, "pools")),
        procedures=_procedures(path, _mapping(path, data, "procedures", required=False)),
        exam=_exam(path, _mapping(path, data, "exam", required=False)),
    )


def _line(value, parent=None) -> int | None:
    return getattr(value, "line", None) or getattr(parent, "line", None)


def _mapping(path: Path, data: dict, key: str, required: bool = True) -> dict:
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict) or not value:
        where = next((k for k in data if k == key), key)
        raise DataFileError(path, _line(where, data), f"{key}: expected a non-empty mapping")
    return value


def _strings(path: Path, where: str, items, owner, low: int, high: int) -> tuple[str, ...]:
    """A list of distinct non-empty strings, ``low`` to ``high`` of them."""
    if not isinstance(items, list):
        raise DataFileError(path, _line(owner), f"{where}: expected a list of strings")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise DataFileError(
                path, _line(item, owner), f"{where}: every entry must be a non-empty string"
            )
        if item != item.strip():
            raise DataFileError(path, _line(item, owner), f"{where}: {item!r} has outer spaces")
        folded = " ".join(item.lower().split())
        if folded in seen:
            raise DataFileError(path, _line(item, owner), f"{where}: {item!r} is listed twice")
        seen.add(folded)
    if not low <= len(items) <= high:
        raise DataFileError(
            path, _line(owner), f"{where}: {len(items)} entries; expected {low} to {high}"
        )
    return tuple(items)  # LineStr: each keeps its line for later messages


def _fields(path: Path, where: str, text: str) -> None:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise DataFileError(path, _line(text), f"{where}: {text!r}: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in FIELDS or spec or conversion:
            raise DataFileError(
                path,
                _line(text),
                f"{where}: unknown field {{{name}}} in {text!r}; "
                f"available: {', '.join(sorted(FIELDS))}",
            )


def _pools(path: Path, data: dict) -> dict[str, Pool]:
    pools = {}
    for key, value in data.items():
        if not _KEY.match(str(key)):
            raise DataFileError(
                path, _line(key, data), f"pools: bad key {str(key)!r} (lower-case words and dots)"
            )
        allow: tuple[str, ...] = ()
        items = value
        if isinstance(value, dict):
            extra = sorted(set(value) - {"variants", "allow"})
            if extra or "variants" not in value:
                raise DataFileError(
                    path,
                    _line(value, key),
                    f"pools: {key}: a mapping needs 'variants' (and may have 'allow'), "
                    f"not {extra or sorted(value)}",
                )
            items = value["variants"]
            allow = _strings(path, f"pools: {key}: allow", value.get("allow") or [], value, 0, 20)
        variants = _strings(path, f"pools: {key}", items, key, MIN_VARIANTS, MAX_VARIANTS)
        for variant in variants:
            _fields(path, f"pools: {key}", variant)
        pools[str(key)] = Pool(
            str(key), variants, frozenset(a.lower() for a in allow), _line(key) or 0
        )
    return pools


def _procedures(path: Path, data: dict) -> dict[str, tuple[str, ...]]:
    if not data:
        return {}
    from medcode.terminology import cpt

    table = cpt.procedure_table()
    found = {}
    for code, aliases in data.items():
        if str(code) not in table:
            raise DataFileError(
                path, _line(code, data), f"procedures: {code!r} is not a procedure code"
            )
        names = _strings(path, f"procedures: {code}", aliases, code, 1, MAX_ALIASES)
        description = table[str(code)].description.lower()
        for name in names:
            if "{" in name or "}" in name:
                raise DataFileError(
                    path, _line(name, code), f"procedures: {code}: braces in {name!r}"
                )
            if name.lower() == description:
                raise DataFileError(
                    path, _line(name, code), f"procedures: {code}: {name!r} is the description"
                )
        found[str(code)] = names
    return found


def _exam(path: Path, data: dict) -> dict[str, tuple[str, ...]]:
    found = {}
    for finding, wordings in data.items():
        names = _strings(path, f"exam: {finding}", wordings, finding, MIN_EXAM, MAX_ALIASES)
        for name in names:
            if "{" in name or "}" in name:
                raise DataFileError(path, _line(name, finding), f"exam: braces in {name!r}")
        found[str(finding)] = names
    return found


def derived_rng(rng: random.Random, label: str) -> random.Random:
    """A generator seeded from ``rng``'s state and ``label``, without drawing from ``rng``."""
    digest = hashlib.blake2b(
        f"{label}:{rng.getstate()!r}".encode(), digest_size=8, usedforsecurity=False
    ).digest()
    return random.Random(int.from_bytes(digest, "big"))


class Say:
    """The templates' ``say``: one variant of a pool per call, seeded per note."""

    def __init__(
        self, rng: random.Random, fields: dict[str, str], phrasings: Phrasings | None = None
    ) -> None:
        self.rng = rng
        self.fields = dict(fields)
        self.phrasings = phrasings or shipped_phrasings()

    def __call__(self, key: str, **fields: str) -> str:
        pool = self.phrasings.pools.get(key)
        if pool is None:
            raise MedcodeError(f"say({key!r}): no such pool in {self.phrasings.path}")
        text = self.rng.choice(pool.variants)
        if "{" in text:
            text = text.format_map({**self.fields, **fields})
        return text

    def exam(self, finding):
        """A wording of a normal exam statement (the statement itself among them); any other
        finding as it is. A list gives a list."""
        if isinstance(finding, (list, tuple)):
            return [self.exam(item) for item in finding]
        wordings = self.phrasings.exam.get(str(finding))
        if not wordings:
            return finding
        return self.rng.choice((str(finding), *wordings))

    def procedure(self, code: str, description: str) -> str:
        """The name a note prints for a procedure: its description or one of its aliases."""
        return self.rng.choice(self.phrasings.aliases(code, description))
