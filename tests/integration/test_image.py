"""The Dockerfile's build, without a Docker engine: the build context it copies (with
.dockerignore applied) installs a genq whose ``genq`` command runs from the installed tree
alone. setuptools builds what ``pip install .`` would put in site-packages (``egg_info`` and
``build_py``: no wheel, no network); the command runs with that tree first on its path, away
from the repository.
"""

from __future__ import annotations

import configparser
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.environment import process_env

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore's ``patterns`` leave ``relative`` (a posix path) out."""
    for pattern in patterns:
        if fnmatch.fnmatch(relative, pattern):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatch(relative.rsplit("/", 1)[-1], pattern[3:]):
            return True
    return False


def copy_build_context(destination: Path) -> None:
    """``COPY . .`` of the repository as Docker sends it (.dockerignore applied)."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [p.strip().rstrip("/") for p in lines if p.strip() and not p.startswith("#")]
    for root, dirs, files in os.walk(REPO):
        here = Path(root).relative_to(REPO)
        dirs[:] = [d for d in dirs if not ignored((here / d).as_posix(), patterns)]
        for name in files:
            if not ignored((here / name).as_posix(), patterns):
                (destination / here).mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(root) / name, destination / here / name)


def test_the_dockerfile_installs_the_build_context_as_an_unprivileged_user() -> None:
    steps = dockerfile_instructions()
    [image] = [args for op, args in steps if op == "FROM"]
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim", image)
    assert match, image
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert required == ">=3.11" and (int(match[1]), int(match[2])) >= (3, 11)
    assert ("COPY", ". .") in steps
    assert any(op == "RUN" and args.startswith("pip install . ") for op, args in steps)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert ("CMD", '["genq", "--help"]') in steps


def test_the_installed_tree_runs_the_genq_command(tmp_path: Path) -> None:
    context, egg, lib = tmp_path / "context", tmp_path / "egg", tmp_path / "lib"
    context.mkdir()
    egg.mkdir()
    copy_build_context(context)
    setup = "from setuptools import setup; setup()"
    steps = ["-q", "egg_info", "--egg-base", str(egg), "build_py", "--build-lib", str(lib)]
    built = subprocess.run(
        [sys.executable, "-c", setup, *steps],
        cwd=context,
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr

    migrations = sorted(p.name for p in (REPO / "genq/migrations/versions").glob("*.py"))
    assert sorted(p.name for p in (lib / "genq/migrations/versions").glob("*.py")) == migrations
    assert (lib / "genq/migrations/env.py").is_file()
    assert (lib / "genq/migrations/script.py.mako").is_file()
    [info] = egg.glob("*.egg-info")
    entry_points = configparser.ConfigParser()
    entry_points.read(info / "entry_points.txt")
    module, _, function = entry_points["console_scripts"]["genq"].partition(":")

    # `genq --help` the way its console script calls it, from the built tree only.
    script = (
        "import sys, genq\n"
        f"assert genq.__file__.startswith({str(lib)!r}), genq.__file__\n"
        f"from {module} import {function} as main\n"
        "sys.argv = ['genq', '--help']\n"
        "sys.exit(main())\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=process_env({"PYTHONPATH": str(lib), "COLUMNS": "120"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    for command in ("up", "worker", "gateway", "submit", "dlq"):
        assert re.search(rf"^\W*{command}\b", ran.stdout, flags=re.M), ran.stdout
