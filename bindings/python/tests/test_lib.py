"""The ctypes layer: the header contract, finding and checking the library."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import deeplearning as dl
from deeplearning import _lib
from deeplearning.errors import Status

HEADER = Path(__file__).resolve().parents[3] / "Include" / "deeplearning.h"


def header_functions() -> dict:
    """{name: number of parameters} of every DL_API function in the header."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    found = {}
    for name, params in re.findall(r"DL_API\s[^;(]*?\b(dl_\w+)\s*\(([^)]*)\)\s*;", text):
        params = params.strip()
        found[name] = 0 if params in ("", "void") else params.count(",") + 1
    return found


def test_every_header_function_is_declared_once_with_its_arity():
    functions = header_functions()
    assert len(functions) >= 29
    declared = {name: len(args) for name, (_, args) in _lib._FUNCTIONS.items()}
    assert declared == functions


def test_status_codes_match_the_header():
    defines = dict(re.findall(r"#define DL_(\w+)\s+(\d+)\s*/\*", HEADER.read_text()))
    statuses = {name: int(value) for name, value in defines.items()
                if name not in ("VERSION_MAJOR", "VERSION_MINOR", "VERSION_PATCH",
                                "FLOAT32", "FLOAT64", "SPLIT_TRAIN", "SPLIT_TEST")}
    assert statuses == {s.name: s.value for s in Status}


def test_split_codes_match_the_header():
    from deeplearning import data
    defines = dict(re.findall(r"#define DL_SPLIT_(\w+)\s+(\d+)\s*/\*", HEADER.read_text()))
    assert {name.lower(): int(value) for name, value in defines.items()} == data._SPLITS


def test_dtype_codes_match_the_header():
    defines = dict(re.findall(r"#define DL_(FLOAT\d\d)\s+(\d+)\s*/\*", HEADER.read_text()))
    assert {f"FLOAT{dtype.itemsize * 8}": code for dtype, code in _lib.DTYPE_CODES.items()} == \
        {name: int(value) for name, value in defines.items()}


def test_versions_agree():
    assert dl.__version__ == _lib.lib.dl_version().decode()
    text = HEADER.read_text()
    assert f'#define DL_VERSION_STRING "{dl.__version__}"' in text
    major, minor, patch = map(int, dl.__version__.split("."))
    assert _lib.lib.dl_version_number() == major * 10000 + minor * 100 + patch


def test_a_library_of_another_version_is_refused():
    with pytest.raises(ImportError) as caught:
        _lib.load([dl.library_path], expected_version="9.9.9")
    message = str(caught.value)
    assert "9.9.9" in message and dl.__version__ in message and str(dl.library_path) in message


def test_missing_library_lists_the_places_tried(tmp_path):
    places = [tmp_path / "a" / "libdeeplearning.so", tmp_path / "b" / "libdeeplearning.so"]
    with pytest.raises(ImportError) as caught:
        _lib.load(places)
    message = str(caught.value)
    assert all(str(p) in message for p in places) and _lib.ENV_VAR in message


def test_a_file_that_is_not_a_library_is_reported(tmp_path):
    bogus = tmp_path / "libdeeplearning.so"
    bogus.write_text("not a library")
    with pytest.raises(ImportError, match="cannot load"):
        _lib.load([bogus])


def test_search_order(monkeypatch):
    monkeypatch.setenv(_lib.ENV_VAR, "/somewhere/libdeeplearning.so")
    assert _lib.candidates() == [Path("/somewhere/libdeeplearning.so")]
    monkeypatch.delenv(_lib.ENV_VAR)
    places = _lib.candidates()
    package = Path(_lib.__file__).resolve().parent
    assert places[0] == package / _lib.LIBRARY_NAME   # a wheel's own copy comes first
    root = _lib._repo_root(package)
    if root is not None:                      # running from the source tree
        assert places[1:] == [root / "build" / _lib.LIBRARY_NAME,
                              root / ".build" / "release" / _lib.LIBRARY_NAME,
                              root / ".build" / "debug" / _lib.LIBRARY_NAME]


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, timeout=60)


def test_import_with_a_wrong_environment_variable_fails_clearly(tmp_path):
    missing = tmp_path / "nowhere" / "libdeeplearning.so"
    result = run_python("import deeplearning", DEEPLEARNING_LIBRARY=str(missing))
    assert result.returncode != 0
    assert "ImportError" in result.stderr and str(missing) in result.stderr


def test_import_through_the_environment_variable():
    result = run_python("import deeplearning; print(deeplearning.library_path)",
                        DEEPLEARNING_LIBRARY=str(dl.library_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(dl.library_path)


def test_check_raises_with_the_last_error_or_the_fixed_text(xor_model):
    _lib.check(0)
    with pytest.raises(dl.DLError) as caught:
        dl.Model({"layers": []})
    assert caught.value.message.startswith("<string>: ")
    assert xor_model.input_size == 2 and xor_model.param_count == 42   # resets the last error
    assert _lib.lib.dl_last_error() == b""
    with pytest.raises(dl.DLError) as caught:
        _lib.check(Status.BUSY)                # no detail: the fixed text for the code
    assert caught.value.message == _lib.lib.dl_status_string(Status.BUSY).decode()
