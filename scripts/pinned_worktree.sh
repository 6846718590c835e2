# Sourced by the evidence scripts: `pinned_worktree DIR COMMIT` makes DIR (beside this checkout, so the configs'
# ../shared paths resolve the same) a git worktree at COMMIT if it is not one yet, sharing this checkout's .venv.
pinned_worktree() {
  [ -d "$1" ] || git worktree add --detach "$1" "$2"
  ln -sfn "$PWD/.venv" "$1/.venv"
}
