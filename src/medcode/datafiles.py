"""Reading the package's YAML and CSV data files with line numbers for error messages."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medcode.errors import DataFileError


def package_data(relative: str) -> Path:
    """Path of a file shipped under ``medcode/data``."""
    return Path(str(resources.files("medcode") / "data" / relative))


class LineDict(dict):
    """A mapping read from YAML that remembers the line it started on (1-based)."""

    line: int = 0


def _check_flow(node: yaml.Node) -> None:
    """A plain item of a flow collection ([a, b] or {k: v}) with unbalanced brackets was
    cut at a comma it meant to keep ("[lipid panel (HDL, LDL)]"): the item must be quoted."""
    if not node.flow_style:
        return
    children = node.value if isinstance(node, yaml.SequenceNode) else [v for _, v in node.value]
    for child in children:
        if isinstance(child, yaml.ScalarNode) and not child.style:  # plain (libyaml: "")
            text = child.value
            if text.count("(") != text.count(")") or text.count("[") != text.count("]"):
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"unbalanced brackets in {text!r}: a comma inside an unquoted item of "
                    "[...] or {...} splits it; quote the item",
                    child.start_mark,
                )


def _construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> list:
    _check_flow(node)
    return loader.construct_sequence(node, deep=True)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> LineDict:
    _check_flow(node)
    mapping = LineDict(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


class LineStr(str):
    """A string read from YAML that remembers its line (1-based)."""

    line: int = 0


def _construct_string(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> LineStr:
    text = LineStr(loader.construct_scalar(node))
    text.line = node.start_mark.line + 1
    return text


def _line_loader(base: type, strings: bool) -> type:
    """A safe loader on ``base`` that builds LineDicts (and with ``strings`` LineStrs)."""
    loader = type("_LineStringLoader" if strings else "_LineLoader", (base,), {})
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
    if strings:
        loader.add_constructor("tag:yaml.org,2002:str", _construct_string)
    return loader


# The pure-Python loaders, and libyaml's (same nodes and marks, about 10x faster) where PyYAML
# was built with it; a file libyaml rejects is parsed again by the pure-Python loader, so
# that the error message stays the same.
_PY_LOADERS = {strings: _line_loader(yaml.SafeLoader, strings) for strings in (False, True)}
_FAST_LOADERS = {
    strings: _line_loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader), strings)
    for strings in (False, True)
}


def load_yaml(path: str | Path, *, strings: bool = False) -> Any:
    """Load a YAML file; mappings come back as :class:`LineDict` carrying their line, and
    with ``strings`` every string as a :class:`LineStr` carrying its own."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(path, None, "file not found") from None
    try:
        try:
            return yaml.load(text, Loader=_FAST_LOADERS[strings])
        except yaml.YAMLError:
            return yaml.load(text, Loader=_PY_LOADERS[strings])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise DataFileError(path, line, f"invalid YAML: {problem}") from None


def cited_section(path: Path, data: Any, name: str, body: str) -> Any:
    """Section ``name`` of a data file, a mapping of ``source`` (a citation of five words or
    more) and ``body``; returns the body. Errors name the file, line and section."""
    section = data[name]
    if not isinstance(section, dict) or set(section) != {"source", body}:
        line = getattr(section, "line", getattr(data, "line", None))
        raise DataFileError(path, line, f"{name}: expected source and {body}")
    source = section["source"]
    if not isinstance(source, str) or len(source.split()) < 5:
        raise DataFileError(path, section.line, f"{name}: cite where the {body} come from")
    found = section[body]
    if not found:
        raise DataFileError(path, section.line, f"{name}: {body}: none given")
    return found


def read_csv_rows(
    path: str | Path, required: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line, row)`` for each data row of a CSV file with the required columns.

    A file whose name ends in ``.gz`` is read through gzip.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        handle = opener(path, "rt", encoding="utf-8", newline="")
    except FileNotFoundError:
        raise DataFileError(path, None, "file not found") from None
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [name for name in required if name not in header]
        if missing:
            raise DataFileError(
                path, 1, f"missing column(s) {', '.join(missing)}; header is {','.join(header)}"
            )
        for row in reader:
            values = {key: (value or "").strip() for key, value in row.items() if key}
            if not any(values.values()):
                continue
            yield reader.line_num, values
