"""The package's type hints hold: mypy --strict over deeplearning/ (settings in
pyproject.toml), so py.typed tells users' type checkers the truth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def test_mypy_strict_passes_over_the_package():
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "pyproject.toml"],
                            cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
