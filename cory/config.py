"""Config = a task file's `defaults` dict (or the preset named instead), then `--key value` flags (or a sweep's dict).

Keys are routed by name to the dataclasses that own them (`RunConfig`, `PPOConfig`, `CORYConfig`, ...);
an unknown key or a value of the wrong type is an error before any model is loaded.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import importlib.util
import inspect
import re
import sys
import textwrap
import typing
from pathlib import Path

from cory.errors import UsageError, WrongType
from cory.platform.precision import MODES as PRECISION_MODES

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclasses.dataclass
class RunConfig:
    """What is trained on what, for how long, and where results go."""

    model_name: str = "gpt2"
    """hub id, local HF directory, or the offline alias smollm2-135m-instruct"""
    dtype: str = "float32"
    """weights dtype: float32, bfloat16, float16 (for trainable weights keep float32 and use mixed_precision)"""
    mixed_precision: str = ""
    """no | bf16 | fp16 (GPU only): autocast for every model forward, fp32 master weights, frozen weights in low
    precision; '' = accelerate's setting (`accelerate launch --mixed_precision`), else no"""
    lora_r: int = 0
    """LoRA rank; 0 trains all weights (then each agent is a full copy beside one frozen reference)"""
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: str = "all-linear"
    """comma-separated module names, or all-linear"""
    load_in_4bit: bool = False
    """4-bit (bitsandbytes NF4) base weights; needs CUDA and lora_r > 0"""
    response_min_tokens: int = 4
    """new tokens per response are drawn per batch from [response_min_tokens, response_max_tokens]"""
    response_max_tokens: int = 16
    do_sample: bool = True
    """sample responses (False: greedy, for debugging and exact comparisons)"""
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.1
    steps: int = 100
    """PPO iterations"""
    seed: int = 0
    output_dir: str = "runs"
    """each run writes metrics.jsonl, config.json and plots under output_dir/run_name"""
    run_name: str = ""
    """default: <script>-<preset>-seed<seed>"""
    log_with: str = ""
    """'' or 'wandb'"""
    log_samples_every: int = 10
    """print and log a few samples every N steps (0: never)"""
    save_every: int = 0
    """write a checkpoint every N steps (0: only at the end)"""
    keep_checkpoints: int = 2
    """how many of the newest checkpoints to keep"""
    save_merged: str = "auto"
    """with LoRA, also write final/<agent>-merged/: the adapter merged into its base, a plain transformers model;
    true | false | auto (models under 1B parameters)"""
    resume_from: str = ""
    """'auto' (the newest checkpoint of this run that verifies, if any) or a checkpoint directory"""
    overwrite: bool = False
    """start afresh in a run directory that holds an earlier run, deleting that run's outputs (else refused)"""
    eval_every: int = 0
    """evaluate each agent alone on held-out prompts before training and every N steps (0: never)"""
    eval_prompts: int = 64
    """held-out prompts per evaluation (a fixed subset of the task's eval split)"""
    eval_roles: bool = True
    """CORY: before and after training, also each agent as observer of the other's and of its own answer
    (cory.eval.roles); false: each agent alone only (four evaluations of the observer's longer prompts fewer)"""

    def __post_init__(self) -> None:
        if not 0 < self.response_min_tokens <= self.response_max_tokens:
            raise UsageError(
                f"need 0 < response_min_tokens <= response_max_tokens, got {self.response_min_tokens}, {self.response_max_tokens}"
            )
        if self.steps <= 0:
            raise UsageError(f"steps must be > 0, got {self.steps}")
        if self.lora_r < 0:
            raise UsageError(f"lora_r must be >= 0, got {self.lora_r}")
        if self.eval_every < 0 or self.eval_prompts < 1:
            raise UsageError(f"need eval_every >= 0 and eval_prompts >= 1, got {self.eval_every}, {self.eval_prompts}")
        if self.save_every < 0 or self.keep_checkpoints < 1:
            raise UsageError(f"need save_every >= 0 and keep_checkpoints >= 1, got {self.save_every}, {self.keep_checkpoints}")
        if self.save_merged not in ("auto", "true", "false"):
            raise UsageError(f"save_merged must be auto, true or false, got {self.save_merged!r}")
        if self.load_in_4bit and self.lora_r == 0:
            raise UsageError("load_in_4bit trains LoRA adapters on frozen 4-bit weights: set lora_r > 0")
        if self.mixed_precision not in ("", *PRECISION_MODES):
            raise UsageError(f"mixed_precision must be '' or one of {PRECISION_MODES}, got {self.mixed_precision!r}")
        if self.top_k < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise UsageError(f"need top_k >= 0 (0: off), 0 < top_p <= 1 and repetition_penalty > 0, got "
                             f"{self.top_k}, {self.top_p}, {self.repetition_penalty}")
        if self.log_with not in ("", "wandb"):
            raise UsageError(f"log_with must be '' or 'wandb', got {self.log_with!r}")

    def generation_kwargs(self, max_new_tokens: int) -> dict:
        """Sampling settings of the official code: pure sampling, light repetition penalty."""
        return dict(
            do_sample=self.do_sample,
            top_k=self.top_k,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            max_new_tokens=max_new_tokens,
        )


ALGORITHMS = ("ppo", "cory")


REPO_ROOT = CONFIG_DIR.parent
CONFIG_PATH_KEYS = ("model_name", "reward_model", "dataset_path", "eval_dataset_path")
"""a './' or '../' path in a config file means from the repo root, so a script runs from any directory
(a path given on the command line means from the working directory, as usual)"""


DEFAULT_PRESET = "offline"
"""the name of `defaults` in every task file: what a script runs without --preset (the offline setting)"""


def load_task_config(task: str, preset: str, algorithm: str | None = None) -> dict:
    """`configs/<task>.py`'s `defaults` (or the preset named instead: a whole setting, written as what differs from
    the library defaults), with its `algorithm` sub-dict on top: a script sees only its own algorithm's keys."""
    path = CONFIG_DIR / f"{task}.py"
    spec = importlib.util.spec_from_file_location(f"configs.{task}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if DEFAULT_PRESET in module.presets:
        raise UsageError(f"configs/{task}.py: the preset name {DEFAULT_PRESET!r} is taken by `defaults`; rename that preset")
    if preset not in module.presets and preset != DEFAULT_PRESET:
        raise UsageError(f"unknown preset {preset!r} for {task}; choose one of {sorted({DEFAULT_PRESET, *module.presets})}")
    chosen = dict(module.defaults if preset == DEFAULT_PRESET else module.presets[preset])
    per_algorithm = {name: chosen.pop(name, {}) for name in ALGORITHMS}
    config = {**chosen, **per_algorithm.get(algorithm, {})}
    for key in CONFIG_PATH_KEYS:
        if isinstance(config.get(key), str) and config[key].startswith(("./", "../")):
            config[key] = str((REPO_ROOT / config[key]).resolve())
    return config


def setting_source(task: str, preset: str) -> str:
    """Where a value of the task file comes from, for --help."""
    return f"configs/{task}.py " + ("defaults" if preset == DEFAULT_PRESET else f"preset {preset}")


def parse_args(task: str, description: str, sections: tuple[type, ...], argv=None, algorithm: str | None = None,
               script_options: tuple[tuple[str, str], ...] = ()) -> tuple[str, dict]:
    """CLI: `--preset NAME` plus `--key value` for any field of `sections`. Returns (preset, merged dict).
    `--help` lists every key by section with its one-line doc and its value in the chosen preset, and the
    script's own options (`script_options`: (flag, help), parsed by the script itself) first."""
    owners: dict[str, str] = {}
    for cls in sections:  # a flat --key is routed by name: two sections may not both own one
        for f in dataclasses.fields(cls):
            if owners.setdefault(f.name, cls.__name__) != cls.__name__:
                raise ValueError(f"config key {f.name!r} is defined by both {owners[f.name]} and {cls.__name__}")
    presets = argparse.ArgumentParser(add_help=False)
    presets.add_argument("--preset", default=DEFAULT_PRESET)
    preset = presets.parse_known_args(argv)[0].preset
    try:  # the config file is read once: for --help's defaults and as the base the flags override
        preset_values, preset_error = load_task_config(task, preset, algorithm), None
    except UsageError as error:
        preset_values, preset_error = {}, error  # raised once argparse has parsed the rest (so --help still works)
    parser = argparse.ArgumentParser(description=description, usage="%(prog)s [--preset NAME] [--key value ...]",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=DEFAULT_PRESET, help=f"a preset of configs/{task}.py (default: {DEFAULT_PRESET}, "
                        "which names its `defaults`)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a configuration or input error")
    for flag, text in script_options:
        parser.add_argument(flag, default=argparse.SUPPRESS, help=text)
    for cls in sections:
        group = parser.add_argument_group(cls.__name__, (cls.__doc__ or "").strip().splitlines()[0])
        hints, docs = typing.get_type_hints(cls), field_docs(cls)
        for f in dataclasses.fields(cls):
            default = preset_values.get(f.name, f.default)
            source = setting_source(task, preset) if f.name in preset_values else f"library default, {cls.__name__}"
            group.add_argument(f"--{f.name}", type=_parser_for(hints[f.name]), default=argparse.SUPPRESS, metavar=_metavar(hints[f.name]),
                               help=f"{docs.get(f.name, '')} (default: {default!r}, from {source})".lstrip())
    args = vars(parser.parse_args(readable_flags(glue_negative_numbers(argv), parser)))
    args.pop("debug")
    args.pop("preset")
    if preset_error is not None:
        raise preset_error
    config = {**preset_values, **args}
    return preset, config


def readable_flags(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """`--learning-rate` is taken as `--learning_rate`; a flag that is no option stops here with the nearest names,
    not argparse's bare 'unrecognized arguments'."""
    known = {flag for action in parser._actions for flag in action.option_strings}
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name.startswith("--") and name not in known:
            underscored = "--" + name[2:].replace("-", "_")
            if underscored not in known:
                near = difflib.get_close_matches(underscored, sorted(known), n=3)
                raise UsageError(f"unknown option {name}" + (f"; did you mean {', '.join(near)}?" if near else "")
                                 + " (--help lists every option)")
            name = underscored
        out.append(name + eq + value)
    return out


NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$", re.IGNORECASE)


def glue_negative_numbers(argv: list[str] | None) -> list[str]:
    """`--key -1e-3` -> `--key=-1e-3`: argparse reads a negative number in exponent form as an option and says
    "expected one argument"; glued, the value reaches the config check, which names what is wrong with it."""
    out: list[str] = []
    for arg in sys.argv[1:] if argv is None else argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and NUMBER.match(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def field_docs(cls) -> dict[str, str]:
    """The string literal under each dataclass field (the docs we write there), folded to one line."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body, docs = tree.body[0].body, {}
    for field, doc in zip(body, body[1:]):
        if isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant):
            docs[field.target.id] = " ".join(str(doc.value.value).split()).replace("%", "%%")
    return docs


def build(cls, config: dict):
    """Instantiate `cls` from the keys of `config` that it owns, with a type check of each."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in config:
            values[f.name] = _check_type(f.name, config[f.name], hints[f.name])
    return cls(**values)


def check_known_keys(config: dict, sections: tuple[type, ...]) -> None:
    known = {f.name for cls in sections for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        near = sorted({n for key in unknown for n in difflib.get_close_matches(key, sorted(known), n=2)})
        raise UsageError(f"unknown config key(s) {unknown}" + (f"; did you mean {', '.join(near)}?" if near else ""))


def _check_type(name, value, hint):
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is not type(None) and isinstance(value, t) and not (t is int and isinstance(value, bool)):
            return value
    raise WrongType(f"config key {name!r} must be {_metavar(hint)}, got {value!r} ({type(value).__name__})")


def _parser_for(hint):
    allowed = [t for t in (typing.get_args(hint) or (hint,)) if t is not type(None)]
    base = allowed[0]

    def parse(text: str):
        if text.lower() == "none" and len(allowed) < len(typing.get_args(hint) or (hint,)):
            return None
        if base is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
            return text.lower() in ("true", "1")
        return base(text)

    parse.__name__ = base.__name__
    return parse


def _metavar(hint) -> str:
    return " | ".join(getattr(t, "__name__", str(t)) for t in (typing.get_args(hint) or (hint,)))
