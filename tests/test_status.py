"""A study's own page keeps the Status and Findings its report writes, and every other section as written by hand."""
from cory.studies.status import replace_section, status_line, update_page

PAGE = "# results/s\n\n## Question\n\nwhy\n\n## Status\n\nrunning: 2 of 30 runs (2026-12-07)\n\n## Findings\n\nseed 0 only\n\nDetails: old\n\n## How to rebuild\n\n`make`\n"


def test_status_line_counts_the_runs_and_names_the_first_missing():
    assert status_line(15, []) == "complete: 15 of 15 runs"
    missing = [f"default/ppo-seed{s}" for s in range(5)]
    assert status_line(3, missing) == "running: 3 of 8 runs landed (missing: " + ", ".join(missing[:4]) + ", ...)"


def test_replace_section_rewrites_one_section_and_keeps_the_others():
    page = replace_section(PAGE, "Findings", "**holds**")
    assert page == PAGE.replace("seed 0 only\n\nDetails: old\n\n", "**holds**\n\n")
    assert replace_section(PAGE, "Status", "complete") == PAGE.replace("running: 2 of 30 runs (2026-12-07)", "complete")
    assert replace_section("# t\n", "Findings", "x") == "# t\n\n## Findings\n\nx\n\n"  # a page without it: appended
    last = replace_section("# t\n\n## Findings\n\nold\n", "Findings", "new")  # the last section of the page
    assert last == "# t\n\n## Findings\n\nnew\n\n"


def test_update_page_writes_status_and_findings_and_leaves_a_study_without_a_page_alone(tmp_path):
    assert not update_page(tmp_path, 1, [], ["**holds**"]) and not (tmp_path / "README.md").exists()
    (tmp_path / "README.md").write_text(PAGE)
    assert update_page(tmp_path, 28, ["lr4x/cory-seed4", "default/cory-seed4"], ["- lr10x: **does not hold**"])
    page = (tmp_path / "README.md").read_text()
    assert "## Status\n\nrunning: 28 of 30 runs landed (missing: lr4x/cory-seed4, default/cory-seed4)\n\n## Findings" in page
    assert "## Findings\n\n- lr10x: **does not hold**\n\nDetails: [summary.md](summary.md)" in page
    assert page.startswith("# results/s\n\n## Question\n\nwhy\n\n") and page.endswith("## How to rebuild\n\n`make`\n")
