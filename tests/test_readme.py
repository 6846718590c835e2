"""Every command the README prints runs as printed: make targets exist, and each training script's flags parse
into its config (in-process, the way the script's `setup` parses them, without loading a model)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cory.config import RunConfig, build, check_known_keys, load_task_config, parse_args
from cory.errors import UsageError
from cory.algorithms.cory import CORYConfig
from cory.tasks.gsm8k import GSM8KConfig
from cory.tasks.imdb import IMDBConfig
from cory.ppo.config import PPOConfig
from cory.tasks.text import TextTaskConfig

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TASKS = {"imdb_train": ("imdb", IMDBConfig), "gsm8k_train": ("gsm8k", GSM8KConfig)}


def commands() -> list[str]:
    """The shell commands of the README's bash blocks, continuation lines joined, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.split("  #")[0].strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def script_and_args(command: str) -> tuple[str, list[str]] | None:
    """(script, its arguments) of a python or accelerate command; a for-loop's body with its variable set."""
    loop = re.match(r"for (\w+) in (\S+).*?; do (.*?); done", command)
    if loop:
        command = loop.group(3).replace(f"${loop.group(1)}", loop.group(2))
    words = shlex.split(command)
    if words[:2] == ["accelerate", "launch"]:
        config = words[words.index("--config_file") + 1]
        assert (ROOT / config).exists(), config
        words = words[words.index("--config_file") + 2:]
        while words[0].startswith("--"):
            words = words[2:]
        return words[0], words[1:]
    if words[0] == "python" and words[1] != "-m":
        return words[1], words[2:]
    return None


def test_the_readme_shows_commands():
    assert len(commands()) >= 15


@pytest.mark.parametrize("command", [c for c in commands() if c.startswith("make ")])
def test_each_make_target_exists(command):
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    assert command.split()[1] in targets


@pytest.mark.parametrize("command", [c for c in commands() if script_and_args(c)])
def test_each_training_command_parses(command):
    script, argv = script_and_args(command)
    assert (ROOT / script).exists(), script
    if argv == ["--help"] or not (script.startswith(("imdb_train/", "gsm8k_train/")) or script == "own_task/train.py"):
        return  # a helper (the study runner, the example's data writer): it exists
    folder, algorithm = Path(script).parent.name, Path(script).stem
    if folder == "own_task":
        algorithm = argv[argv.index("--algorithm") + 1]
        argv = [a for i, a in enumerate(argv) if a != "--algorithm" and (i == 0 or argv[i - 1] != "--algorithm")]
        task, task_config = "text", TextTaskConfig
    else:
        task, task_config = TASKS[folder]
    sections = (RunConfig, PPOConfig, *((CORYConfig,) if algorithm == "cory" else ()), task_config)
    _, raw = parse_args(task, "", sections, argv, algorithm)
    check_known_keys(raw, sections)
    for cls in sections:
        build(cls, raw)


def test_the_preset_recipe_adds_a_preset(tmp_path, monkeypatch):
    """The README's 'adding a preset' line, appended to a copy of configs/imdb.py, gives a selectable preset."""
    recipe = re.search(r"```python\n(presets\[.*?)\n```", README, re.S).group(1)
    (tmp_path / "imdb.py").write_text((ROOT / "configs" / "imdb.py").read_text() + "\n" + recipe + "\n")
    monkeypatch.setattr("cory.config.CONFIG_DIR", tmp_path)
    config = load_task_config("imdb", "small-lr", "cory")
    assert config["learning_rate"] == 1e-5 and config["swap_freq"] == 10 and config["batch_size"] == 32
    assert "swap_freq" not in load_task_config("imdb", "small-lr", "ppo")  # the CORY-only key stays out of PPO


def test_presets_in_a_task_file_never_break_the_run_without_preset(tmp_path, monkeypatch):
    """Before: adding presets to configs/text.py, as the README suggests, broke every run without --preset."""
    (tmp_path / "text.py").write_text((ROOT / "configs" / "text.py").read_text() + "\npresets['fast'] = {**defaults, 'steps': 5}\n")
    monkeypatch.setattr("cory.config.CONFIG_DIR", tmp_path)
    assert load_task_config("text", "offline")["steps"] == 30 and load_task_config("text", "fast")["steps"] == 5
    assert load_task_config("text", "fast")["model_name"] == load_task_config("text", "offline")["model_name"]
    with pytest.raises(UsageError, match=r"unknown preset 'fst' for text; choose one of \['fast', 'offline'\]"):
        load_task_config("text", "fst")


def test_hyphens_misspellings_and_cory_keys_on_a_ppo_script_are_told_apart():
    """Before: `--learning-rate` and misspelled flags got argparse's bare 'unrecognized arguments'."""
    from cory.run.setup import refuse_cory_keys

    sections = (RunConfig, PPOConfig, IMDBConfig)
    _, raw = parse_args("imdb", "", sections, ["--learning-rate", "1e-4", "--mini-batch-size=8"], "ppo")
    assert raw["learning_rate"] == 1e-4 and raw["mini_batch_size"] == 8
    with pytest.raises(UsageError, match=r"unknown option --learning_rat; did you mean --learning_rate\?"):
        parse_args("imdb", "", sections, ["--learning_rat", "1e-4"], "ppo")
    with pytest.raises(UsageError, match="--swap_freq is a CORY setting .*trains PPO alone"):
        refuse_cory_keys(["--swap-freq", "3"], sections)
    refuse_cory_keys(["--swap_freq", "3"], (*sections, CORYConfig))  # the CORY script takes it


def test_own_task_help_lists_the_algorithm_option(capsys):
    """Before: own_task/train.py --help did not list --algorithm, which only that script takes."""
    import runpy

    with pytest.raises(SystemExit):
        runpy.run_path(str(ROOT / "own_task" / "train.py"))["main"](["--help"])
    assert "--algorithm ALGORITHM" in capsys.readouterr().out
