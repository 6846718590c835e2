"""Studies: the run ledger, its checks, budgets, the frontier and seed-level endpoints, and the report."""
