"""Minor office procedures written up as a procedure note (``data/synth/procedure_visits.yaml``):
which procedure treats which catalog concept, and the words of the note, validated on load.

The sampler draws a procedure visit's procedure and indication from here; the renderer asks
:meth:`ProcedureVisit.write` for the note's sections. No E/M goes with these visits (policy
rule ``em.procedure``).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace

from medcode.errors import DataFileError

SECTIONS = ("position", "anesthesia", "technique", "findings", "aftercare")
_OPTIONAL = ("injectate",)
_FIELDS = frozenset({"site", "side", "length", "count", "finger"})
_KEYS = frozenset({"code", "weight", "indications", "length", *SECTIONS, *_OPTIONAL})


@dataclass(frozen=True)
class Indication:
    concept: str
    sites: tuple[str, ...]


@dataclass(frozen=True)
class ProcedureVisit:
    """One procedure: its CPT code, weight among procedure visits, indications and words."""

    code: str
    weight: float
    indications: tuple[Indication, ...]
    sections: dict[str, tuple[str, ...]]
    length: tuple[float, float] | None
    line: int

    def indication(self, concept_id: str) -> Indication | None:
        return next((i for i in self.indications if i.concept == concept_id), None)

    def write(
        self, rng: random.Random, concept_id: str, side: str | None, attributes: dict[str, str]
    ) -> SimpleNamespace:
        """The note's sections for this procedure on the concept's site (one variant each)."""
        indication = self.indication(concept_id)
        values = {k: str(v) for k, v in attributes.items()}
        values["side"] = side or "right"
        if self.length is not None:
            low, high = self.length
            values["length"] = f"{rng.randint(round(low * 10), round(high * 10)) / 10:.1f}"
        values["count"] = str(rng.randint(2, 6))
        site_text = rng.choice(indication.sites) if indication else "site"
        values["site"] = " ".join(site_text.format_map(_Blank(values)).split())
        filled = {
            name: " ".join(rng.choice(options).format_map(_Blank(values)).split())
            for name, options in self.sections.items()
        }
        filled.setdefault("injectate", "")
        return SimpleNamespace(site=values["site"], **filled)


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True)
class ProcedureVisits:
    path: str
    entries: tuple[ProcedureVisit, ...]

    def by_code(self, code: str) -> ProcedureVisit | None:
        return next((e for e in self.entries if e.code == code), None)


def procedure_visits_path() -> Path:
    from medcode.datafiles import package_data

    return package_data("synth/procedure_visits.yaml")


@cache
def shipped_procedure_visits() -> ProcedureVisits:
    return load_procedure_visits(procedure_visits_path())


def load_procedure_visits(path: str | Path | None = None) -> ProcedureVisits:
    """Read and validate a procedure-visit file (the shipped one unless ``path``): every
    problem raises :class:`DataFileError` with the file and line. Concepts must be in the
    shipped catalog and list the code among their procedures; codes must be procedures in
    the CPT/HCPCS table."""
    from medcode.datafiles import load_yaml
    from medcode.synth.catalog import shipped_catalog
    from medcode.terminology import cpt

    path = Path(path) if path is not None else procedure_visits_path()
    data = load_yaml(path, strings=True)
    entries_node = data.get("procedures") if isinstance(data, dict) else None
    if not isinstance(entries_node, list) or not entries_node:
        raise DataFileError(path, getattr(data, "line", None), "missing list 'procedures'")
    catalog, table = shipped_catalog(), cpt.procedure_table()
    entries, seen = [], set()
    for node in entries_node:
        line = getattr(node, "line", None)

        def fail(problem: str, at: object = node, line: int | None = line) -> DataFileError:
            return DataFileError(path, getattr(at, "line", line), problem)

        if not isinstance(node, dict):
            raise fail("each procedure must be a mapping")
        unknown = sorted(set(node) - _KEYS)
        if unknown:
            raise fail(f"unknown key {unknown[0]!r}")
        code = str(node.get("code", ""))
        entry = table.get(code)
        if entry is None or entry.kind != cpt.Kind.PROCEDURE:
            raise fail(f"code {code!r} is not a procedure in the CPT/HCPCS table")
        if code in seen:
            raise fail(f"code {code} listed twice")
        seen.add(code)
        try:
            weight = float(node.get("weight", 0))
        except ValueError:
            raise fail(f"{code}: weight must be a number") from None
        if weight <= 0:
            raise fail(f"{code}: weight must be > 0")
        indications = []
        for item in node.get("indications") or ():
            concept = catalog.concepts.get(str(item.get("concept", "")))
            if concept is None:
                raise fail(f"{code}: unknown concept {item.get('concept')!r}", item)
            if not any(o.code == code for o in concept.procedures):
                raise fail(f"{code}: concept {concept.id} does not list {code}", item)
            sites = item.get("site")
            sites = (sites,) if isinstance(sites, str) else tuple(sites or ())
            if not sites:
                raise fail(f"{code}: {concept.id} needs a site", item)
            for text in sites:
                if problem := _field_problem(str(text)):
                    raise fail(f"{code}: {problem}", item)
            indications.append(Indication(concept.id, tuple(str(s) for s in sites)))
        if not indications:
            raise fail(f"{code}: needs at least one indication")
        sections = {}
        for name in (*SECTIONS, *_OPTIONAL):
            options = node.get(name)
            if options is None and name in _OPTIONAL:
                continue
            if not isinstance(options, list) or not options:
                raise fail(f"{code}: '{name}' must be a non-empty list")
            for text in options:
                if problem := _field_problem(str(text)):
                    raise fail(f"{code}.{name}: {problem}", options)
            sections[name] = tuple(str(t) for t in options)
        length = node.get("length")
        if length is not None:
            if (
                not isinstance(length, list)
                or len(length) != 2
                or not 0 < float(length[0]) <= float(length[1])
            ):
                raise fail(f"{code}: length must be [low, high] in cm")
            length = (float(length[0]), float(length[1]))
        entries.append(ProcedureVisit(code, weight, tuple(indications), sections, length, line))
    return ProcedureVisits(str(path), tuple(entries))


def _field_problem(text: str) -> str | None:
    """What is wrong with a text's placeholders (only the known ones, well-formed braces)."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        return f"bad braces in {text!r} ({exc})"
    unknown = sorted(names - _FIELDS)
    return f"unknown placeholder {{{unknown[0]}}} in {text!r}" if unknown else None
