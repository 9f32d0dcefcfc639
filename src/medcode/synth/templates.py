"""Note templates (Jinja2): the shipped set in ``data/templates`` and user template folders,
each with an ``index.yaml`` naming file, note type, family, phrase styles and whether the
family is held out of training (``ood``). Validated on load; user templates are scanned for
PHI first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2
from jinja2 import meta

from medcode.datafiles import LineDict, load_yaml, package_data
from medcode.errors import DataFileError
from medcode.synth.catalog import STYLES
from medcode.synth.render import NOTE_TYPES

CONTEXT = frozenset(
    {
        "note",
        "patient",
        "provider",
        "facility",
        "date",
        "visit",
        "reason",
        "story",
        "new_findings",
        "problems",
        "history",
        "family_history",
        "resolved",
        "negatives",
        "ruled_out",
        "medications",
        "procedures",
        "labs",
        "vitals",
        "exam",
        "mdm",
        "general",
        "function",
        "living",
        "course",
        "say",
        "consult",
        "operation",
    }
)
# Gold codes are built from these: a template that leaves one out would drop evidence.
REQUIRED = frozenset(
    {"visit", "problems", "history", "family_history", "medications", "procedures", "mdm"}
)
# ... except what a note type never documents: a procedure note has no E/M (no MDM) and a
# consultation's and a procedure note's own sections
REQUIRED_BY_TYPE = {
    "procedure": (REQUIRED - {"mdm"}) | {"operation"},
    "consult": REQUIRED | {"consult"},
}


@dataclass(frozen=True)
class NoteTemplate:
    note_type: str
    family: str
    ood: bool
    styles: dict[str, float]
    template: jinja2.Template
    path: str


def _environment(folder: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def _line_of(source: str, name: str) -> int:
    match = re.search(rf"\b{re.escape(name)}\b", source)
    return source.count("\n", 0, match.start()) + 1 if match else 1


def load_templates(folder: str | Path | None = None, *, user: bool = False) -> list[NoteTemplate]:
    """Load the templates listed in ``folder/index.yaml`` (default: the shipped set)."""
    folder = Path(folder) if folder else package_data("templates")
    index_path = folder / "index.yaml"
    entries = load_yaml(index_path)
    if not isinstance(entries, list) or not entries:
        raise DataFileError(index_path, None, "expected a list of templates")
    environment = _environment(folder)
    found = []
    for entry in entries:
        if not isinstance(entry, LineDict):
            raise DataFileError(index_path, None, "each template entry must be a mapping")
        line = entry.line
        file_name = str(entry.get("file", ""))
        path = folder / file_name
        if not file_name or not path.is_file():
            raise DataFileError(index_path, line, f"template file {file_name!r} not found")
        if entry.get("note_type") not in NOTE_TYPES:
            raise DataFileError(
                index_path,
                line,
                f"note_type {entry.get('note_type')!r} not one of {', '.join(NOTE_TYPES)}",
            )
        styles = entry.get("styles") or {"formal": 1.0}
        if not isinstance(styles, dict) or set(styles) - set(STYLES) or not sum(styles.values()):
            raise DataFileError(index_path, line, f"styles must weight {', '.join(STYLES)}")
        source = path.read_text(encoding="utf-8")
        if user:
            from medcode.synth.privacy import scan_template

            scan_template(path, source)
        try:
            parsed = environment.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise DataFileError(path, exc.lineno, f"template syntax: {exc.message}") from None
        names = meta.find_undeclared_variables(parsed)
        unknown = sorted(names - CONTEXT)
        if unknown:
            raise DataFileError(
                path,
                _line_of(source, unknown[0]),
                f"unknown template variable {unknown[0]!r}; available: "
                f"{', '.join(sorted(CONTEXT))}",
            )
        missing = sorted(REQUIRED_BY_TYPE.get(entry["note_type"], REQUIRED) - names)
        if missing:
            raise DataFileError(
                path,
                None,
                f"the template never renders {', '.join(missing)}: gold codes depend on it",
            )
        found.append(
            NoteTemplate(
                note_type=entry["note_type"],
                family=str(entry.get("family") or path.stem),
                ood=bool(entry.get("ood", False)),
                styles={k: float(v) for k, v in styles.items()},
                template=environment.from_string(source),
                path=str(path),
            )
        )
    return found


@cache
def shipped_templates() -> tuple[NoteTemplate, ...]:
    return tuple(load_templates())
