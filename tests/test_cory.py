"""CORY: knowledge transfer, collective reward, role exchange, one shared reference, LoRA sharing, learning."""
import numpy as np
import pytest
import torch

from cory.algorithms.agents import build_policies
from cory.config import RunConfig
from cory.algorithms.cory import CORY, CORYConfig, collective_scores, observer_prompts, roles_at
from cory.ppo.policy import FrozenReference, ValueHeadPolicy
from cory.ppo.trainer import PPOTrainer
from cory.ppo.config import PPOConfig
from cory.tasks.templates import check_observer_template
from tests.learning import cory_learns, target_token_agents
from tests.tiny import TextTask, as_prompts, tiny_gpt2

EOS = 50256
TEMPLATE = 'I can make this sentence "{query}{pioneer_response}" more positive: {query}'


def test_observer_prompt_holds_the_pioneer_response_where_the_template_puts_it(tokenizer):
    queries = [torch.tensor(tokenizer("The movie")["input_ids"]), torch.tensor(tokenizer("I watched this film")["input_ids"])]
    responses = [torch.tensor(tokenizer(" was great fun")["input_ids"] + [EOS]), torch.tensor(tokenizer(" twice")["input_ids"])]
    prompts = observer_prompts(TEMPLATE, as_prompts(queries, tokenizer), [responses], tokenizer, {EOS})
    for q, r, p in zip(queries, responses, prompts):
        q_text, r_text = tokenizer.decode(q), tokenizer.decode(r, skip_special_tokens=True)
        assert tokenizer.decode(p) == TEMPLATE.format(query=q_text, pioneer_response=r_text)
        r_ids = [t for t in r.tolist() if t != EOS]
        start = len(tokenizer('I can make this sentence "')["input_ids"]) + len(q)
        assert p[start : start + len(r_ids)].tolist() == r_ids  # the pioneer's own token ids, unchanged
        assert EOS not in p.tolist()


@pytest.mark.parametrize("template, task_fields, message", [
    ("{query} only", set(), "lacks field"),
    ("{query}{pioneer_response}{oops}", set(), r"unknown field\(s\) \['oops'\]"),
    ("{question}{pioneer_response}", set(), r"unknown field\(s\) \['question'\]"),  # a field this task does not offer
    ("{pioneer_response} alone", {"question"}, "needs one of the fields"),
    ("{query}{pioneer_response} {", set(), "not a valid template"),
])
def test_observer_template_is_checked_against_the_task(template, task_fields, message):
    with pytest.raises(ValueError, match=message):
        check_observer_template(template, task_fields)
    assert check_observer_template("Q: {question} R: {pioneer_response}", {"question"}) == {"question", "pioneer_response"}


def test_negative_swap_freq_is_rejected():
    with pytest.raises(ValueError, match="swap_freq"):
        CORYConfig(swap_freq=-1)


def test_role_exchange_schedule():
    assert [roles_at(s, 3) for s in range(7)] == [(0, 1)] * 3 + [(1, 0)] * 3 + [(0, 1)]
    assert {roles_at(s, 0) for s in range(10)} == {(0, 1)}


def test_three_agents_rotate_one_position_per_period():
    # agent index at positions (pioneer, observer_1, observer_2); each period every agent moves one position on
    periods = [(0, 1, 2), (2, 0, 1), (1, 2, 0)]
    assert [roles_at(s, 2, 3) for s in range(7)] == [periods[0]] * 2 + [periods[1]] * 2 + [periods[2]] * 2 + [periods[0]]
    for before, after in zip(periods, periods[1:] + periods[:1]):
        assert all(after.index(agent) == (before.index(agent) + 1) % 3 for agent in range(3))
    assert {roles_at(s, 0, 3) for s in range(10)} == {(0, 1, 2)}


@pytest.mark.parametrize("coef, expected", [(1.0, ([3.0, 5.0], [3.0, 5.0])), (0.0, ([1.0, 2.0], [2.0, 3.0])),
                                            (-1.0, ([-1.0, -1.0], [1.0, 1.0]))])
def test_collective_scores(coef, expected):
    s_pio, s_obs = collective_scores([torch.tensor([1.0, 2.0]), torch.tensor([2.0, 3.0])], coef)
    assert (s_pio.tolist(), s_obs.tolist()) == expected


def test_downstream_credit_of_three_agents_by_hand():
    # rewards 1, 2, 4: the pioneer learns 1 + c(2 + 4), observer 1 2 + c*4, the last 4 alone
    rewards = [torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0])]
    assert [s.item() for s in collective_scores(rewards, 1.0, "downstream")] == [7.0, 6.0, 4.0]
    assert [s.item() for s in collective_scores(rewards, 0.5, "downstream")] == [4.0, 4.0, 4.0]


def test_scores_when_the_last_position_branches():
    """Two chains, the observer answering each twice: [3, 5] and [0, 2]; the pioneer counts their means 4 and 1."""
    pioneer, observer = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 5.0, 0.0, 2.0])
    s_pio, s_obs = collective_scores([pioneer, observer], 1.0, "collective", branch=2)
    assert s_pio.tolist() == [5.0, 3.0] and s_obs.tolist() == [4.0, 6.0, 2.0, 4.0]
    s_pio, s_obs = collective_scores([pioneer, observer], 1.0, "downstream", branch=2)
    assert s_pio.tolist() == [5.0, 3.0] and s_obs.tolist() == observer.tolist()
    # three agents, branching at the last only: rewards 1 | 10 | [100, 300]
    three = collective_scores([torch.tensor([1.0]), torch.tensor([10.0]), torch.tensor([100.0, 300.0])], 1.0, "downstream", 2)
    assert [s.tolist() for s in three] == [[211.0], [210.0], [100.0, 300.0]]


def test_group_by_prompt_step_by_hand(tokenizer, accelerator):
    """2 queries x k=2 pioneer answers x m=2 observer answers: the pioneer steps on 4 rows in groups of 2 (its
    query), the observer on 8 in groups of 2 that share the exact prompt; 2k + 2km / ... = 6 generations per query."""
    given = []
    reward = lambda texts: given.extend(float(len(t)) / 10 for t in texts) or given[-len(texts):]  # noqa: E731
    cory = make_cory(tokenizer, accelerator, reward, cory=dict(group_by="prompt", observer_samples=2),
                     advantage_estimator="rloo", samples_per_prompt=2)
    seen = {}
    for agent in cory.agents:
        original = agent.step
        def spy(queries, responses, scores, score_error=None, group_size=None, _agent=agent, _original=original):
            seen[_agent] = (queries, scores, group_size)
            return _original(queries, responses, scores, score_error, group_size)
        agent.step = spy
    two = [torch.randint(0, 1000, (3,)) for _ in range(2)]
    stats, samples = cory.step(0, as_prompts([q for q in two for _ in range(2)], tokenizer), GEN)
    (p_queries, p_scores, p_group), (o_queries, o_scores, o_group) = seen[cory.agents[0]], seen[cory.agents[1]]
    assert len(p_queries) == 4 and p_group is None  # the trainer's own samples_per_prompt: 2
    assert len(o_queries) == 8 and o_group == 2
    for chain in range(4):  # rows 2c and 2c+1 answer the same prompt, holding pioneer response c
        assert torch.equal(o_queries[2 * chain], o_queries[2 * chain + 1])
    assert not torch.equal(o_queries[0], o_queries[2]) or not torch.equal(o_queries[0], o_queries[4])
    assert stats["cory/generations_per_query"] == 6.0
    assert stats["observer/within_prompt_share"] == pytest.approx(1.0)  # every observer comparison is within one prompt
    # the pioneer's score: its reward plus the mean of its two observers'; the observer's: its own plus the pioneer's
    r_pio, r_obs = torch.tensor(given[:4]), torch.tensor(given[4:])
    assert len(given) == 12
    assert p_scores.tolist() == pytest.approx((r_pio + r_obs.reshape(4, 2).mean(1)).tolist())
    assert o_scores.tolist() == pytest.approx((r_obs + r_pio.repeat_interleave(2)).tolist())
    assert len(samples) == 4


def test_cory_refuses_mismatched_grouping():
    with pytest.raises(ValueError, match="credit must be one of"):
        CORYConfig(credit="all")
    with pytest.raises(ValueError, match="observer_samples must be >= 2"):
        CORYConfig(group_by="prompt", observer_samples=1)
    with pytest.raises(ValueError, match="group_by must be one of"):
        CORYConfig(group_by="answer")


def test_group_by_prompt_needs_a_critic_free_estimator(tokenizer, accelerator):
    with pytest.raises(ValueError, match="set advantage_estimator rloo or grpo"):
        make_cory(tokenizer, accelerator, lambda texts: [0.0 for _ in texts], cory=dict(group_by="prompt"))


def test_collective_scores_of_three_agents():
    rewards = [torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0])]
    assert [s.item() for s in collective_scores(rewards, 1.0)] == [7.0, 7.0, 7.0]
    # c = 0.5: own + half the other two: 1 + 3, 2 + 2.5, 4 + 1.5
    assert [s.item() for s in collective_scores(rewards, 0.5)] == [4.0, 4.5, 5.5]


def test_the_third_agent_sees_the_first_two_responses_in_order(tokenizer):
    template = "Q: {query} Earlier:{previous_responses} Last:{pioneer_response} A:"
    query = torch.tensor(tokenizer("The movie")["input_ids"])
    first, second = torch.tensor(tokenizer(" was fine")["input_ids"] + [EOS]), torch.tensor(tokenizer(" was great")["input_ids"])
    [ids] = observer_prompts(template, as_prompts([query], tokenizer), [[first], [second]], tokenizer, {EOS},
                             response_template=" ({position}){response}")
    assert tokenizer.decode(ids) == "Q: The movie Earlier: (1) was fine (2) was great Last: was great A:"
    ids = ids.tolist()
    start_first = ids.index(first[0].item())
    assert ids[start_first : start_first + len(first) - 1] == first[:-1].tolist()  # own token ids, EOS dropped
    start_second = ids.index(second[0].item(), start_first + len(first) - 1)
    assert ids[start_second : start_second + len(second)] == second.tolist() and start_second > start_first


def test_two_agents_see_the_same_prompt_through_either_field(tokenizer):
    queries = [torch.tensor(tokenizer("The movie")["input_ids"])]
    response = [torch.tensor(tokenizer(" was great fun")["input_ids"] + [EOS])]
    one = observer_prompts(TEMPLATE, as_prompts(queries, tokenizer), [response], tokenizer, {EOS})
    other = observer_prompts(TEMPLATE.replace("pioneer_response", "previous_responses"), as_prompts(queries, tokenizer),
                             [response], tokenizer, {EOS})
    assert one[0].tolist() == other[0].tolist()


def test_more_than_two_agents_need_every_earlier_response_in_view(tokenizer, accelerator):
    with pytest.raises(ValueError, match="lacks field {previous_responses}"):
        check_observer_template(TEMPLATE, set(), n_agents=3)
    with pytest.raises(ValueError, match="response_template lacks field"):
        CORYConfig(n_agents=3, response_template="({position})")
    for n in (1, 27):
        with pytest.raises(ValueError, match=r"n_agents must lie in 2\.\.26"):
            CORYConfig(n_agents=n)
    cory = make_cory(tokenizer, accelerator, lambda texts: [0.0 for _ in texts], n_agents=3)  # the task's template, widened
    assert "{previous_responses}" in cory.template and "{pioneer_response}" not in cory.template


def make_cory(tokenizer, accelerator, reward_fn, swap_freq=3, vocab=50257, n_agents=2, cory=None, **ppo):
    config = PPOConfig(**{"batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1, "learning_rate": 1e-3, **ppo})
    reference = FrozenReference(tiny_gpt2(vocab, n_embd=16))
    agents = [PPOTrainer(config, ValueHeadPolicy(tiny_gpt2(vocab, seed=0, n_embd=16), critic=not config.critic_free), reference,
                         tokenizer, accelerator, seed=i) for i in range(n_agents)]
    return CORY(CORYConfig(swap_freq=swap_freq, n_agents=n_agents, **(cory or {})), agents, tokenizer, TextTask(reward_fn))


GEN = dict(do_sample=True, top_k=0, max_new_tokens=4, min_new_tokens=4)


def test_step_trains_both_agents_against_one_untouched_reference(tokenizer, accelerator):
    cory = make_cory(tokenizer, accelerator, lambda texts: [float(len(t)) / 10 for t in texts])
    before = [[p.clone() for p in a.policy.parameters()] for a in cory.agents]
    ref_before = [p.clone() for p in cory.agents[0].reference.lm.parameters()]
    assert cory.agents[0].reference is cory.agents[1].reference
    queries = as_prompts([torch.randint(0, 1000, (n,)) for n in (2, 3, 4, 5)], tokenizer)
    stats, samples = cory.step(0, queries, GEN)
    for agent, params in zip(cory.agents, before):
        assert any(not torch.equal(a, b) for a, b in zip(params, agent.policy.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(ref_before, cory.agents[0].reference.lm.parameters()))
    for key in ("pioneer/task_reward", "observer/task_reward", "cory/collective_reward", "agent_a/objective/kl", "agent_b/objective/kl_coef",
                "pioneer/response_len", "time/generate", "time/score", "time/ppo_step"):
        assert np.isfinite(stats[key]), key
    assert stats["pioneer/score"] == pytest.approx(stats["observer/score"])  # c = 1: both get r1 + r2
    assert set(samples[0]) == {"query", "pioneer", "observer", "r_pioneer", "r_observer"}


def test_a_step_of_three_agents_trains_each_on_the_sum_of_all_rewards(tokenizer, accelerator):
    cory = make_cory(tokenizer, accelerator, lambda texts: [float(len(t)) / 10 for t in texts], swap_freq=1, n_agents=3)
    before = [[p.clone() for p in a.policy.parameters()] for a in cory.agents]
    queries = as_prompts([torch.randint(0, 1000, (n,)) for n in (2, 3, 4, 5)], tokenizer)
    stats, samples = cory.step(1, queries, GEN)  # period 1: agent C is the pioneer, then A, then B
    for agent, params in zip(cory.agents, before):
        assert any(not torch.equal(a, b) for a, b in zip(params, agent.policy.parameters()))
    assert stats["cory/pioneer_agent"] == 2.0
    roles = ("pioneer", "observer_1", "observer_2")
    total = sum(stats[f"{r}/task_reward"] for r in roles)
    assert all(stats[f"{r}/score"] == pytest.approx(total) for r in roles)  # c = 1: each learns the sum
    assert stats["agent_c/task_reward"] == stats["pioneer/task_reward"]
    assert stats["agent_a/task_reward"] == stats["observer_1/task_reward"]
    # the last observer's prompt holds both earlier responses: the longest prompts of the three
    assert stats["agent_b/tokens/queries_len_mean"] > stats["agent_a/tokens/queries_len_mean"] > stats["agent_c/tokens/queries_len_mean"]
    assert set(samples[0]) == {"query", *roles, *(f"r_{r}" for r in roles)}


def test_swap_keeps_each_agent_optimizer_state(tokenizer, accelerator):
    cory = make_cory(tokenizer, accelerator, lambda texts: [1.0 for _ in texts], swap_freq=1)
    queries = as_prompts([torch.randint(0, 1000, (3,)) for _ in range(4)], tokenizer)
    cory.step(0, queries, GEN)
    first_param = [next(iter(a.optimizer.state.values())) for a in cory.agents]
    exp_avg = [s["exp_avg"] for s in first_param]
    steps_before = [int(s["step"]) for s in first_param]
    assert steps_before == [2, 2]  # batch 4 / minibatch 2: two optimizer steps per agent per CORY step
    stats, _ = cory.step(1, queries, GEN)  # roles exchanged
    assert stats["cory/pioneer_agent"] == 1.0
    for agent, state, avg in zip(cory.agents, first_param, exp_avg):
        now = next(iter(agent.optimizer.state.values()))
        assert now["exp_avg"] is avg  # same tensor object, updated in place
        assert int(now["step"]) == 4  # the count keeps rising across the swap: Adam was not reset


def test_lora_agents_share_one_base_and_reference_is_the_base(tmp_path, tokenizer):
    lm = tiny_gpt2(n_embd=16)
    lm.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    run = RunConfig(model_name=str(tmp_path), lora_r=4, lora_target_modules="c_attn,c_proj")
    policies, reference = build_policies(run, 2, "cpu")
    a, b = policies
    assert a.lm is b.lm is reference.lm
    base_a = {n: p.data_ptr() for n, p in a.lm.named_parameters() if "lora" not in n}
    assert len(base_a) == len({p.data_ptr() for n, p in b.lm.named_parameters() if "lora" not in n})
    assert {n for n, _ in a.lm.named_parameters() if ".agent_a." in n} and {n for n, _ in a.lm.named_parameters() if ".agent_b." in n}
    for p in a.trainable_parameters()[:-2]:
        p.data.normal_()  # make agent_a's adapter non-trivial
    ids, mask = torch.randint(0, 1000, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(reference.logits(ids, mask, 6), lm(ids, attention_mask=mask).logits, atol=1e-5, rtol=0)
        logits_a, _ = a(ids, mask, 6)
        logits_b, _ = b(ids, mask, 6)
    assert not torch.allclose(logits_a, logits_b)  # each agent runs its own adapter


def test_both_agents_learn_a_target_token(tokenizer, accelerator):
    """Reward = share of the target token; each agent's stand-alone reward rises. 45 steps: at 30, one agent of
    two in six seeds was still climbing (0.29-0.44 on an AVX-512 Xeon without bf16, where this test failed); at 45
    the lowest of 12 agent-seeds was 0.71 (start ~0.1), so 0.5 keeps a margin of 0.2 on any CPU kind."""
    start, end = cory_learns(target_token_agents(tokenizer, accelerator, 2), steps=45)
    assert max(start) < 0.3
    assert min(end) > 0.5, (start, end)
