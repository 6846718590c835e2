"""Bad input gets a clear error naming the problem, before any expensive work."""
import json
from pathlib import Path

import pytest

from cory.config import RunConfig, build, check_known_keys, load_task_config, parse_args
from cory.algorithms.cory import CORYConfig
from cory.tasks.data import PromptLoader, read_records
from cory.errors import UsageError
from cory.tasks.gsm8k import GSM8KConfig, GSM8KTask
from cory.tasks.imdb import IMDBConfig, imdb_prompts
from cory.models.load import resolve_model
from cory.ppo.config import PPOConfig

SECTIONS = (RunConfig, PPOConfig, CORYConfig, IMDBConfig)


def test_presets_build_valid_configs():
    for preset in ("paper", "official", "offline"):
        raw = load_task_config("imdb", preset)
        check_known_keys(raw, SECTIONS)
        ppo = build(PPOConfig, raw)
        assert ppo.batch_size % ppo.mini_batch_size == 0
    paper = build(PPOConfig, load_task_config("imdb", "paper"))
    assert (paper.learning_rate, paper.batch_size, paper.init_kl_coef, paper.kl_penalty) == (1.41e-5, 256, 0.3, "full")
    assert build(PPOConfig, load_task_config("imdb", "official")).init_kl_coef == 0.4


def test_cli_overrides_preset():
    preset, raw = parse_args("imdb", "", SECTIONS, ["--batch_size", "8", "--mini_batch_size", "4", "--swap_freq", "0",
                                                    "--knowledge_transfer", "false", "--max_grad_norm", "none"])
    assert preset == "offline" and raw["batch_size"] == 8 and raw["swap_freq"] == 0
    assert raw["knowledge_transfer"] is False and raw["max_grad_norm"] is None


@pytest.mark.parametrize("raw, error, message", [
    ({"batchsize": 8}, ValueError, r"unknown config key\(s\) \['batchsize'\]"),
])
def test_unknown_key(raw, error, message):
    with pytest.raises(error, match=message):
        check_known_keys(raw, SECTIONS)


@pytest.mark.parametrize("cls, raw, message", [
    (PPOConfig, {"batch_size": "32"}, "batch_size' must be int"),
    (PPOConfig, {"batch_size": 10, "mini_batch_size": 4}, "divisible"),
    (PPOConfig, {"kl_penalty": "k4"}, "kl_penalty must be one of"),
    (PPOConfig, {"use_score_norm": True}, "use_score_norm needs use_score_scaling"),
    (PPOConfig, {"learning_rate": 0}, "learning_rate must be > 0"),
    (CORYConfig, {"swap_freq": -2}, "swap_freq must be >= 0"),
    (RunConfig, {"response_min_tokens": 9, "response_max_tokens": 4}, "response_min_tokens"),
    (PPOConfig, {"init_kl_coef": -0.1}, "init_kl_coef must be >= 0"),
    (PPOConfig, {"vf_coef": -1}, "vf_coef must be >= 0"),
    (PPOConfig, {"cliprange": -0.2}, "cliprange must be > 0"),
    (PPOConfig, {"max_grad_norm": 0}, "max_grad_norm must be > 0"),
    (PPOConfig, {"divergence_loss": -1}, "divergence_loss must be >= 0"),
    (RunConfig, {"top_k": -1}, "top_k >= 0"),
    (RunConfig, {"repetition_penalty": 0}, "repetition_penalty > 0"),
    (RunConfig, {"top_p": 1.5}, "top_p <= 1"),
    (GSM8KConfig, {"prompt_template": "Q: {question} {foo}"}, r"unknown field\(s\) \['foo'\]"),
    (GSM8KConfig, {"prompt_template": "Q: {question} a lone { brace"}, "not a valid template"),
    (GSM8KConfig, {"prompt_template": "Q: {question} {}"}, "not a name"),
])
def test_bad_values(cls, raw, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build(cls, raw)


def test_missing_dataset_path():
    with pytest.raises(FileNotFoundError, match="does-not-exist.parquet does not exist"):
        read_records("data/does-not-exist.parquet", {"text": str})


def test_malformed_jsonl_row_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n{broken\n")
    with pytest.raises(ValueError, match=r"train.jsonl:2: malformed JSON"):
        read_records(str(path), {"text": str})
    path.write_text(json.dumps({"txt": "no text column"}) + "\n")
    with pytest.raises(ValueError, match=r"train.jsonl:1: row lacks column\(s\) \['text'\]"):
        read_records(str(path), {"text": str})


@pytest.mark.parametrize("content, message", [
    (b'{"text": "ok"}\n{"text": null}\n', r"train.jsonl:2: column 'text' must be str, got None"),
    (b'{"text": "ok"}\n\n{"text": 7}\n', r"train.jsonl:3: column 'text' must be str, got 7"),
    (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', r"train.jsonl:2: not UTF-8"),
    (b'["text"]\n', r"train.jsonl:1: a row must be a JSON object"),
])
def test_bad_rows_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "train.jsonl"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        read_records(str(path), {"text": str})


def test_bad_table_row_names_file_and_row(tmp_path):
    import pandas as pd

    path = tmp_path / "train.parquet"
    pd.DataFrame({"text": ["fine", None, "also fine"]}).to_parquet(path)
    with pytest.raises(UsageError, match=r"train.parquet row 2: column 'text' must be str, got (None|nan)"):
        read_records(str(path), {"text": str})


def test_gsm8k_row_without_answer_names_file_and_row(tmp_path, tokenizer):
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n" + json.dumps({"question": "2+2?", "answer": None}) + "\n")
    task = GSM8KTask(GSM8KConfig(dataset_path=str(path)), tokenizer)
    with pytest.raises(UsageError, match=r"problems.jsonl:2: column 'answer' must be str, got None"):
        task.prompts("train")


def test_hub_dataset_offline_says_what_to_pass():
    with pytest.raises(FileNotFoundError, match="pass --dataset_path"):
        read_records("imdb", {"text": str})


def test_model_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model("./no/such/model")
    with pytest.raises(FileNotFoundError, match="no such directory, and not a hub id"):
        resolve_model("runs/gsm8k-cory-offline-seed0/final/agent_a")  # before training: not a repo id either
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        resolve_model("gpt2")


def test_imdb_prompts_are_2_to_8_token_prefixes_of_long_reviews(tmp_path, tokenizer):
    rows = [{"text": "short", "label": 1}] + [{"text": f"Review number {i} " + "word " * 60, "label": 0} for i in range(20)]
    path = tmp_path / "imdb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = imdb_prompts(str(path), tokenizer, 200, (2, 8), seed=0)
    lengths = {len(p.input_ids) for p in prompts}
    assert len(prompts) == 20 and lengths <= set(range(2, 9)) and len(lengths) > 1
    assert all(p.text == tokenizer.decode(p.input_ids) for p in prompts)
    loader = PromptLoader(prompts, 8, seed=0)
    first = [loader.next_batch() for _ in range(3)]
    assert loader.state_dict() == {"epoch": 1, "cursor": 8}  # 20 prompts: the third batch starts a new epoch
    replay = PromptLoader(prompts, 8, seed=0)
    replay.load_state_dict({"epoch": 0, "cursor": 8})
    assert [p.text for p in replay.next_batch()] == [p.text for p in first[1]]


def test_real_imdb_and_gsm8k_files_load():
    data = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    if not data.exists():
        pytest.skip(f"shared data not found at {data}")
    for split in ("train", "test"):
        assert len(read_records(str(data / "imdb" / f"{split}.parquet"), {"text": str, "label": int})) == 25000
    gsm8k = {"question": str, "answer": str}
    assert [len(read_records(str(data / "gsm8k" / f"{split}.jsonl"), gsm8k)) for split in ("train", "test")] == [7473, 1319]


def test_help_shows_each_key_with_its_doc_and_the_presets_value(capsys):
    with pytest.raises(SystemExit):
        parse_args("imdb", "", SECTIONS, ["--preset", "paper", "--help"], "cory")
    shown = " ".join(capsys.readouterr().out.split())
    assert "PPOConfig:" in shown and "CORYConfig:" in shown
    assert ("--swap_freq int exchange roles every N steps (0: never); with more than two agents each moves one position on "
            "(default: 5, from library default, CORYConfig)") in shown
    assert "--init_kl_coef float" in shown and "(default: 0.3, from configs/imdb.py preset paper)" in shown  # the preset's
    with pytest.raises(SystemExit):
        parse_args("imdb", "", SECTIONS, ["--help"], "cory")
    shown = " ".join(capsys.readouterr().out.split())
    assert "(default: 'smollm2-135m-instruct', from configs/imdb.py defaults)" in shown  # what runs without --preset


def test_defaults_are_what_runs_and_a_preset_is_a_whole_other_setting():
    """`defaults` is the offline setting (no --preset, or --preset offline); `paper` does not inherit its data paths."""
    assert parse_args("imdb", "", SECTIONS, [], "cory") == ("offline", load_task_config("imdb", "offline", "cory"))
    paper = load_task_config("imdb", "paper", "cory")
    assert paper["model_name"] == "gpt2-large" and "dataset_path" not in paper and "steps" not in paper
    official = load_task_config("imdb", "official", "cory")
    assert official == {**paper, "init_kl_coef": 0.4, "use_score_scaling": True, "use_score_norm": True}
    gsm8k = {a: load_task_config("gsm8k", "offline", a)["learning_rate"] for a in ("ppo", "cory")}
    assert gsm8k == {"ppo": 1e-5, "cory": 1e-4}  # the algorithm's sub-dict over the setting's common keys


def test_relative_paths_in_a_config_file_mean_from_the_repo_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    config = load_task_config("imdb", "offline", "cory")
    root = Path(__file__).resolve().parent.parent
    assert config["dataset_path"] == str((root / "../shared/data/imdb/train.parquet").resolve())
    _, raw = parse_args("imdb", "", SECTIONS, ["--dataset_path", "../mine.parquet"], "cory")
    assert raw["dataset_path"] == "../mine.parquet"  # the command line means from the working directory


def test_two_sections_owning_one_key_are_refused():
    import dataclasses

    @dataclasses.dataclass
    class Other:
        seed: int = 3

    with pytest.raises(ValueError, match="'seed' is defined by both RunConfig and Other"):
        parse_args("imdb", "", (RunConfig, Other), [])


@pytest.mark.parametrize("task", ["imdb", "gsm8k"])
def test_task_configs_hold_only_what_differs_from_the_library(task):
    """One source per default: a value in `defaults` or in a preset (each a whole setting over the library defaults)
    equal to the dataclass default is a copy that would silently go stale when the library default changes."""
    import dataclasses
    import importlib.util

    from cory.config import CONFIG_DIR
    from cory.tasks.imdb import IMDBConfig

    spec = importlib.util.spec_from_file_location(f"configs_{task}", CONFIG_DIR / f"{task}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    library = {f.name: f.default for cls in (*SECTIONS, IMDBConfig, GSM8KConfig) for f in dataclasses.fields(cls)}
    flat = lambda d: {**{k: v for k, v in d.items() if k != "cory"}, **d.get("cory", {})}  # noqa: E731
    defaults = flat(module.defaults)
    assert [k for k, v in defaults.items() if library.get(k) == v] == []
    for name, preset in module.presets.items():
        assert [k for k, v in flat(preset).items() if library.get(k) == v] == [], name


@pytest.mark.parametrize("flags, message", [
    (["--mask_truncated_completions", "true"], "every IMDB response is cut"),
    (["--group_by", "prompt"], "set advantage_estimator rloo or grpo"),
    (["--dataset_path", "no/such/reviews.parquet"], "dataset file no/such/reviews.parquet does not exist"),
    (["--eval_dataset_path", "./missing.jsonl"], "dataset file ./missing.jsonl does not exist"),
    (["--resume_from", "runs/nowhere/checkpoints/step-0000003"], "checkpoint runs/nowhere/checkpoints/step-0000003 does not exist"),
    (["--observer_template", "{query} {question} {pioneer_response}"], r"unknown field\(s\) \['question'\]"),
    (["--observer_template", "{query}{pioneer_response} {"], "not a valid template"),
])
def test_clashing_settings_and_missing_files_stop_before_any_model_loads(flags, message, monkeypatch):
    from cory.run import setup as runner

    monkeypatch.setattr(runner, "load_tokenizer", lambda name: pytest.fail("a model loaded before the check"))
    with pytest.raises(UsageError, match=message):
        runner.setup("imdb", "cory", "", SECTIONS, flags)


def test_a_negative_number_after_a_space_reaches_the_range_check():
    """argparse alone reads `-1e-3` as an option ("expected one argument")."""
    _, raw = parse_args("imdb", "", SECTIONS, ["--learning_rate", "-1e-3", "--init_kl_coef", "-0.5", "--seed", "-2"], "cory")
    assert (raw["learning_rate"], raw["init_kl_coef"], raw["seed"]) == (-1e-3, -0.5, -2)
    with pytest.raises(UsageError, match="learning_rate must be > 0, got -0.001"):
        build(PPOConfig, raw)


def test_a_sequence_classifier_as_the_policy_is_refused(assets):
    from cory.models.load import load_causal_lm

    with pytest.raises(UsageError, match="is a BertForSequenceClassification, not a causal language model"):
        load_causal_lm(str(assets / "classifier"))


def test_lora_modules_the_model_lacks_are_one_line(assets):
    from cory.algorithms.agents import build_policies

    with pytest.raises(UsageError, match="lora_target_modules do not match the model's layers"):
        build_policies(RunConfig(model_name=str(assets / "lm"), lora_r=4, lora_target_modules="no_such_module"), 2, "cpu")




class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickled_weights_file_with_code_is_one_line_and_never_runs(tmp_path, capsys):
    import torch

    from cory.models.load import load_causal_lm
    from tests.tiny import tiny_gpt2

    lm = tiny_gpt2(n_embd=16)
    lm.config.save_pretrained(tmp_path)
    torch.save({**lm.state_dict(), "payload": _RunsCode()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(UsageError, match="holds more than weights"):
        load_causal_lm(str(tmp_path))
    assert "this must never run" not in capsys.readouterr().out
