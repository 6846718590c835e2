"""The PPO trainer: config, math, advantage estimators, policy, rollout, sampling, distributed training, the step."""
