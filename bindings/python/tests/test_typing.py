"""The package's type hints hold and serve users: mypy --strict over deeplearning/
(settings in pyproject.toml) and over tests/typed/, programs written as a typed user
writes them, which are also run, so py.typed tells users' type checkers the truth."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
TYPED = sorted((Path(__file__).resolve().parent / "typed").glob("*.py"))


def test_mypy_strict_passes_over_the_package():
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "pyproject.toml"],
                            cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_passes_over_typed_user_programs():
    assert TYPED, "tests/typed/ holds no program"
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", *map(str, TYPED)],
                            cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_a_wrong_argument_type(tmp_path):
    # The check can fail: a typed program passing a string for an int is reported.
    bad = tmp_path / "bad.py"
    bad.write_text("import deeplearning as dl\n"
                   "dl.Model({'input': {'size': 1}, 'layers': [], 'loss': 'mse'}).fit([[1.0]], [[1.0]], epochs='5')\n")
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", str(bad)],
                            cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and '"epochs"' in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("program", TYPED, ids=lambda p: p.name)
def test_typed_user_programs_run(program):
    result = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stdout + result.stderr
