"""The machine's measured matrix-multiply peak at a model's own shapes: the ceiling a step's phases are held against.

For each weight shape of the model (attention projections, MLP, LM head) and each row count a step uses (one
decoding step's batch, one minibatch of full sequences), time `x @ W` in the precision given and report GFLOP/s;
with a large square product beside them (what the machine's GEMM does at its best), the peak is the best of all.
"""
from __future__ import annotations

import time

import torch

from benchmarks.flops import dims


def weight_shapes(config) -> dict[str, tuple[int, int]]:
    """(in, out) of each distinct matmul a causal LM's layer and head perform."""
    d = dims(config)
    return {"q/o projection": (d["hidden"], d["heads"] * d["head_dim"]), "k/v projection": (d["hidden"], d["kv"]),
            "mlp up": (d["hidden"], d["inner"]), "mlp down": (d["inner"], d["hidden"]), "lm head": (d["hidden"], d["vocab"])}


def gflops(rows: int, k: int, n: int, dtype: torch.dtype, seconds: float = 0.3, repeats: int = 3) -> float:
    """Best GFLOP/s of `[rows, k] @ [k, n]` over `repeats` timings of at least `seconds` each, after a warm-up
    (the best, since a VM's neighbours only ever slow a timing down)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(rows, k, generator=g).to(dtype)
    b = torch.randn(k, n, generator=g).to(dtype)
    out = torch.empty(rows, n, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b, out=out)
    best = 0.0
    for _ in range(repeats):
        reps, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            torch.matmul(a, b, out=out)
            reps += 1
        best = max(best, 2 * rows * k * n * reps / elapsed / 1e9)
    return best


def measure(config, row_counts: dict[str, int], dtype: torch.dtype) -> dict:
    """GFLOP/s per (rows, weight shape) and of a 2048-square product; the peak over all of them."""
    table = {f"{rows_name} x {name}": gflops(rows, k, n, dtype)
             for rows_name, rows in row_counts.items() for name, (k, n) in weight_shapes(config).items()}
    table["2048 x 2048 square"] = gflops(2048, 2048, 2048, dtype)
    return {"gflops_by_shape": table, "peak_gflops": max(table.values())}
