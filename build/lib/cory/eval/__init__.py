"""Evaluation of trained policies (each CORY agent alone, or a PPO policy)."""
