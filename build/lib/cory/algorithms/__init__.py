"""The algorithms a script trains: CORY (two agents, one collective reward) and PPO alone, and their agents."""
