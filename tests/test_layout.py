"""The house rules a reader relies on: the package is imported, not edited onto the path; importing it changes nothing."""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAPER_SCRIPTS = {"imdb_train/cory.py", "imdb_train/ppo.py", "gsm8k_train/cory.py", "gsm8k_train/ppo.py"}
PATH_EDIT = re.compile(r"^\s*sys\.path(\.insert|\.append|\[:\]\s*=|\s*=)", re.MULTILINE)


def tracked_python_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.split()


def test_only_the_paper_scripts_and_the_reward_loader_edit_the_import_path():
    """The package is installed (make venv): a sys.path edit is needed only beside a file named cory.py (the paper's
    layout), plus the documented lookup of a user's reward module; tests and tools import what is installed."""
    editing = {f for f in tracked_python_files() if PATH_EDIT.search((ROOT / f).read_text())}
    assert editing == PAPER_SCRIPTS | {"cory/tasks/reward_functions.py"}
    for script in PAPER_SCRIPTS:
        assert len(PATH_EDIT.findall((ROOT / script).read_text())) == 1, script


def test_a_script_beside_cory_py_imports_the_package_from_any_directory(tmp_path):
    """gsm8k_train/ppo.py sits beside gsm8k_train/cory.py: without its one line, `import cory` finds that file."""
    done = subprocess.run([sys.executable, str(ROOT / "gsm8k_train" / "ppo.py"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "usage: ppo.py" in done.stdout, done.stderr[-2000:]


def test_importing_the_package_leaves_the_process_alone():
    """No allocator setting on `import cory` (a notebook user's process stays as it was); a run sets it in setup."""
    code = "import os, cory, cory.config, cory.ppo.math; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr[-2000:]


def test_a_script_answers_help_and_bad_flags_without_a_training_run_s_imports():
    """trl's helpers (datasets, pandas, peft, FSDP), the reward pipeline and matplotlib load on first use, so that
    `--help`, a refused flag or a study report start in ~3 s instead of ~6 s (and ~40 test subprocesses with them)."""
    code = ("import sys, runpy; sys.argv = ['imdb_train/cory.py', '--learning_rate', '-1']\n"
            "try: runpy.run_path('imdb_train/cory.py', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "heavy = ('trl', 'datasets', 'pandas', 'peft', 'matplotlib', 'transformers.pipelines', 'torch.distributed.fsdp')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "learning_rate" in done.stderr, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout

def import_graph() -> dict[str, set[str]]:
    """Every `cory` import, at the top of a module or inside a function: module -> the cory modules it imports."""
    root = ROOT / "cory"
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cory"):
                imported |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names if a.name.startswith("cory")}
        graph[name] = {m for m in imported if m in modules and m != name and m != "cory"}
    return graph


def a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    def cycle_from(start, node, seen):
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return seen + [nxt]
            if nxt not in seen:
                found = cycle_from(start, nxt, seen + [nxt])
                if found:
                    return found
        return None

    return next((c for c in (cycle_from(name, name, [name]) for name in sorted(graph)) if c), None)


def test_the_library_has_no_import_circle_between_modules_or_between_its_folders():
    """No module imports itself back (loading a model once imported the module that trains one), and the folders are
    floors: ppo/ never imports run/, tasks/ never imports algorithms/, ... (each `cory.X` below counts as one room)."""
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the detector finds one
    graph = import_graph()
    assert a_cycle(graph) is None, " -> ".join(a_cycle(graph))
    room = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    rooms: dict[str, set[str]] = {}
    for name, imported in graph.items():
        rooms.setdefault(room(name), set()).update(room(m) for m in imported if room(m) != room(name))
    assert a_cycle(rooms) is None, " -> ".join(a_cycle(rooms))


def test_a_plain_install_ships_every_subpackage():
    """Before: pyproject listed `packages = ["cory"]`, so `pip install .` (not -e) left out cory.eval and every later
    subpackage; the package finder's pattern must pick up every folder of cory/ that is a package."""
    import tomllib

    setuptools = pytest.importorskip("setuptools")
    pattern = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = set(setuptools.find_packages(str(ROOT), include=pattern))
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "cory").rglob("__init__.py")}
    assert shipped == on_disk and "cory.ppo" in shipped
