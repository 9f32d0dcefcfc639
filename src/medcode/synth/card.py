"""The dataset card: README.md with the Hugging Face ``configs`` header, counts, the realism
metrics (medcode.synth.realism) and PNG plots (code frequency, note length, note types,
categories, E/M levels)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medcode.synth.writer import SPLITS

EM_PREFIXES = ("992", "993", "994", "G04")
REALISM_NOTES = 20000  # the card's realism metrics read at most this many notes, evenly spread


@dataclass
class CorpusStats:
    notes: int = 0
    by_split: Counter = field(default_factory=Counter)
    by_note_type: Counter = field(default_factory=Counter)
    by_family: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)
    systems: Counter = field(default_factory=Counter)
    categories: Counter = field(default_factory=Counter)
    notes_with_category: Counter = field(default_factory=Counter)
    em_levels: Counter = field(default_factory=Counter)
    em_mix: dict[str, Counter] = field(default_factory=dict)  # visit group -> E/M codes
    lengths: list[int] = field(default_factory=list)
    codes_per_note: list[int] = field(default_factory=list)

    def add(self, row: dict) -> None:
        self.notes += 1
        self.by_split[row["split"]] += 1
        self.by_note_type[row["note_type"]] += 1
        self.by_family[f"{row['note_type']}/{row['template_family']}"] += 1
        self.lengths.append(len(row["text"].split()))
        self.codes_per_note.append(len(row["codes"]))
        seen = set()
        for item in row["codes"]:
            self.codes[(item["system"], item["code"])] += 1
            self.systems[item["system"]] += 1
            for category in item["categories"]:
                self.categories[category] += 1
                seen.add(category)
            if item["system"] != "ICD-10-CM" and item["rule"].startswith("em."):
                self.em_levels[item["code"]] += 1
                if row.get("encounter"):
                    group = visit_group(row["encounter"])
                    self.em_mix.setdefault(group, Counter())[item["code"]] += 1
        for category in seen:
            self.notes_with_category[category] += 1

    def distinct(self, system: str | None = None) -> int:
        return sum(1 for s, _ in self.codes if system is None or s == system)


def visit_group(encounter: str | dict) -> str:
    """The E/M family of a row's visit: office_new, office_established (telehealth
    included), emergency, hospital_discharge, ..., or the visit kind (preventive)."""
    from medcode.records import VisitKind
    from medcode.synth.profiles import em_group

    data = json.loads(encounter) if isinstance(encounter, str) else encounter
    visit = data["visit"]
    kind = VisitKind(visit["kind"])
    return em_group(kind, bool(visit.get("new_patient"))) or kind.value


def read_rows(out: Path, columns: list[str] | None = None):
    """Rows of every shard file of a corpus (Parquet or JSON Lines)."""
    folder = out / "data"
    for path in sorted(folder.glob("*.parquet")):
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=columns)
        yield from table.to_pylist()
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


def collect(out: Path) -> CorpusStats:
    stats = CorpusStats()
    for row in read_rows(
        out, ["split", "note_type", "template_family", "text", "codes", "encounter"]
    ):
        stats.add(row)
    return stats


def _bar(path: Path, counter: Counter, title: str, xlabel: str, top: int = 30) -> None:
    import matplotlib.pyplot as plt

    items = counter.most_common(top)
    figure, axis = plt.subplots(figsize=(8, max(2.5, 0.28 * len(items) + 1)))
    axis.barh(
        [str(k) for k, _ in reversed(items)], [v for _, v in reversed(items)], color="#3b6ea5"
    )
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _em_mix_plot(path: Path, stats: CorpusStats, targets: dict[str, dict[str, float]]) -> None:
    """Share of each E/M code within its visit group, with the profile's target as a tick."""
    import matplotlib.pyplot as plt

    rows = [
        (group, code, count / sum(codes.values()))
        for group, codes in sorted(stats.em_mix.items())
        for code, count in sorted(codes.items())
    ]
    figure, axis = plt.subplots(figsize=(8, max(2.5, 0.28 * len(rows) + 1)))
    labels = [f"{group} {code}" for group, code, _ in reversed(rows)]
    axis.barh(labels, [share for _, _, share in reversed(rows)], color="#3b6ea5")
    marks = [
        (label, targets[group][code])
        for label, (group, code, _) in zip(labels, reversed(rows), strict=True)
        if code in targets.get(group, {})
    ]
    if marks:
        axis.scatter(
            [t for _, t in marks], [label for label, _ in marks], marker="|", s=200, color="black"
        )
    axis.set_title("E/M codes by visit (bar: share of the visit's notes; tick: target mix)")
    axis.set_xlabel("share of the visit group's notes")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot(stats: CorpusStats, folder: Path, targets: dict | None = None) -> list[str]:
    """Write the card's PNG plots; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    frequencies = sorted(stats.codes.values(), reverse=True)
    figure, axis = plt.subplots(figsize=(7, 4.2))
    axis.loglog(range(1, len(frequencies) + 1), frequencies, color="#3b6ea5")
    axis.set_title(f"Code frequency: {len(frequencies):,} distinct codes (long tail)")
    axis.set_xlabel("code rank")
    axis.set_ylabel("notes with the code")
    figure.tight_layout()
    figure.savefig(folder / "code_frequency.png", dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 4.2))
    axis.hist(stats.lengths, bins=40, color="#3b6ea5")
    axis.set_title("Note length")
    axis.set_xlabel("words")
    axis.set_ylabel("notes")
    figure.tight_layout()
    figure.savefig(folder / "note_length.png", dpi=110)
    plt.close(figure)

    _bar(folder / "note_types.png", stats.by_note_type, "Notes by type", "notes")
    _bar(
        folder / "categories.png",
        stats.notes_with_category,
        "Notes with a code in the category",
        "notes",
    )
    if stats.em_mix:
        _em_mix_plot(folder / "em_levels.png", stats, targets or {})
    else:
        _bar(folder / "em_levels.png", stats.em_levels, "E/M codes", "notes")
    return [
        "code_frequency.png",
        "note_length.png",
        "note_types.png",
        "categories.png",
        "em_levels.png",
    ]


def realism(out: Path, notes: int):
    """The realism report of a corpus for its card: every note, or every k-th note when there
    are more than ``REALISM_NOTES`` (k = ceil(notes / REALISM_NOTES)), so that all splits are
    represented. Returns the report and the sampling phrase for the card."""
    from itertools import islice

    from medcode.synth.realism import measure

    step = max(1, -(-notes // REALISM_NOTES))
    rows = islice(read_rows(out, ["note_type", "text", "codes"]), 0, None, step)
    sampled = "" if step == 1 else f" (one in {step} of the {notes:,} notes)"
    return measure(rows), sampled


def write_card(out: Path, config: dict) -> Path:
    """Compute the statistics of a complete corpus and write README.md with its plots."""
    from medcode.synth.realism import card_lines

    stats = collect(out)
    realism_report, sampled = realism(out, stats.notes)
    mix = _target_mix(config.get("profile"))
    plots = plot(stats, out / "card", mix.targets if mix else None)
    fmt = "parquet" if config.get("format", "parquet") == "parquet" else "json"
    suffix = "parquet" if fmt == "parquet" else "jsonl"
    header = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in SPLITS:
        header += [f"  - split: {split}", f"    path: data/{split}-*.{suffix}"]
    header += [
        "license: cc-by-4.0",
        "task_categories:",
        "- text-classification",
        "tags:",
        "- medical-coding",
        "- icd-10-cm",
        "- synthetic",
        "---",
        "",
    ]
    n = stats.notes or 1
    lines = [
        "# Synthetic coded clinical notes (medcode)",
        "",
        f"Generated by medcode {config.get('generator_version')} with profile "
        f"`{config.get('profile')}`, seed {config.get('seed')}: {stats.notes:,} notes. Every "
        "identifier is synthetic (Faker, seeded); gold codes come from the policy engine applied "
        "to the sampled facts, never from the text; every code lists the character spans of "
        "the text that support it.",
        "",
        "## Counts",
        "",
        "| split | notes |",
        "|---|---|",
        *[f"| {split} | {stats.by_split.get(split, 0):,} |" for split in SPLITS],
        "",
        f"- distinct codes: {stats.distinct():,} (ICD-10-CM {stats.distinct('ICD-10-CM'):,}, "
        f"CPT {stats.distinct('CPT'):,}, HCPCS {stats.distinct('HCPCS'):,})",
        f"- codes per note: {sum(stats.codes_per_note) / n:.1f} on average",
        f"- words per note: {sum(stats.lengths) / n:.0f} on average",
        "",
        "| category | notes | share |",
        "|---|---|---|",
        *[
            f"| {name} | {count:,} | {count / n:.1%} |"
            for name, count in sorted(stats.notes_with_category.items())
        ],
        "",
        "| note type / template family | notes |",
        "|---|---|",
        *[f"| {name} | {count:,} |" for name, count in sorted(stats.by_family.items())],
        "",
        *_em_mix_lines(stats, mix),
        *_rewrite_lines(config.get("rewrite")),
        *card_lines(realism_report, sampled),
        "## Plots",
        "",
        *[f"![{name}](card/{name})" for name in plots],
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        f'corpus = load_dataset("{out.name}")  # splits from the header above',
        "```",
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(header + lines), encoding="utf-8")
    (out / "card" / "stats.json").write_text(
        json.dumps(
            {
                "notes": stats.notes,
                "by_split": dict(stats.by_split),
                "distinct_codes": {
                    "all": stats.distinct(),
                    "ICD-10-CM": stats.distinct("ICD-10-CM"),
                    "CPT": stats.distinct("CPT"),
                    "HCPCS": stats.distinct("HCPCS"),
                },
                "notes_with_category": dict(stats.notes_with_category),
                "em_mix": {group: dict(codes) for group, codes in sorted(stats.em_mix.items())},
                "realism": realism_report.to_dict(),
            },
            indent=2,
            sort_keys=True,
        )
    )
    return path


def _target_mix(profile: str | None):
    """The profile's target E/M mix, when the profile still loads."""
    if not profile:
        return None
    from medcode.errors import MedcodeError
    from medcode.synth.profiles import load_profile, profile_path

    try:
        return load_profile(profile_path(profile)).em_mix
    except MedcodeError:
        return None


def _em_mix_lines(stats: CorpusStats, mix) -> list[str]:
    """The E/M level mix table: per visit group, the share of each E/M code (and the
    profile's target, with its source)."""
    if not stats.em_mix:
        return []
    targets = mix.targets if mix else {}
    lines = [
        "## E/M level mix",
        "",
        "Each E/M level is computed from what the note documents (problems addressed, data "
        "reviewed or ordered, risk of the management; or total time), never sampled. Office "
        "groups include telehealth visits.",
        "",
        "| visit | E/M code | notes | share | target |",
        "|---|---|---|---|---|",
    ]
    for group, codes in sorted(stats.em_mix.items()):
        total = sum(codes.values())
        wanted = targets.get(group, {})
        for code in sorted(set(codes) | set(wanted)):
            target = f"{wanted[code]:.0%}" if code in wanted else ""
            count = codes.get(code, 0)
            lines.append(f"| {group} | {code} | {count:,} | {count / total:.1%} | {target} |")
    if mix:
        lines += ["", f"Target mix: {mix.source}"]
    return [*lines, ""]


def _rewrite_lines(summary: dict | None) -> list[str]:
    """The LLM rewrite's acceptance rate and rejection reasons (synth/rewrite.py), when the
    corpus was rewritten."""
    if not summary or not summary.get("notes"):
        return []
    lines = [
        "## LLM rewrite",
        "",
        f"Each note was sent to `{summary.get('model')}` to be rewritten in a clinician's voice; "
        "a rewrite was kept only when the fact lock found every gold code's evidence with the "
        "same negation, history, family and uncertainty cues, no new condition, drug or "
        "procedure, and the same vital-sign, lab, dose and time numbers; its evidence spans "
        "were recomputed on the new text. The other notes keep their template text.",
        "",
        f"- kept: {summary['accepted']:,} of {summary['notes']:,} notes "
        f"({summary.get('acceptance_rate', 0):.1%})",
    ]
    rejected = summary.get("rejected") or {}
    if rejected:
        lines += ["", "| rejected: first failed check | notes |", "|---|---|"]
        lines += [f"| {reason} | {count:,} |" for reason, count in rejected.items()]
    return [*lines, ""]
