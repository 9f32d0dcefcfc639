"""Candidate retriever: recall@k of (a) the TF-IDF ranking alone (the baseline: the
retriever's own coder, measured in the same run), (b) the lexicon alone, (c) the merged
retriever, each lexicon also as a literal one (no word variants, no free word order: the
baseline of the clinical-English reading), and the merged one with k by the note's needs,
on validation, test, test_ood and CodiEsp dev diagnoses (ICD-10-CM; evaluation only, never
tuned on); per set the vocabulary gap (gold
codes no lexicon phrase can reach) and the 20 codes most often missed at k = 20 with the
note words that belong to their phrases; and the speed of ``candidates``.

    .venv/bin/python benchmarks/bench_retriever.py [CORPUS] [--max-train N] [--codiesp DIR]
        [--save DIR]

Without CORPUS, a 20,000-note corpus (seed 5) is generated in a temporary folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from medcode.model.retriever import Lexicon, Retriever, recall_at_k, recall_of, words
from medcode.synth.card import read_rows
from medcode.terminology import cpt, icd10cm

KS = (5, 10, 20, 30, 50)


def _corpus(folder: Path) -> dict[str, tuple[list[str], list[list[str]]]]:
    splits: dict[str, tuple[list[str], list[list[str]]]] = {}
    for row in read_rows(folder, ["text", "codes", "split"]):
        texts, labels = splits.setdefault(row["split"], ([], []))
        texts.append(row["text"])
        labels.append([c["code"] for c in row["codes"]])
    return splits


def _codiesp(folder: Path) -> tuple[list[str], list[list[str]]] | None:
    from medcode.eval.codiesp import load

    if not (folder / "dev").is_dir():
        return None
    notes, gold = load(folder, "dev")
    codes = [
        [icd10cm.normalize(c) if icd10cm.looks_like(c) else c for c in gold[n["id"]]] for n in notes
    ]
    return [n["text"] for n in notes], codes


def _tfidf_ranking(retriever: Retriever, texts: list[str], depth: int) -> list[list[str]]:
    codes = np.array(retriever.coder.codes)
    ranked = []
    for start in range(0, len(texts), 512):
        for row in retriever.coder.decision(texts[start : start + 512]):
            ranked.append(list(codes[np.argsort(-row, kind="stable")[:depth]]))
    return ranked


def _lexicon_ranking(retriever: Retriever, texts: list[str]) -> list[list[str]]:
    ranked = []
    for text in texts:
        scores = retriever.lexicon.scores(text)
        ranked.append(sorted(scores, key=lambda code: (-scores[code], code)))
    return ranked


def _icd_only(ranked: list[list[str]]) -> list[list[str]]:
    table = cpt.procedure_table()
    return [[code for code in row if code not in table] for row in ranked]


# words that say nothing about which code a note needs
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "as",
        "at",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "of",
        "on",
        "or",
        "other",
        "the",
        "to",
        "with",
        "without",
        "due",
        "unspecified",
        "specified",
        "type",
        "site",
    ]
)


def vocabulary_gap(
    retriever: Retriever, texts: list[str], gold: list[list[str]], k: int = 20, top: int = 20
) -> None:
    """Print the share of gold (note, code) pairs that no lexicon phrase of the code can
    reach (some word of every phrase is missing from the note, word order aside), and the
    ``top`` codes most often missed at ``k``: how often, how many of those misses were such
    gaps, and the note words that belong to the code's phrases (what should have found it)."""
    by_code = {
        code: [frozenset(p.split()) for p in phrases]
        for code, phrases in retriever.lexicon.phrases_by_code().items()
    }
    ranked = [[c.code for c in row] for row in retriever.candidates(texts, k=k)]
    procedures = cpt.procedure_table()
    pairs = gaps = no_phrase = retired = 0
    missed: Counter[str] = Counter()
    missed_gaps: Counter[str] = Counter()
    clues: dict[str, Counter[str]] = {}
    for text, codes, listed in zip(texts, gold, ranked, strict=True):
        tokens = set(words(text))
        for code in set(codes):
            pairs += 1
            phrases = by_code.get(code, [])
            no_phrase += not phrases
            gap = not any(phrase <= tokens for phrase in phrases)
            gaps += gap
            # a 2018 code deleted or expanded since (CodiEsp): no FY2026 phrase can name it
            retired += (
                gap
                and code not in procedures
                and icd10cm.looks_like(code)
                and not icd10cm.is_billable(code)
            )
            if code in listed:
                continue
            missed[code] += 1
            missed_gaps[code] += gap
            vocabulary = set().union(*phrases) - _STOP if phrases else set()
            clues.setdefault(code, Counter()).update(tokens & vocabulary)
    print(
        f"  vocabulary gap: {gaps / max(1, pairs):.3f} of {pairs:,} gold pairs have no lexicon "
        f"phrase whose words are all in the note ({no_phrase / max(1, pairs):.3f}: no phrase "
        f"for the code at all; {retired / max(1, pairs):.3f}: codes no longer billable in "
        "FY2026)"
    )
    print(f"  the {top} codes most often missed at k={k} (missed / of which gaps: note words "
          "of the code's phrases, most frequent first)")  # fmt: skip
    for code, count in missed.most_common(top):
        words_found = ", ".join(f"{w} ({n})" for w, n in clues[code].most_common(6)) or "-"
        print(
            f"    {code:<8} {count:>3} / {missed_gaps[code]:>3}  {_title(code)[:50]:<50}  "
            f"{words_found}"
        )


def _title(code: str) -> str:
    if icd10cm.is_valid(code):
        return icd10cm.description(code)
    entry = cpt.procedure_table().get(code)
    return entry.description if entry else "(not an FY2026 code)"


def _line(name: str, recall: dict[int, float]) -> str:
    return f"  {name:<34}" + "".join(f"{recall[k]:>8.3f}" for k in KS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path)
    parser.add_argument("--max-train", type=int, default=20_000)
    parser.add_argument("--codiesp", type=Path, default=Path("../shared/codiesp"))
    parser.add_argument("--save", type=Path, help="save the fitted retriever here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.corpus
        if folder is None:
            from medcode.synth.generate import SynthConfig, run

            folder = Path(tmp) / "corpus"
            started = time.perf_counter()
            run(SynthConfig(n=20_000, seed=5), folder, workers=2)
            print(f"generated 20,000 notes in {time.perf_counter() - started:.0f} s")
        splits = _corpus(folder)
    train_texts, train_labels = splits["train"]
    train_texts, train_labels = train_texts[: args.max_train], train_labels[: args.max_train]

    started = time.perf_counter()
    retriever = Retriever.fit(train_texts, train_labels, k=30)
    print(
        f"fit on {len(train_texts):,} training notes in {time.perf_counter() - started:.0f} s "
        f"(lexicon: {len(retriever.lexicon):,} phrases; TF-IDF coder: "
        f"{len(retriever.coder.codes):,} codes)"
    )
    if args.save:
        retriever.save(args.save)
    unreserved = Retriever(
        retriever.coder,
        retriever.lexicon,
        k=30,
        merge=retriever.merge,
        config=dataclasses.replace(retriever.config, reserve=0.0),
    )

    familiar = Retriever(
        retriever.coder,
        retriever.lexicon,
        k=30,
        merge=dataclasses.replace(retriever.merge, unfamiliar_above=None),
        config=retriever.config,
    )
    # candidates by the note's needs, as the CPU recipe lists them (k 20, k_max 40)
    needs = Retriever(
        retriever.coder,
        retriever.lexicon,
        k=20,
        merge=retriever.merge,
        config=dataclasses.replace(retriever.config, k=20, k_max=40),
    )
    # the baseline of the lexicon's clinical English (word variants, free word order): the
    # same retriever with a lexicon that reads phrases only as written
    literal = Retriever(
        retriever.coder,
        Lexicon.build(clinical_english=False),
        k=30,
        merge=retriever.merge,
        config=retriever.config,
    )

    sets = [(name, *splits[name]) for name in ("validation", "test", "test_ood") if name in splits]
    real = _codiesp(args.codiesp)
    if real is not None:
        sets.append(("codiesp dev (ICD-10-CM)", *real))
    else:
        print(f"CodiEsp not found at {args.codiesp}: skipped")
    print("\nrecall@k (micro, gold (note, code) pairs among the top k)")
    print(f"  {'':<34}" + "".join(f"{'@' + str(k):>8}" for k in KS))
    for name, texts, gold in sets:
        unfamiliar = sum(retriever.unfamiliar(text) for text in texts)
        print(
            f"{name} ({len(texts):,} notes, {sum(len(set(g)) for g in gold):,} gold codes; "
            f"{unfamiliar:,} unfamiliar to the merge, above "
            f"{retriever.merge.unfamiliar_above or 0:.3f} unknown words)"
        )
        tfidf_ranked = _tfidf_ranking(retriever, texts, 400)
        tfidf = recall_of(tfidf_ranked, gold, KS)
        merged = recall_at_k(retriever, texts, gold, KS)
        print(_line("(a) TF-IDF ranking", tfidf))
        lexicon = recall_of(_lexicon_ranking(retriever, texts), gold, KS)
        literal_lexicon = recall_of(_lexicon_ranking(literal, texts), gold, KS)
        print(_line("(b) lexicon", lexicon))
        print(_line("    lexicon, phrases only as written", literal_lexicon))
        print(
            f"  {'    clinical English / as written':<34}"
            + "".join(f"{lexicon[k] / max(literal_lexicon[k], 1e-9):>8.2f}" for k in KS)
        )
        print(_line("(c) merged", merged))
        print(_line("    merged, phrases only as written", recall_at_k(literal, texts, gold, KS)))
        print(_line("    merged, no lexicon reserve", recall_at_k(unreserved, texts, gold, KS)))
        print(_line("    merged, no unfamiliar-note rule", recall_at_k(familiar, texts, gold, KS)))
        print(f"  {'merged / TF-IDF':<34}" + "".join(f"{merged[k] / tfidf[k]:>8.2f}" for k in KS))
        lists = needs.candidates(texts)
        hits = sum(len(set(g) & {c.code for c in row}) for g, row in zip(gold, lists, strict=True))
        print(
            f"  merged, k by the note's needs ({needs.k}-{needs.config.k_max}): recall "
            f"{hits / max(1, sum(len(set(g)) for g in gold)):.3f} at a mean k of "
            f"{sum(map(len, lists)) / max(1, len(lists)):.1f}"
        )
        if name.startswith("codiesp"):
            icd = [[c.code for c in row] for row in unreserved.candidates(texts, k=400)]
            print(
                _line(
                    "(a) TF-IDF, ICD-10-CM codes only", recall_of(_icd_only(tfidf_ranked), gold, KS)
                )
            )
            print(_line("(c) merged*, ICD-10-CM codes only", recall_of(_icd_only(icd), gold, KS)))
            print("  (* no lexicon reserve: its places are a share of k)")
        vocabulary_gap(retriever, texts, gold)

    texts = (splits.get("test") or splits["validation"])[0]
    retriever.candidates(texts[:50])  # warm caches
    timings = {
        "candidates (k=30)": lambda: retriever.candidates(texts, k=30),
        "  of which TF-IDF scores": lambda: retriever.coder.decision(texts),
        "  of which lexicon matching": lambda: [retriever.lexicon.evidence(t) for t in texts],
    }
    print()
    for name, work in timings.items():
        started = time.perf_counter()
        work()
        rate = len(texts) / (time.perf_counter() - started)
        print(f"{name}: {rate:,.0f} notes/s" + (" (target >= 200)" if "k=30" in name else ""))


if __name__ == "__main__":
    main()
