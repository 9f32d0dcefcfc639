"""The installed dependencies satisfy the lower bounds pyproject.toml declares."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
REQUIREMENTS = list(PROJECT["dependencies"]) + [
    requirement for extra in PROJECT["optional-dependencies"].values() for requirement in extra
]


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


@pytest.mark.parametrize("requirement", REQUIREMENTS)
def test_installed_version_meets_lower_bound(requirement):
    name, bound = re.match(r"^([A-Za-z0-9_.\-]+)>=([0-9.]+)(?:,<[0-9.]+)?$", requirement).groups()
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{name} not installed (its extra was not requested)")
    assert version_tuple(installed) >= version_tuple(bound), f"{name} {installed} < {bound}"


def test_core_does_not_need_torch():
    assert not any(r.startswith("torch") for r in PROJECT["dependencies"])
