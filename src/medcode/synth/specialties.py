"""The consulting specialty of each catalog domain (``data/synth/specialties.yaml``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from medcode.errors import DataFileError

GENERALIST = "internal medicine"  # a domain whose problems are not referred


@cache
def shipped_specialties() -> dict[str, str]:
    """Catalog domain -> specialty; validated on load (every catalog domain is listed)."""
    return load_specialties()


def load_specialties(path: str | Path | None = None) -> dict[str, str]:
    """Read a specialties file (the shipped one unless ``path``); problems raise
    :class:`DataFileError` with file and line."""
    from medcode.datafiles import load_yaml, package_data
    from medcode.synth.catalog import shipped_catalog

    path = Path(path) if path is not None else package_data("synth/specialties.yaml")
    data = load_yaml(path, strings=True)
    domains = data.get("domains") if isinstance(data, dict) else None
    if not isinstance(domains, dict) or not domains:
        raise DataFileError(path, getattr(data, "line", None), "missing mapping 'domains'")
    for domain, name in domains.items():
        if not isinstance(name, str) or not name.strip():
            raise DataFileError(path, domains.line, f"domain {domain!r}: needs a specialty name")
    known = {concept.domain for concept in shipped_catalog().concepts.values()}
    missing = sorted(known - set(domains))
    if missing:
        raise DataFileError(path, domains.line, f"no specialty for domain {missing[0]!r}")
    return {str(k): str(v) for k, v in domains.items()}
