"""A study's own page (results/NAME/README.md) keeps two sections that its report writes: 'Status' (how many of
the pre-registered runs have landed) and 'Findings' (the plain answer by its pre-registered rule), so that the page
never lags the ledger. The rest of the page (question, plan, how to rebuild) is written by hand and left as it is.
"""
from __future__ import annotations

import re
from pathlib import Path

from cory.platform.paths import atomic_file

PAGE = "README.md"


def first_runs(runs: list[str], shown: int = 4) -> str:
    """'a, b, c, d, ...': the first runs of a list, and '...' where it goes on."""
    return ", ".join(runs[:shown]) + (", ..." if len(runs) > shown else "")


def status_line(landed: int, missing: list[str]) -> str:
    """'complete: 15 of 15 runs', or 'running: 2 of 24 runs landed (missing: a, b, c, d, ...)'."""
    total = landed + len(missing)
    if not missing:
        return f"complete: {total} of {total} runs"
    return f"running: {landed} of {total} runs landed (missing: {first_runs(missing)})"


def replace_section(page: str, heading: str, body: str) -> str:
    """`page` with the text under '## heading' (up to the next '## ' heading) replaced by `body`; appended at the end
    where the page has no such section."""
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = f"## {heading}\n\n{body.strip()}\n\n"
    if pattern.search(page):
        return pattern.sub(lambda _: section, page, count=1)
    return page.rstrip("\n") + "\n\n" + section


def update_page(study_dir: Path, landed: int, missing: list[str], answer: list[str]) -> bool:
    """Rewrite the Status and Findings sections of the study's page from its report; False (nothing written) where
    the study has no page."""
    path = Path(study_dir) / PAGE
    if not path.exists():
        return False
    findings = "\n".join([*answer, "", "Details: [summary.md](summary.md) (rebuilt from the ledger by the report)."])
    page = replace_section(path.read_text(), "Status", status_line(landed, missing))
    atomic_file(path, replace_section(page, "Findings", findings).rstrip("\n") + "\n")
    return True
