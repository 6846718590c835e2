"""Read task data from local files (parquet / jsonl / json / csv) or the hub, with clear errors."""
from __future__ import annotations

import json
import numbers
from pathlib import Path

import numpy as np

from cory.errors import MissingInput, UsageError
from cory.platform.paths import hub_offline

LOCAL_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")


def check_local_file(path: str) -> None:
    """A path that names a local file must exist (checked before any model loads; hub ids pass)."""
    local = Path(path).expanduser()
    if (local.suffix in LOCAL_SUFFIXES or path.startswith((".", "/", "~"))) and not local.is_file():
        what = "is a directory" if local.is_dir() else "is not a regular file (a pipe or device)" if local.exists() else "does not exist"
        raise MissingInput(f"dataset file {path} {what}")


def read_records(path: str, columns: dict[str, type], split: str = "train", hub_config: str | None = None,
                 keep_others: bool = False) -> list[dict]:
    """Rows holding `columns` (name -> type) from a local file or a hub dataset id; a malformed row, a value
    of the wrong type (a null, a number where text belongs) or bytes that are not UTF-8 name the file and row.
    With `keep_others` a row keeps its other columns too, unchecked (a reward may read them)."""
    local = Path(path).expanduser()
    if local.suffix in LOCAL_SUFFIXES or local.exists() or path.startswith((".", "/", "~")):
        check_local_file(path)
        rows = _read_jsonl(local, columns, keep_others) if local.suffix == ".jsonl" else _read_table(local, columns, keep_others)
    else:
        rows = _read_hub(path, columns, split, hub_config, keep_others)
    if not rows:
        raise UsageError(f"dataset {path} has no rows")
    return rows


KINDS = {str: (str,), int: (numbers.Integral,)}
"""what a column's values may be (numpy integers from parquet count as int)"""


def _checked(row: dict, columns: dict[str, type], where: str, keep_others: bool = False) -> dict:
    for name, kind in columns.items():
        if not isinstance(row[name], KINDS[kind]) or isinstance(row[name], bool):
            raise UsageError(f"{where}: column {name!r} must be {kind.__name__}, got {row[name]!r}")
    return dict(row) if keep_others else {name: row[name] for name in columns}


def _read_jsonl(path: Path, columns, keep_others: bool = False) -> list[dict]:
    rows = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UsageError(f"{path}:{line_no}: not UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path}:{line_no}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise UsageError(f"{path}:{line_no}: a row must be a JSON object, got {type(row).__name__}")
            missing = [c for c in columns if c not in row]
            if missing:
                raise UsageError(f"{path}:{line_no}: row lacks column(s) {missing}")
            rows.append(_checked(row, columns, f"{path}:{line_no}", keep_others))
    return rows


def _read_table(path: Path, columns, keep_others: bool = False) -> list[dict]:
    import pandas as pd

    readers = {".parquet": pd.read_parquet, ".csv": pd.read_csv, ".json": pd.read_json}
    if path.suffix not in readers:
        raise UsageError(f"dataset file {path}: unsupported format {path.suffix!r}; use one of {LOCAL_SUFFIXES}")
    try:
        frame = readers[path.suffix](path)
    except Exception as e:  # noqa: BLE001  pandas/pyarrow raise many types for a bad file
        raise UsageError(f"dataset file {path} could not be read: {e}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UsageError(f"dataset file {path} lacks column(s) {missing}; it has {list(frame.columns)}")
    frame = frame if keep_others else frame[list(columns)]
    return [_checked(row, columns, f"{path} row {i}", keep_others) for i, row in enumerate(frame.to_dict("records"), 1)]


def _read_hub(name: str, columns, split: str, hub_config: str | None, keep_others: bool = False) -> list[dict]:
    if hub_offline():
        raise MissingInput(
            f"dataset {name!r} is a hub id and HF_HUB_OFFLINE=1 forbids the hub; pass --dataset_path (training) or "
            "--eval_dataset_path (held-out) with a local file, e.g. ../shared/data/imdb/train.parquet"
        )
    from datasets import load_dataset

    try:
        ds = load_dataset(name, hub_config, split=split)
    except Exception as e:  # noqa: BLE001
        raise MissingInput(f"dataset {name!r} could not be loaded from the hub ({e}); pass a local file") from None
    return [_checked(row, columns, f"{name} ({split}) row {i}", keep_others) for i, row in enumerate(ds, 1)]


class LengthSampler:
    """Uniform integer lengths in [low, high], from its own seeded generator."""

    def __init__(self, low: int, high: int, rng: np.random.Generator):
        if not 0 < low <= high:
            raise UsageError(f"length range must satisfy 0 < low <= high, got [{low}, {high}]")
        self.low, self.high, self.rng = low, high, rng

    def __call__(self) -> int:
        return int(self.rng.integers(self.low, self.high + 1))


class PromptLoader:
    """Endless shuffled batches of prompts; its position (epoch, cursor) is part of a checkpoint."""

    def __init__(self, prompts: list, batch_size: int, seed: int):
        if len(prompts) < batch_size:
            raise UsageError(f"{len(prompts)} prompts are fewer than one batch of {batch_size}")
        self.prompts, self.batch_size, self.seed = prompts, batch_size, seed
        self.epoch, self.cursor = 0, 0
        self._order = self._shuffle()

    def _shuffle(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.prompts))

    def next_batch(self) -> list:
        if self.cursor + self.batch_size > len(self.prompts):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = self._shuffle()
        idx = self._order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return [self.prompts[i] for i in idx]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._order = self._shuffle()
