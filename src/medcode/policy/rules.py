"""The registry of policy rules: id, guideline section and what each does."""

from __future__ import annotations

from dataclasses import dataclass

GUIDELINES = "ICD-10-CM Official Guidelines for Coding and Reporting FY2026"
EM_GUIDELINES = "AMA CPT E/M Services Guidelines (2023 revision)"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    section: str
    summary: str

    @property
    def source(self) -> str:
        return self.section


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {rule.id: rule for rule in rules}


RULES = _rules(
    Rule(
        "diagnosis.documented",
        f"{GUIDELINES} I.B.1, IV.C",
        "a confirmed problem is coded to the documented condition",
    ),
    Rule(
        "specificity.default",
        f"{GUIDELINES} I.A.9, I.B.2",
        "a non-billable documented code takes its 'unspecified' child",
    ),
    Rule("laterality", f"{GUIDELINES} I.B.13", "documented side selects the lateral code"),
    Rule(
        "episode.seventh",
        f"{GUIDELINES} I.A.17, I.C.19.a",
        "episode of care gives the 7th character, padded with placeholder X",
    ),
    Rule(
        "combination.diabetes",
        f"{GUIDELINES} I.A.15, I.C.4.a",
        "diabetes 'with' a listed complication becomes the combination code",
    ),
    Rule(
        "combination.hypertension",
        f"{GUIDELINES} I.C.9.a.1-3",
        "hypertension with heart failure and/or CKD becomes I11/I12/I13",
    ),
    Rule(
        "combination.copd",
        f"{GUIDELINES} I.C.10.a",
        "COPD with a lower respiratory infection becomes J44.0",
    ),
    Rule(
        "combination.partner",
        f"{GUIDELINES} I.A.12.a, I.A.13",
        "the use-additional-code partner of a combination code is kept after it",
    ),
    Rule(
        "status.uncertain_outpatient",
        f"{GUIDELINES} IV.H",
        "outpatient uncertain diagnosis: code the documented symptoms",
    ),
    Rule(
        "status.uncertain_inpatient",
        f"{GUIDELINES} II.H",
        "inpatient uncertain diagnosis at discharge: code as if established",
    ),
    Rule(
        "status.not_coded",
        f"{GUIDELINES} IV.H, IV.J, I.C.21.c.4",
        "negated, ruled-out and resolved conditions are not coded",
    ),
    Rule(
        "history.personal",
        f"{GUIDELINES} I.C.21.c.4, I.C.2.d",
        "a personal history gives its history code",
    ),
    Rule("history.family", f"{GUIDELINES} I.C.21.c.4", "a family history gives its Z80-Z84 code"),
    Rule(
        "integral.symptoms",
        f"{GUIDELINES} I.B.4-5",
        "signs and symptoms routinely part of a confirmed diagnosis are not coded",
    ),
    Rule(
        "partner.organism",
        f"{GUIDELINES} I.C.1.b; tabular B95-B97",
        "the infectious agent is coded after the infection when the tabular asks",
    ),
    Rule(
        "partner.manifestation",
        f"{GUIDELINES} I.A.13",
        "an etiology paired with a manifestation in the index gets the manifestation",
    ),
    Rule(
        "sequencing.code_first",
        f"{GUIDELINES} I.A.13",
        "a code with a 'code first' note follows the underlying condition",
    ),
    Rule(
        "medication.z79",
        f"{GUIDELINES} I.C.21.c.3, I.C.4.a.3",
        "long-term drug therapy codes from current medications",
    ),
    Rule(
        "preventive.exam",
        f"{GUIDELINES} I.C.21.c.13",
        "preventive and wellness visits start with the general-examination code",
    ),
    Rule(
        "edit.excludes1",
        f"{GUIDELINES} I.A.12.a",
        "two codes in an Excludes1 relation are never both assigned",
    ),
    Rule(
        "edit.sex",
        "CMS Medicare Code Editor, sex conflict edits",
        "a code inconsistent with the patient's sex is reported",
    ),
    Rule(
        "edit.age",
        "CMS Medicare Code Editor, age conflict edits",
        "a code inconsistent with the patient's age is reported",
    ),
    Rule(
        "em.office",
        f"{EM_GUIDELINES}: office or other outpatient",
        "office/telehealth level from new or established and MDM or total time",
    ),
    Rule("em.emergency", f"{EM_GUIDELINES}: emergency department", "ED level from MDM"),
    Rule(
        "em.consult",
        f"{EM_GUIDELINES}: office or other outpatient consultations",
        "outpatient consultation 99242-99245 from MDM or total time",
    ),
    Rule(
        "em.procedure",
        "CMS Claims Processing Manual ch. 12 s40.1.C; NCCI Policy Manual ch. I (global surgery)",
        "no E/M with a minor procedure: the decision to perform it is in its global package",
    ),
    Rule(
        "em.hospital",
        f"{EM_GUIDELINES}: hospital inpatient and observation",
        "hospital admission or subsequent level from MDM or time",
    ),
    Rule(
        "em.discharge",
        f"{EM_GUIDELINES}: hospital discharge",
        "discharge day 99238 (30 minutes or less) or 99239 (more than 30)",
    ),
    Rule(
        "em.preventive",
        "AMA CPT Preventive Medicine Services",
        "age-banded preventive medicine visit, new or established",
    ),
    Rule(
        "em.annual_wellness",
        "CMS Medicare annual wellness visit (42 CFR 410.15)",
        "G0438 first annual wellness visit, G0439 subsequent",
    ),
    Rule("procedure.documented", "AMA CPT / CMS HCPCS", "documented procedures, in order"),
    Rule(
        "combination.organism",
        f"{GUIDELINES} I.A.15, I.C.1.b; Alphabetic Index",
        "an infection with its organism becomes the index's organism-specific code",
    ),
    Rule(
        "combination.cad_angina",
        f"{GUIDELINES} I.C.9.b",
        "coronary atherosclerosis with angina becomes one combination code",
    ),
    Rule(
        "combination.influenza",
        f"{GUIDELINES} I.C.10.c, I.C.1.d",
        "influenza with pneumonia becomes the influenza-with-pneumonia code",
    ),
    Rule(
        "combination.condition",
        f"{GUIDELINES} I.C.1.g.1.c; Alphabetic Index",
        "an infection in a documented condition becomes the index's code for it",
    ),
    Rule(
        "partner.symptoms",
        f"{GUIDELINES} I.B.5 (unless otherwise instructed); tabular use additional code",
        "symptoms the diagnosis's tabular note asks for are coded after it",
    ),
    Rule(
        "substance.hierarchy",
        f"{GUIDELINES} I.C.5.b.1",
        "use, abuse and dependence of one substance: only the highest is coded",
    ),
    Rule(
        "diagnosis.subsumed",
        f"{GUIDELINES} I.A.15; Alphabetic Index",
        "a code the index folds into another documented code is not coded",
    ),
    Rule(
        "ckd.esrd",
        f"{GUIDELINES} I.C.14.a.1",
        "a CKD stage documented with ESRD gives N18.6 only",
    ),
    Rule(
        "dementia.other_disease",
        f"{GUIDELINES} I.A.13, I.A.15; tabular F02 code first",
        "dementia documented with a cause of F02 is dementia in other diseases, cause first",
    ),
    Rule(
        "status.ruled_out_symptoms",
        f"{GUIDELINES} II.A, IV.D",
        "the symptoms behind a ruled-out diagnosis are coded when nothing else explains them",
    ),
    Rule(
        "sequela.residual",
        f"{GUIDELINES} I.C.19.a",
        "a sequela: the residual condition first, then the injury with 7th character S",
    ),
    Rule(
        "bmi.z68",
        f"{GUIDELINES} I.C.21.c.3",
        "BMI Z68 only with an associated diagnosis, from the documented BMI",
    ),
    Rule(
        "immunization.z23",
        f"{GUIDELINES} I.C.21.c.2",
        "vaccine administration gives Z23",
    ),
    Rule(
        "procedure.product_date",
        "CMS seasonal influenza vaccine pricing; AMA CPT",
        "a vaccine product code takes the product valid on the date of service",
    ),
    Rule(
        "procedure.bundled",
        "NCCI Policy Manual ch. X; AMA CPT panel definitions",
        "a component billed with its panel is billed once, as the panel",
    ),
    Rule(
        "procedure.facility",
        "CMS Medicare Claims Processing Manual ch. 12 sec. 20.4, ch. 13",
        "in facility settings the professional claim carries the professional component",
    ),
    Rule(
        "procedure.screening",
        "CMS National Coverage Determinations 210.x",
        "screening and counselling G-codes only in the settings and visits they apply to",
    ),
    Rule(
        "procedure.blood_pressure",
        "AMA CPT Category II 3074F-3080F",
        "CPT II blood-pressure codes from the printed values",
    ),
)
