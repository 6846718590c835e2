"""A study's plain answer to its claim ("holds", "does not hold", "not decided, N seeds would be needed"), by the
rule it pre-registered (study.json `frontier.answer`, one of `RULES`, quoted above the answer in its report).

Each rule is a function here. A study names its rule when it is written (`scripts/compare.py --answer`); the three
claims studies registered theirs in prose before that key existed (`endpoints.answer`) and are matched to it by name
(`RULE_OF_STUDY`); a study with neither gets no answer section (older studies decide their endpoints in their own
sections). The rules read the report's own tables: the seed-level frontier decisions (`cory.studies.frontier`) and
the collapse counts (`cory.studies.tables.sweep_table`) with Fisher's exact test (`cory.studies.endpoints.fisher_exact`).
"""
from __future__ import annotations

from cory.errors import UsageError
from cory.studies.endpoints import fisher_exact
from cory.studies.frontier import comparison_key
from cory.studies.intervals import MIN_DECISION_SEEDS

ABOVE, BELOW, BOUNDED = "above 0", "below 0", "bounded"


def _reward_at_kl(tables: dict, setting: str, agent: str, baseline: str) -> list[dict]:
    return tables["frontier"].get(setting, {}).get("frontier", {}).get(comparison_key(agent, baseline), [])


def _needed(rows: list[dict], wanted: int) -> str:
    """How many seeds landed, and the seeds a decision would need at this spread (the most any undecided level
    needs; `cory.studies.intervals.label`'s projection, conservative below 5 seeds where t's quantile is large)."""
    needs = [r.get("seeds_needed", MIN_DECISION_SEEDS) for r in rows if not r["label"].startswith((ABOVE, BELOW, BOUNDED))]
    landed = max((r["seeds"] for r in rows), default=0)
    if rows and not needs:  # every level decided, and they disagree: more seeds would not settle it
        return f"not decided ({landed} of {wanted} seeds landed; the levels' decisions disagree)"
    return f"not decided ({landed} of {wanted} seeds landed; at this spread ~{max(needs or [MIN_DECISION_SEEDS])} seeds would be needed)"


def _levels(rows: list[dict]) -> str:
    """Each level's label with the difference and the interval it was decided on, where two or more seeds gave one."""
    return "; ".join(f"KL {r['level']:g}: " + (f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] " if "diff" in r else "") + r["label"]
                     for r in rows)


def every_level_above(tables: dict, agents: list[str], baseline: str, seeds: dict) -> list[str]:
    """Holds if, for both agents, reward at every KL level is decided above 0 against the
    baseline; does not hold if any is decided below 0 or bounded; else not decided, with the seeds it would need."""
    rows = {agent: _reward_at_kl(tables, "default", agent, baseline) for agent in agents}
    flat = [r for agent_rows in rows.values() for r in agent_rows]
    if flat and all(r["label"] == ABOVE for r in flat):
        verdict = "holds"
    elif any(r["label"] == BELOW or r["label"].startswith(BOUNDED) for r in flat):
        verdict = "does not hold"
    else:
        verdict = _needed(flat, len(seeds["default"]))
    return [f"**{verdict}** (reward at matched KL against {baseline})", "",
            *[f"- {agent}: {_levels(agent_rows) or 'no level read'}" for agent, agent_rows in rows.items()]]


def per_agent_some_level_above(tables: dict, agents: list[str], baseline: str, seeds: dict) -> list[str]:
    """For each agent: holds if its reward at matched KL is decided above 0 against the baseline at
    one or more levels and below 0 at none; does not hold if it is below 0 or bounded at every level reached;
    else not decided, with the seeds it would need."""
    lines = []
    for agent in agents:
        rows = _reward_at_kl(tables, "default", agent, baseline)
        reached = [r for r in rows if not r["label"].startswith("not reached")]
        labels = [r["label"] for r in reached]
        if ABOVE in labels and BELOW not in labels:
            verdict = "holds"
        elif reached and all(label == BELOW or label.startswith(BOUNDED) for label in labels):
            verdict = "does not hold"
        else:
            verdict = _needed(rows, len(seeds["default"]))
        lines.append(f"- {agent} against {baseline}: **{verdict}** ({_levels(rows) or 'no level read'})")
    return lines


def fewer_collapses(tables: dict, agents: list[str], baseline: str, seeds: dict) -> list[str]:
    """Per setting: holds if the baseline collapses in significantly more seeds than
    each CORY agent (two-sided Fisher exact p < 0.05); does not hold if a CORY agent collapses as often or more;
    else not decided (fewer collapses than its seeds can separate); nothing is decided before every seed landed."""
    lines = []
    for setting, wanted in seeds.items():
        counts = {r["curve"]: r for r in tables["sweep"] if r["setting"] == setting}
        shown = ", ".join(f"{arm} {counts[arm]['collapsed']}/{counts[arm]['seeds']}" for arm in (baseline, *agents) if arm in counts)
        landed = min((counts[arm]["seeds"] for arm in (baseline, *agents) if arm in counts), default=0)
        if landed < len(wanted) or any(arm not in counts for arm in (baseline, *agents)):
            verdict = f"not decided ({landed} of {len(wanted)} seeds landed in every arm)"
        else:
            base = counts[baseline]
            p = {agent: fisher_exact(base["collapsed"], base["seeds"], counts[agent]["collapsed"], counts[agent]["seeds"])
                 for agent in agents}
            if all(base["collapsed"] > counts[a]["collapsed"] and p[a] < 0.05 for a in agents):
                verdict = "holds"
            elif any(counts[a]["collapsed"] >= base["collapsed"] for a in agents):
                verdict = "does not hold"
            else:
                verdict = "not decided (fewer collapses than its seeds can separate)"
            shown += "; Fisher exact p " + ", ".join(f"{a} {p[a]:.3f}" for a in agents)
        lines.append(f"- {setting}: **{verdict}** (collapsed seeds: {shown or 'none landed'})")
    return lines


RULES = {rule.__name__: rule for rule in (per_agent_some_level_above, every_level_above, fewer_collapses)}
"""the rules a study may register; the first is a new study's default (claim 1 on the frontier)"""
RULE_OF_STUDY = {
    "imdb-critic-free-matched": "every_level_above",
    "imdb-frontier": "per_agent_some_level_above",
    "imdb-robustness": "fewer_collapses",
}
"""the rules of the studies registered in prose before study.json named one (their files stay as committed)"""


def rule_of(name: str, meta: dict) -> str | None:
    """The study's registered rule: study.json's `frontier.answer`, else its prose registration's; None without one."""
    rule = meta.get("frontier", {}).get("answer") or RULE_OF_STUDY.get(name)
    if rule is not None and rule not in RULES:
        raise UsageError(f"study {name}: answer rule {rule!r} is not one of {sorted(RULES)}")
    return rule


def rule_text(rule: str) -> str:
    """A rule's registered wording: its docstring on one line."""
    return " ".join(RULES[rule].__doc__.split())


def plain_answer(name: str, meta: dict, tables: dict, agents: list[str], baseline: str) -> list[str]:
    """The answer to the study's claim from this ledger, by its registered rule; [] for a study without one."""
    rule = rule_of(name, meta)
    if rule is None:
        return []
    return RULES[rule](tables, agents, baseline, meta["seeds"]) if agents else ["**not decided** (no CORY run in the ledger yet)"]


def answer_section(name: str, meta: dict, answer: list[str]) -> list[str]:
    """The report's closing section: the pre-registered rule (the study's prose where it wrote one, else the named
    rule's wording), then the answer under it; [] without an answer."""
    if not answer:
        return []
    rule = rule_of(name, meta)
    registered = meta.get("endpoints", {}).get("answer") or f"{rule}: {rule_text(rule)}"
    return ["## Answer to the claim", "", f"Rule (pre-registered in study.json): {registered}", "", *answer, ""]
