"""Fixtures shared by the dl command's tests."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dl():
    """The dl command under test: DL_COMMAND, else the SwiftPM debug build."""
    command = os.environ.get("DL_COMMAND") or str(ROOT / ".build" / "debug" / "dl")
    if not os.access(command, os.X_OK):
        pytest.skip(f"no dl command at {command} (set DL_COMMAND, or swift build --product dl)")
    return command
