"""``medcode synth``: sample, code, render and write a corpus, shard by shard.

Every note is a function of (seed, shard index, position): the same options give
byte-identical shards whatever the number of workers, and ``--shard K/N`` lets a scheduler
spread the shards over machines.
"""

from __future__ import annotations

import json
import math
import random
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from medcode import __version__
from medcode.errors import MedcodeError
from medcode.synth.writer import SPLITS, clean_incomplete, marker_path, write_shard

SHARD_SIZE = 5000
OOD_SHARE_OF_TEST = 0.5


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides a corpus; saved as ``synth_config.json`` beside it."""

    profile: str = "primary_care"
    n: int = 1000
    seed: int = 0
    shards: int = 0  # 0: ceil(n / 5000)
    format: str = "parquet"
    templates: str | None = None
    generator_version: str = __version__

    def shard_count(self) -> int:
        return self.shards or max(1, math.ceil(self.n / SHARD_SIZE))

    def shard_range(self, shard: int) -> tuple[int, int]:
        count = self.shard_count()
        size = math.ceil(self.n / count)
        return min(self.n, shard * size), min(self.n, (shard + 1) * size)


@dataclass
class _World:
    """What a worker builds once: catalog, profile, templates, sampler tables."""

    config: SynthConfig
    sampler: object
    templates: dict[tuple[str, bool], list] = field(default_factory=dict)


@cache
def _world(config: SynthConfig) -> _World:
    from medcode.synth.catalog import shipped_catalog
    from medcode.synth.profiles import load_profile, profile_path
    from medcode.synth.render import NOTE_TYPES, note_type
    from medcode.synth.sampler import IdentityPool, Sampler
    from medcode.synth.templates import load_templates, shipped_templates

    profile = load_profile(profile_path(config.profile))
    catalog = shipped_catalog()
    unknown = sorted(set(profile.concept_scale) - set(catalog.concepts))
    if unknown:
        raise MedcodeError(
            f"{profile.path}: concept_scale names unknown concept(s) {', '.join(unknown)}"
        )
    templates = (
        load_templates(config.templates, user=True)
        if config.templates
        else list(shipped_templates())
    )
    world = _World(config, Sampler(catalog, profile, IdentityPool(config.seed)))
    for template in templates:
        world.templates.setdefault((template.note_type, template.ood), []).append(template)
    needed = {note_type(v.kind, new) for v in profile.visits for new in (False, True)}
    missing = sorted(t for t in needed if not world.templates.get((t, False)))
    if missing:
        raise MedcodeError(
            f"no training template for note type(s) {', '.join(missing)} "
            f"(note types: {', '.join(NOTE_TYPES)})"
        )
    return world


def split_of(patient_id: str) -> str:
    """train / validation / test by patient (80/10/10), stable across runs and machines."""
    bucket = zlib.crc32(patient_id.encode()) % 100
    return "train" if bucket < 80 else "validation" if bucket < 90 else "test"


def generate_notes(config: SynthConfig, shard: int, progress=None):
    """Yield the rows of one shard, in order."""
    for *_, row in generate_scenarios(config, shard, progress):
        yield row


def generate_scenarios(config: SynthConfig, shard: int, progress=None):
    """Yield ``(scenario, result, text, row)`` for each note of one shard, in order: the
    sampled facts, the policy engine's codes, the rendered text and the row written."""
    from medcode.synth.phrasings import derived_rng
    from medcode.synth.render import build_context, note_type, strip_marks
    from medcode.synth.sampler import patient_age
    from medcode.synth.texture import texture
    from medcode.terminology.categories import category_names

    world = _world(config)
    sampler = world.sampler
    profile = sampler.profile
    rng = random.Random(f"{config.seed}:{shard}")
    start, end = config.shard_range(shard)
    position, patient_number = start, 0
    from medcode.synth.choice import WeightedChoice

    visits_per_patient = WeightedChoice(
        list(profile.encounters_per_patient), list(profile.encounters_per_patient.values())
    )
    while position < end:
        patient_id = f"p{config.seed}-{shard:05d}-{patient_number:05d}"
        patient_number += 1
        age, sex = patient_age(rng, profile)
        patient = sampler.patient(rng, patient_id, age, sex)  # the same patient in every note
        split = split_of(patient_id)
        for _ in range(min(visits_per_patient.pick(rng), end - position)):
            note_id = f"n{config.seed}-{position:08d}"
            scenario, result = sampler.scenario(rng, encounter_id=note_id, patient=patient)
            visit = scenario.encounter.visit
            kind = note_type(visit.kind, visit.new_patient)
            note_split, ood = split, False
            if (
                split == "test"
                and world.templates.get((kind, True))
                and rng.random() < OOD_SHARE_OF_TEST
            ):
                note_split, ood = "test_ood", True
            template = rng.choice(world.templates[(kind, ood)])
            context = build_context(scenario, rng, template.styles, kind, template.family)
            # shorthand and dictation artefacts outside the markers (data/synth/texture.yaml)
            marked = texture(
                template.template.render(context), template.family, derived_rng(rng, "texture")
            ).text
            text, spans = strip_marks(marked)
            codes = []
            for item, facts in zip(result.codes, result.facts, strict=True):
                evidence = [{"start": s, "end": e} for f in facts for s, e in spans.get(f, ())]
                codes.append(
                    {
                        "code": item.code,
                        "system": item.system.value,
                        "description": item.description,
                        "categories": category_names(item.code, item.system),
                        "rule": item.rule,
                        "evidence": evidence,
                    }
                )
            row = {
                "id": note_id,
                "patient_id": patient_id,
                "split": note_split,
                "note_type": kind,
                "template_family": template.family,
                "text": text,
                "codes": codes,
                "encounter": json.dumps(scenario.encounter.to_dict(), separators=(",", ":")),
                "seed": config.seed,
                "generator_version": config.generator_version,
            }
            yield scenario, result, text, row
            position += 1
            if progress is not None:
                progress(1)


def build_shard(config: SynthConfig, out: str, shard: int, progress=None) -> dict[str, int]:
    """Generate and write one shard; returns the number of notes per split."""
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for row in generate_notes(config, shard, progress):
        rows[row["split"]].append(row)
    return write_shard(Path(out), shard, config.shard_count(), rows, config.format)


def _check_config(out: Path, config: SynthConfig) -> None:
    path = out / "synth_config.json"
    if path.exists():
        previous = json.loads(path.read_text())
        previous.pop("rewrite", None)  # the LLM rewrite's summary (synth/rewrite.py)
        if previous != asdict(config):
            differing = sorted(k for k in previous if previous.get(k) != asdict(config).get(k))
            raise MedcodeError(
                f"{out} holds a corpus made with other options "
                f"({', '.join(differing)}); choose a new --out"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(config), indent=2, sort_keys=True))
        temporary.replace(path)


def run(
    config: SynthConfig,
    out: Path,
    *,
    workers: int = 1,
    only_shard: int | None = None,
    progress=None,
) -> dict[str, object]:
    """Generate the corpus (or one shard of it) into ``out``; keeps complete shards."""
    if config.n < 1:
        raise MedcodeError("--n must be at least 1")
    if config.format not in ("parquet", "jsonl"):
        raise MedcodeError(f"--format {config.format!r}: use parquet or jsonl")
    _world(config)  # validate profile, catalog and templates before anything is written
    _check_config(out, config)
    shards = config.shard_count()
    if only_shard is not None and not 0 <= only_shard < shards:
        raise MedcodeError(f"--shard {only_shard}/{shards}: K must be 0..{shards - 1}")
    clean_incomplete(out, shards, config.format)
    wanted = [only_shard] if only_shard is not None else list(range(shards))
    todo = [s for s in wanted if not marker_path(out, s, shards).exists()]
    kept = len(wanted) - len(todo)
    if progress is not None and kept:
        progress(
            sum(
                config.shard_range(s)[1] - config.shard_range(s)[0] for s in wanted if s not in todo
            )
        )
    if workers <= 1 or len(todo) <= 1:
        for shard in todo:
            build_shard(config, str(out), shard, progress)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(build_shard, config, str(out), s): s for s in todo}
            for future in as_completed(futures):
                future.result()
                if progress is not None:
                    low, high = config.shard_range(futures[future])
                    progress(high - low)
    complete = all(marker_path(out, s, shards).exists() for s in range(shards))
    return {"shards": shards, "written": len(todo), "kept": kept, "complete": complete}
