"""Each three-claims study's plain answer follows the rule it pre-registered, on hand-made report tables."""
import pytest

from cory.errors import UsageError
from cory.studies.answer import answer_section, every_level_above, fewer_collapses, per_agent_some_level_above, plain_answer

AGENTS = ["CORY agent A", "CORY agent B"]
SEEDS = {"default": [0, 1, 2, 3, 4]}


def frontier(by_agent: dict[str, list[str]], baseline: str = "PPO", seeds: int = 5) -> dict:
    """Report tables whose reward-at-KL rows carry the given labels (levels 3, 5, 8, ...)."""
    rows = {f"reward at kl: {agent} - {baseline}": [{"level": level, "seeds": seeds, "label": label, "seeds_needed": 12 + i}
                                                    for i, (level, label) in enumerate(zip((3, 5, 8, 12), labels))]
            for agent, labels in by_agent.items()}
    return {"frontier": {"default": {"frontier": rows}}}


def test_every_level_above_holds_only_when_every_agent_and_level_is_above_0():
    assert "**holds**" in every_level_above(frontier({a: ["above 0", "above 0"] for a in AGENTS}), AGENTS, "PPO", SEEDS)[0]
    one_below = frontier({AGENTS[0]: ["above 0", "above 0"], AGENTS[1]: ["above 0", "below 0"]})
    assert "**does not hold**" in every_level_above(one_below, AGENTS, "PPO", SEEDS)[0]
    one_bounded = frontier({AGENTS[0]: ["above 0", "bounded within +-0.1"], AGENTS[1]: ["above 0", "above 0"]})
    assert "**does not hold**" in every_level_above(one_bounded, AGENTS, "PPO", SEEDS)[0]
    early = frontier({a: ["not decided (3 seeds < 5)", "above 0"] for a in AGENTS}, seeds=3)
    assert every_level_above(early, AGENTS, "PPO", SEEDS)[0].startswith(
        "**not decided (3 of 5 seeds landed; at this spread ~12 seeds would be needed)**")


def test_per_agent_some_level_above_answers_each_agent_by_the_levels_it_reached():
    tables = frontier({AGENTS[0]: ["above 0", "undecided (~9 seeds at this spread)", "not reached (3 of 5 seeds in both arms; 5 needed)"],
                       AGENTS[1]: ["bounded within +-0.1", "below 0", "not reached (2 of 5 seeds in both arms; 5 needed)"]})
    a, b = per_agent_some_level_above(tables, AGENTS, "PPO", SEEDS)
    assert a.startswith("- CORY agent A against PPO: **holds**")
    assert b.startswith("- CORY agent B against PPO: **does not hold**")  # every level it reached: bounded or below
    mixed = frontier({AGENTS[0]: ["above 0", "below 0"], AGENTS[1]: ["undecided (~20 seeds at this spread)", "bounded within +-0.1"]})
    a, b = per_agent_some_level_above(mixed, AGENTS, "PPO", SEEDS)
    assert "**not decided (5 of 5 seeds landed; the levels' decisions disagree)**" in a  # above at one level, below at another
    assert "**not decided (5 of 5 seeds landed; at this spread ~12 seeds would be needed)**" in b


def sweep(setting: str, counts: dict[str, tuple[int, int]]) -> list[dict]:
    return [{"setting": setting, "curve": curve, "collapsed": c, "seeds": n} for curve, (c, n) in counts.items()]


def test_fewer_collapses_needs_every_seed_and_a_significant_fisher_test_against_each_agent():
    seeds = {"lr10x": [0, 1, 2, 3, 4], "lr4x": [0, 1, 2, 3, 4], "lr2x": [0, 1, 2, 3, 4], "default": [0, 1, 2, 3, 4]}
    tables = {"sweep": [*sweep("lr10x", {"PPO": (5, 5), AGENTS[0]: (0, 5), AGENTS[1]: (0, 5)}),  # p = 0.008 each
                        *sweep("lr4x", {"PPO": (3, 5), AGENTS[0]: (3, 5), AGENTS[1]: (0, 5)}),
                        *sweep("lr2x", {"PPO": (4, 5), AGENTS[0]: (1, 5), AGENTS[1]: (0, 5)}),  # p = 0.206 for agent A
                        *sweep("default", {"PPO": (1, 2), AGENTS[0]: (0, 1), AGENTS[1]: (0, 1)})]}
    lr10x, lr4x, lr2x, default = fewer_collapses(tables, AGENTS, "PPO", seeds)
    assert lr10x.startswith("- lr10x: **holds**") and "Fisher exact p CORY agent A 0.008" in lr10x
    assert lr4x.startswith("- lr4x: **does not hold**")  # agent A collapsed as often as PPO
    assert lr2x.startswith("- lr2x: **not decided (fewer collapses than its seeds can separate)**")
    assert default.startswith("- default: **not decided (1 of 5 seeds landed in every arm)**")


def test_a_study_without_a_registered_rule_gets_no_answer_section():
    assert plain_answer("imdb-claims", {"seeds": SEEDS}, frontier({}), AGENTS, "PPO") == []
    assert answer_section("imdb-claims", {"seeds": SEEDS}, []) == []
    meta = {"seeds": SEEDS, "endpoints": {"answer": "the rule"}}
    lines = answer_section("imdb-frontier", meta, plain_answer("imdb-frontier", meta, frontier({a: ["above 0"] for a in AGENTS}), AGENTS, "PPO"))
    assert lines[:3] == ["## Answer to the claim", "", "Rule (pre-registered in study.json): the rule"]


def test_a_study_whose_cory_runs_have_not_landed_says_so():
    """Before: imdb-frontier with only PPO seed 0 in its ledger ended on the rule with no answer under it."""
    meta = {"seeds": SEEDS, "endpoints": {"answer": "the rule"}}
    lines = answer_section("imdb-frontier", meta, plain_answer("imdb-frontier", meta, frontier({}), [], "PPO"))
    assert lines[-2:] == ["**not decided** (no CORY run in the ledger yet)", ""]


def test_each_level_shows_the_difference_and_interval_it_was_decided_on():
    tables = frontier({AGENTS[0]: ["below 0", "not reached (1 of 5 seeds in both arms; 5 needed)"]})
    tables["frontier"]["default"]["frontier"][f"reward at kl: {AGENTS[0]} - PPO"][0].update(diff=-0.0634, low=-0.1191, high=-0.0109)
    (line,) = per_agent_some_level_above(tables, AGENTS[:1], "PPO", SEEDS)
    assert "KL 3: -0.063 [-0.119, -0.011] below 0; KL 5: not reached (1 of 5 seeds in both arms; 5 needed))" in line


def test_a_new_study_answers_by_the_rule_its_study_file_names_and_quotes_that_rule():
    meta = {"seeds": SEEDS, "frontier": {"answer": "per_agent_some_level_above"}}
    tables = frontier({AGENTS[0]: ["above 0"], AGENTS[1]: ["below 0"]})
    lines = answer_section("imdb-mine", meta, plain_answer("imdb-mine", meta, tables, AGENTS, "PPO"))
    assert lines[2].startswith("Rule (pre-registered in study.json): per_agent_some_level_above: For each agent: holds if its reward")
    assert lines[4].startswith("- CORY agent A against PPO: **holds**") and lines[5].startswith("- CORY agent B against PPO: **does not hold**")
    with pytest.raises(UsageError, match="study imdb-mine: answer rule 'best_of_three' is not one of"):
        plain_answer("imdb-mine", {"seeds": SEEDS, "frontier": {"answer": "best_of_three"}}, tables, AGENTS, "PPO")
