"""Each CORY agent as an observer: given the other agent's answer, and given its own.

The paper's claim 3 is that after training either agent works alone (the `alone` evaluation). Role-specific
policies are a known failure of multi-agent LLM training, so the observer role is measured as well: agent i
answers the observer prompt built from the query and a pioneer response, where the pioneer response is what
the other agent (or agent i itself) answered alone on the same prompt with the same sampling seed.
"""
from __future__ import annotations

from cory.eval.heldout import evaluate_agent, twins
from cory.tasks.task import Prompt

OBSERVER_ROLES = ("observer_of_other", "observer_of_self")


def evaluate_observer_roles(cory, prompts: list[Prompt], gen_kwargs: dict, alone: dict[str, dict], seed: int = 0) -> dict[tuple[str, str], dict]:
    """(agent name, role) -> evaluation, for both observer roles of every agent; `alone[name]` is each agent's
    evaluation alone on `prompts` (its responses become the pioneer responses). The other agent is the one
    before it in the initial chain (with two agents: the other one); the observer sees one earlier response.
    Agents with identical weights (`twins`: CORY's at step 0) share their evaluations, exactly."""
    queries = [p.input_ids for p in prompts]
    same, done = twins(cory.names, cory.agents), {}  # (observer, leader) up to twins -> its evaluation: each computed once
    results = {}
    for i, (name, agent) in enumerate(zip(cory.names, cory.agents)):
        leaders = {"observer_of_other": cory.names[i - 1], "observer_of_self": name}
        for role in OBSERVER_ROLES:
            key = same[name], same[leaders[role]]
            if key not in done:
                pioneer_responses = alone[leaders[role]]["responses"]
                obs_queries, _ = cory.observer_queries(agent, prompts, queries, [pioneer_responses], gen_kwargs["max_new_tokens"])
                done[key] = evaluate_agent(agent, cory.task, prompts, gen_kwargs, seed=seed, queries=obs_queries)
            results[name, role] = done[key]
    return results
