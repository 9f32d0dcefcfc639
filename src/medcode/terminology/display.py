"""Rich rendering of code information for the command line."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from medcode.records import System
from medcode.terminology.lookup import CodeInfo

_NOTE_TITLES = {
    "excludes1": "Excludes1",
    "excludes2": "Excludes2",
    "code_first": "Code first",
    "use_additional_code": "Use additional code",
    "code_also": "Code also",
}
_MAX_CHILDREN = 40


def print_code_info(console: Console, info: CodeInfo) -> None:
    """Print one code: description, billable status, hierarchy, notes, categories, HCC."""
    title = Text.assemble((info.code, "bold cyan"), "  ", (info.system.value, "dim"))
    console.print(title)
    console.print(f"  {info.description}")
    if info.system is System.ICD10CM:
        status = (
            "[green]billable[/green]"
            if info.billable
            else ("[yellow]not billable[/yellow]: needs more characters; code one of its children")
        )
        console.print(f"  {status}")
        if info.parents:
            chain = " > ".join(code for code, _ in reversed(info.parents))
            console.print(f"  [dim]hierarchy:[/dim] {chain} > {info.code}")
    else:
        console.print(f"  [dim]kind:[/dim] {info.kind}")
        if info.em is not None:
            em = info.em
            parts = [
                f"setting {em.setting.value}",
                f"patient {em.patient.value}",
                f"level {em.level}",
            ]
            if em.mdm:
                parts.append(f"MDM {em.mdm.value}")
            if em.time_min is not None:
                parts.append(f"time >= {em.time_min} min")
            if em.age_range:
                low, high = em.age_range
                parts.append(f"age {low}-{high if high is not None else ''}")
            console.print("  [dim]E/M:[/dim] " + ", ".join(parts))
    for kind, notes in info.notes.items():
        console.print(f"  [bold]{_NOTE_TITLES[kind]}[/bold]")
        for note in notes:
            where = "" if note.at == info.code else f" [dim](at {note.at})[/dim]"
            text = note.text.replace(":\n", ": ").replace("\n", "; ")
            console.print(f"    - {text}{where}", highlight=False)
    if info.seventh_characters:
        console.print("  [bold]7th character[/bold]")
        for char, meaning in info.seventh_characters.items():
            console.print(f"    {char}  {meaning}")
    if info.categories:
        console.print("  [bold]Categories[/bold]")
        for membership in info.categories:
            console.print(
                f"    {membership.category}: {membership.label} [dim]({membership.source})[/dim]",
                highlight=False,
            )
    if info.children:
        table = Table(title="children", show_edge=False, title_justify="left")
        table.add_column("code", style="cyan")
        table.add_column("description")
        for code, description in info.children[:_MAX_CHILDREN]:
            table.add_row(code, description)
        if len(info.children) > _MAX_CHILDREN:
            table.add_row("…", f"{len(info.children) - _MAX_CHILDREN} more")
        console.print(table)
    console.print()


def code_set_tour(console: Console) -> None:
    """The demo's current content: a walk through the code sets medcode builds on."""
    from medcode.terminology import cpt, hcc, icd10cm
    from medcode.terminology.categories import shipped_categories
    from medcode.terminology.lookup import describe
    from medcode.terminology.search import CodeSearch

    console.rule("medcode code sets")
    console.print(
        f"ICD-10-CM {icd10cm.RELEASE} tabular: {len(icd10cm.all_codes()):,} codes; "
        f"CPT/HCPCS table: {len(cpt.procedure_table()):,} codes; HCC: {hcc.MODEL}."
    )
    for name, category in shipped_categories().items():
        console.print(f"  category {name}: {len(category.entries)} entries ({category.label})")
    console.rule("look-ups")
    for system, code in [
        (System.ICD10CM, "E11.22"),
        (System.CPT, "99214"),
        (System.ICD10CM, "E11.2"),
    ]:
        print_code_info(console, describe(system, code))
    console.rule("7th characters with placeholder X")
    for base, char in [("S72.001", "A"), ("T36.0X5", "A"), ("W19", "D")]:
        full = icd10cm.with_seventh(base, char)
        console.print(f"  {base} + {char} -> [bold]{full}[/bold]  {icd10cm.description(full)}")
    console.rule("CMS-HCC V28")
    for code in ("E11.22", "I50.22", "N18.6", "J44.9"):
        found = ", ".join(str(h) for h in hcc.hccs(code)) or "none"
        console.print(f"  {code}: {found}")
    console.rule("search")
    index = CodeSearch.build()
    for query in ("type 2 diabetes kidney", "oxygen concentrator"):
        hits = index.search(query, limit=3)
        console.print(f"  {query!r}: " + "; ".join(f"{h.code} {h.description}" for h in hits))
    policy_example(console)


def policy_example(console: Console) -> None:
    """Code the packaged example encounter with the policy engine and show each code's rule."""
    from medcode.datafiles import load_yaml, package_data
    from medcode.policy import code
    from medcode.records import Encounter

    path = package_data("examples/encounter.yaml")
    result = code(Encounter.from_dict(load_yaml(path)))
    console.rule("policy engine: facts -> gold codes")
    console.print(f"  encounter {result.encounter_id} ({path.name}):")
    table = Table(show_edge=False)
    for column in ("#", "code", "system", "description", "rule"):
        table.add_column(column)
    for number, item in enumerate(result.codes, start=1):
        table.add_row(str(number), item.code, item.system.value, item.description, item.rule)
    console.print(table)
