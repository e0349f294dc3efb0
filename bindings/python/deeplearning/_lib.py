"""The one module that talks to the shared library through ctypes.

It finds and loads ``libdeeplearning``, refuses a library whose version is not
the package's, declares every function of ``Include/deeplearning.h`` once
(argument and result types), and turns failed statuses into :class:`DLError`
through :func:`check`. Nothing else in the package imports ctypes.

Where the library is looked for, in order:

1. the path in the environment variable ``DEEPLEARNING_LIBRARY``; when it is
   set, it is the only place tried, so a typo is reported instead of silently
   loading some other build;
2. a copy inside the package folder itself, as the wheel of scripts/wheel.sh
   carries it (with the libraries it needs, in ``deeplearning.libs/``);
3. the build folders of the source tree this package sits in (the nearest
   parent folder holding ``Include/deeplearning.h``): ``build/`` (CMake),
   ``.build/release/``, ``.build/debug/`` (SwiftPM).
"""

from __future__ import annotations

import ctypes
import json
import math
import operator
import os
import sys
from collections.abc import Iterable
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_double, c_int, c_size_t, c_uint64, c_void_p
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import DTypeLike

from ._version import __version__
from .errors import IntegerRangeError, error_for

ENV_VAR = "DEEPLEARNING_LIBRARY"
LIBRARY_NAME = {"darwin": "libdeeplearning.dylib", "win32": "deeplearning.dll"}.get(
    sys.platform, "libdeeplearning.so")


class dl_model(ctypes.Structure):
    """The opaque ``dl_model`` of the header; only pointers to it exist."""


class dl_layer(ctypes.Structure):
    """The opaque ``dl_layer`` (a standalone layer) of the header."""


class dl_loss(ctypes.Structure):
    """The opaque ``dl_loss`` (a standalone loss) of the header."""


class dl_dataset(ctypes.Structure):
    """The opaque ``dl_dataset`` (a data set loaded by the library) of the header."""


MODEL_P = POINTER(dl_model)
LAYER_P = POINTER(dl_layer)
LOSS_P = POINTER(dl_loss)
DATASET_P = POINTER(dl_dataset)

# The header's element type codes of standalone layers and losses, by NumPy dtype.
DTYPE_CODES = {np.dtype(np.float32): 0,   # DL_FLOAT32
               np.dtype(np.float64): 1}   # DL_FLOAT64


def _address(array: np.ndarray) -> int:
    """The address of a C-contiguous array's first element. Through the buffer protocol
    where it may (a writeable, non-empty buffer): `.ctypes.data` costs a few microseconds
    more a call for one sample."""
    if array.flags.writeable and array.nbytes:   # (numpy's stubs do not say ndarray is a Buffer)
        return ctypes.addressof(ctypes.c_char.from_buffer(cast(Any, array)))
    return int(array.ctypes.data)


def _array(dtypes: Iterable[Any], *flags: str, nullable: bool = False) -> type:
    """An argument type accepting only a C-contiguous, aligned ndarray of one of
    `dtypes`, passed as the address of its first element.

    ctypes itself then refuses a wrong dtype or layout, as a second line of
    defence behind the checks in ``_arrays``. The check costs a few attribute
    reads, so it stays on even for the per-step calls. `flags` may add
    "WRITEABLE" (OUT buffers); `nullable` also accepts None (NULL).
    """
    dtypes = tuple(np.dtype(dtype) for dtype in dtypes)
    writeable = "WRITEABLE" in flags
    expected = (f"a {'/'.join(('C_CONTIGUOUS', 'ALIGNED') + flags)} "
                f"{' or '.join(map(str, dtypes))} ndarray")

    class Array:
        @classmethod
        def from_param(cls, obj: object) -> c_void_p | None:
            if obj is None and nullable:
                return None
            if isinstance(obj, np.ndarray) and obj.dtype in dtypes:
                layout = obj.flags
                if layout.c_contiguous and layout.aligned and (not writeable or layout.writeable):
                    return c_void_p(_address(obj))
            raise TypeError(f"expected {expected}")

    return Array


_F32_IN = _array([np.float32])
_F32_IN_OPT = _array([np.float32], nullable=True)
_F32_OUT = _array([np.float32], "WRITEABLE")
_I32_IN_OPT = _array([np.int32], nullable=True)
_I32_OUT = _array([np.int32], "WRITEABLE")
_F64_OUT_OPT = _array([np.float64], "WRITEABLE", nullable=True)
# The header's ``void *`` element buffers: float32 or float64 (whether it is the
# handle's dtype is the caller's check).
_BUF_IN = _array(DTYPE_CODES)
_BUF_IN_OPT = _array(DTYPE_CODES, nullable=True)
_BUF_OUT = _array(DTYPE_CODES, "WRITEABLE")

# The header's dl_progress_fn: (user_data, done, total, samples_done, mean_loss) -> int.
PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_size_t, c_size_t, c_size_t, c_double)
# The header's dl_reduce_fn: (user_data, buffer, count, dtype) -> int (deeplearning.distributed).
REDUCE_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t, c_int)

# name: (result type, argument types), in the header's order.
_FUNCTIONS: dict[str, tuple[Any, list[Any]]] = {
    "dl_version_number": (c_int, []),
    "dl_version": (c_char_p, []),
    "dl_status_string": (c_char_p, [c_int]),
    "dl_last_error": (c_char_p, []),
    "dl_set_num_threads": (None, [c_int]),
    "dl_get_num_threads": (c_int, []),
    "dl_model_from_spec": (c_int, [c_char_p, POINTER(MODEL_P)]),
    "dl_model_from_json": (c_int, [c_char_p, POINTER(MODEL_P)]),
    "dl_model_clone": (c_int, [MODEL_P, POINTER(MODEL_P)]),
    "dl_model_free": (None, [MODEL_P]),
    "dl_model_save": (c_int, [MODEL_P, c_char_p]),
    "dl_model_load": (c_int, [c_char_p, POINTER(MODEL_P)]),
    # Model files in other formats (deeplearning.onnx).
    "dl_model_export": (c_int, [MODEL_P, c_char_p, c_char_p]),
    "dl_model_import": (c_int, [c_char_p, c_char_p, c_char_p, POINTER(MODEL_P)]),
    "dl_train_step": (c_int, [MODEL_P, _F32_IN, c_size_t, _I32_IN_OPT, _F32_IN_OPT,
                              POINTER(c_double)]),
    "dl_predict": (c_int, [MODEL_P, _F32_IN, c_size_t, _F32_OUT, c_size_t]),
    "dl_predict_classes": (c_int, [MODEL_P, _F32_IN, c_size_t, _I32_OUT, c_size_t]),
    "dl_evaluate": (c_int, [MODEL_P, _F32_IN, c_size_t, _I32_IN_OPT, _F32_IN_OPT,
                            POINTER(c_double), POINTER(c_double)]),
    "dl_gradcheck": (c_int, [MODEL_P, _F32_IN, c_size_t, _I32_IN_OPT, _F32_IN_OPT,
                             c_size_t, POINTER(c_double), _F64_OUT_OPT, c_size_t]),
    "dl_gradcheck_report": (c_int, [MODEL_P, _F32_IN, c_size_t, _I32_IN_OPT, _F32_IN_OPT, c_size_t,
                                    c_double, c_double, _F64_OUT_OPT, _F64_OUT_OPT, _F64_OUT_OPT,
                                    c_size_t, POINTER(c_int)]),
    "dl_model_get_learning_rate": (c_int, [MODEL_P, POINTER(c_double)]),
    "dl_model_set_learning_rate": (c_int, [MODEL_P, c_double]),
    "dl_model_set_preprocessing": (c_int, [MODEL_P, c_double, c_double, c_double]),
    "dl_model_get_preprocessing": (c_int, [MODEL_P, POINTER(c_double), POINTER(c_double),
                                           POINTER(c_double)]),
    "dl_model_input_size": (c_int, [MODEL_P, POINTER(c_size_t)]),
    "dl_model_output_size": (c_int, [MODEL_P, POINTER(c_size_t)]),
    "dl_model_param_count": (c_int, [MODEL_P, POINTER(c_size_t)]),
    "dl_model_num_params": (c_int, [MODEL_P, POINTER(c_size_t)]),
    "dl_model_param_name": (c_int, [MODEL_P, c_size_t, POINTER(c_char_p)]),
    "dl_model_param_shape": (c_int, [MODEL_P, c_size_t, POINTER(c_size_t), c_size_t,
                                     POINTER(c_size_t)]),
    "dl_model_get_param": (c_int, [MODEL_P, c_size_t, _F32_OUT, c_size_t]),
    "dl_model_set_param": (c_int, [MODEL_P, c_size_t, _F32_IN, c_size_t]),
    "dl_model_num_layers": (c_int, [MODEL_P, POINTER(c_size_t)]),
    "dl_model_layer_type": (c_int, [MODEL_P, c_size_t, POINTER(c_char_p)]),
    "dl_model_layer_output_shape": (c_int, [MODEL_P, c_size_t, POINTER(c_size_t), c_size_t,
                                            POINTER(c_size_t)]),
    "dl_model_num_buffers": (c_int, [MODEL_P, POINTER(c_size_t)]),
    "dl_model_buffer_name": (c_int, [MODEL_P, c_size_t, POINTER(c_char_p)]),
    "dl_model_buffer_shape": (c_int, [MODEL_P, c_size_t, POINTER(c_size_t), c_size_t,
                                      POINTER(c_size_t)]),
    "dl_model_get_buffer": (c_int, [MODEL_P, c_size_t, _F32_OUT, c_size_t]),
    "dl_model_set_buffer": (c_int, [MODEL_P, c_size_t, _F32_IN, c_size_t]),
    "dl_model_spec_json": (c_int, [MODEL_P, POINTER(c_char_p)]),
    "dl_model_step_count": (c_int, [MODEL_P, POINTER(c_uint64)]),
    "dl_model_end_epoch": (c_int, [MODEL_P]),
    "dl_registry_json": (c_char_p, []),
    "dl_layer_from_json": (c_int, [c_char_p, c_int, c_uint64, POINTER(LAYER_P)]),
    "dl_layer_from_json_shaped": (c_int, [c_char_p, POINTER(c_size_t), c_size_t, c_int, c_uint64,
                                          POINTER(LAYER_P)]),
    "dl_layer_output_shape": (c_int, [LAYER_P, POINTER(c_size_t), c_size_t, POINTER(c_size_t)]),
    "dl_layer_free": (None, [LAYER_P]),
    "dl_layer_type": (c_int, [LAYER_P, POINTER(c_char_p)]),
    "dl_layer_output_features": (c_int, [LAYER_P, c_size_t, POINTER(c_size_t)]),
    "dl_layer_forward": (c_int, [LAYER_P, _BUF_IN, c_size_t, c_size_t, c_int, _BUF_OUT, c_size_t]),
    "dl_layer_backward": (c_int, [LAYER_P, _BUF_IN, c_size_t, c_size_t, _BUF_OUT, c_size_t]),
    "dl_layer_num_params": (c_int, [LAYER_P, POINTER(c_size_t)]),
    "dl_layer_param_name": (c_int, [LAYER_P, c_size_t, POINTER(c_char_p)]),
    "dl_layer_param_shape": (c_int, [LAYER_P, c_size_t, POINTER(c_size_t), c_size_t,
                                     POINTER(c_size_t)]),
    "dl_layer_param_data": (c_int, [LAYER_P, c_size_t, POINTER(c_void_p)]),
    "dl_layer_grad_data": (c_int, [LAYER_P, c_size_t, POINTER(c_void_p)]),
    "dl_last_accuracy": (c_double, []),
    "dl_layer_num_buffers": (c_int, [LAYER_P, POINTER(c_size_t)]),
    "dl_layer_buffer_name": (c_int, [LAYER_P, c_size_t, POINTER(c_char_p)]),
    "dl_layer_buffer_shape": (c_int, [LAYER_P, c_size_t, POINTER(c_size_t), c_size_t,
                                      POINTER(c_size_t)]),
    "dl_layer_buffer_data": (c_int, [LAYER_P, c_size_t, POINTER(c_void_p)]),
    "dl_loss_from_json": (c_int, [c_char_p, c_int, POINTER(LOSS_P)]),
    "dl_loss_free": (None, [LOSS_P]),
    "dl_loss_forward": (c_int, [LOSS_P, _BUF_IN, c_size_t, c_size_t, _I32_IN_OPT, _BUF_IN_OPT,
                                POINTER(c_double)]),
    "dl_loss_backward": (c_int, [LOSS_P, _BUF_OUT, c_size_t]),
    "dl_dataset_load_idx": (c_int, [c_char_p, c_char_p, POINTER(DATASET_P)]),
    "dl_dataset_load_mnist": (c_int, [c_char_p, c_int, POINTER(DATASET_P)]),
    "dl_dataset_load_csv": (c_int, [c_char_p, c_size_t, POINTER(DATASET_P)]),
    "dl_dataset_load_csv_targets": (c_int, [c_char_p, c_size_t, c_size_t, POINTER(DATASET_P)]),
    "dl_dataset_from_arrays": (c_int, [_F32_IN, c_size_t, POINTER(c_size_t), c_size_t, _I32_IN_OPT,
                                       _F32_IN_OPT, c_size_t, POINTER(DATASET_P)]),
    "dl_dataset_borrow_arrays": (c_int, [_F32_IN, c_size_t, POINTER(c_size_t), c_size_t, _I32_IN_OPT,
                                         _F32_IN_OPT, c_size_t, c_void_p, c_void_p, POINTER(DATASET_P)]),
    "dl_dataset_load_hdf5": (c_int, [c_char_p, POINTER(DATASET_P)]),
    "dl_dataset_free": (None, [DATASET_P]),
    "dl_dataset_info": (c_int, [DATASET_P, POINTER(c_size_t), POINTER(c_size_t), POINTER(c_int)]),
    "dl_dataset_sample_shape": (c_int, [DATASET_P, POINTER(c_size_t), c_size_t, POINTER(c_size_t)]),
    "dl_dataset_features": (c_int, [DATASET_P, POINTER(c_void_p)]),
    "dl_dataset_labels": (c_int, [DATASET_P, POINTER(c_void_p)]),
    "dl_dataset_targets": (c_int, [DATASET_P, POINTER(c_void_p), POINTER(c_size_t)]),
    "dl_dataset_standardizer": (c_int, [DATASET_P, c_double, POINTER(c_double), POINTER(c_double)]),
    "dl_model_set_progress": (c_int, [MODEL_P, PROGRESS_FN, c_void_p]),
    "dl_train_epoch": (c_int, [MODEL_P, DATASET_P, c_size_t, c_int, POINTER(c_double)]),
    "dl_evaluate_dataset": (c_int, [MODEL_P, DATASET_P, POINTER(c_double), POINTER(c_double)]),
    # Data-parallel training (deeplearning.distributed).
    "dl_model_set_gradient_reducer": (c_int, [MODEL_P, c_int, c_int, REDUCE_FN, c_void_p]),
    "dl_model_reduce_count": (c_int, [MODEL_P, POINTER(c_size_t)]),
}


def _repo_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` that holds Include/deeplearning.h."""
    for folder in (start, *start.parents):
        if (folder / "Include" / "deeplearning.h").is_file():
            return folder
    return None


def candidates() -> list[Path]:
    """The places the library is looked for, in order (see the module docs)."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return [Path(explicit)]
    package = Path(__file__).resolve().parent
    places = [package / LIBRARY_NAME]
    root = _repo_root(package)
    if root is not None:
        places += [root / "build" / LIBRARY_NAME,
                   root / ".build" / "release" / LIBRARY_NAME,
                   root / ".build" / "debug" / LIBRARY_NAME]
    return places


# The range of each integer C type the header uses, for the checks below.
_INTEGER_RANGES: dict[Any, tuple[int, int]] = {c_size_t: (0, 2**(8 * ctypes.sizeof(c_size_t)) - 1),
                   c_int: (-2**(8 * ctypes.sizeof(c_int) - 1), 2**(8 * ctypes.sizeof(c_int) - 1) - 1),
                   c_uint64: (0, 2**64 - 1)}


# (c_size_t and c_uint64 are the same type on the platforms the package supports.)
_C_NAMES: dict[Any, str] = {c_size_t: "size_t", c_int: "int", c_uint64: "uint64_t"}


def checked_integer(value: Any, ctype: type, what: str) -> int:
    """`value` as an int that `ctype` holds, or IntegerRangeError naming `what` (and
    TypeError for a value that is not an integer)."""
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}") from None
    low, high = _INTEGER_RANGES[ctype]
    if not low <= number <= high:
        raise IntegerRangeError(f"{what} must be an integer from {low} to {high} (a C {_C_NAMES[ctype]}), "
                                f"got {number}")
    return number


def _checked_argument(ctype: type, function: str, position: int) -> type:
    """An argument type for integer argument `position` of `function` that refuses a value
    `ctype` cannot hold: ctypes itself would wrap it silently (-1 becomes SIZE_MAX).

    :func:`call` checks first and raises IntegerRangeError; this is the second line of
    defence for direct calls, where ctypes turns the error into ctypes.ArgumentError."""
    what = f"{function}() argument {position}"

    class Checked:
        @classmethod
        def from_param(cls, obj: object) -> Any:
            return ctype(checked_integer(obj, ctype, what))

    return Checked


def _declare(lib: ctypes.CDLL, path: Path) -> None:
    for name, (restype, argtypes) in _FUNCTIONS.items():
        try:
            function = getattr(lib, name)
        except AttributeError:
            raise ImportError(f"deeplearning: {path} does not export {name}(); it was built "
                              "from other sources than this package expects") from None
        function.restype = restype
        function.argtypes = [_checked_argument(t, name, i + 1) if t in _INTEGER_RANGES else t
                             for i, t in enumerate(argtypes)]


def load(places: list[Path] | None = None, expected_version: str = __version__) -> tuple[ctypes.CDLL, Path]:
    """Loads the first library found among `places` (default: :func:`candidates`).

    Returns (library, path). Raises ImportError listing every place tried when
    none holds the library, or naming both versions when they differ.
    """
    places = candidates() if places is None else places
    for path in places:
        if not path.is_file():
            continue
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as error:
            raise ImportError(f"deeplearning: cannot load {path}: {error}") from None
        _declare(lib, path)
        found = lib.dl_version().decode("ascii", "replace")
        if found != expected_version:
            raise ImportError(f"deeplearning: {path} is version {found}, but this Python "
                              f"package is version {expected_version}; build or install "
                              "matching versions")
        return lib, path
    tried = "\n".join(f"  {p}" for p in places)
    raise ImportError(f"deeplearning: cannot find the shared library {LIBRARY_NAME}. Tried:\n"
                      f"{tried}\nBuild it (swift build, or cmake -S . -B build && cmake --build "
                      f"build) or set {ENV_VAR} to its path.")


lib, library_path = load()

# name: ((position, C type) of each integer argument), for the checks in :func:`call`.
_INTEGER_ARGUMENTS: dict[str, tuple[tuple[int, Any], ...]] = {name: tuple((i, t) for i, t in enumerate(argtypes) if t in _INTEGER_RANGES)
                      for name, (_, argtypes) in _FUNCTIONS.items()}


def check(status: int) -> None:
    """Raises DLError (its subclass for `status`) with this thread's last library message
    unless `status` is DL_OK."""
    if status:  # DL_OK is 0; a plain test, as this runs after every call
        message = lib.dl_last_error() or lib.dl_status_string(status)
        raise error_for(message.decode("utf-8", "replace"), status)


class Out:
    """Marks an OUT parameter of :func:`call`: a fresh `ctype` passed by reference."""

    __slots__ = ("ctype",)

    def __init__(self, ctype: type) -> None:
        self.ctype = ctype


# The C integer types, for checked_integer() outside this module.
SIZE_T, C_INT, C_UINT64 = c_size_t, c_int, c_uint64

DOUBLE, SIZE, UINT64, STRING, ADDRESS = (Out(t) for t in (c_double, c_size_t, c_uint64, c_char_p, c_void_p))
MODEL, LAYER, LOSS = (Out(t) for t in (MODEL_P, LAYER_P, LOSS_P))
INT, DATASET = Out(c_int), Out(DATASET_P)
_HANDLES = (MODEL_P, LAYER_P, LOSS_P, DATASET_P)


def call(function: Any, *args: Any) -> Any:
    """Calls `function`, checks its status and returns its OUT values.

    Each :class:`Out` marker among `args` is replaced by a new value passed by
    reference; their results come back in order: None without OUT parameters,
    the value for one, a tuple for several. Strings are decoded from UTF-8,
    handles returned as MODEL_P, LAYER_P or LOSS_P and addresses as ints.
    """
    for position, ctype in _INTEGER_ARGUMENTS.get(function.__name__, ()):
        checked_integer(args[position], ctype, f"{function.__name__}() argument {position + 1}")
    outs = []
    actual = []
    for arg in args:
        if isinstance(arg, Out):
            out = arg.ctype()
            outs.append(out)
            arg = ctypes.byref(out)
        actual.append(arg)
    check(function(*actual))
    if not outs:
        return None
    if len(outs) == 1:
        return _value(outs[0])
    return tuple(map(_value, outs))


def reduce_callback(reduce: Any) -> Any:
    """A dl_reduce_fn (deeplearning.distributed) that calls ``reduce(view)`` with a NumPy
    view of the library's buffer (float32 or float64, as the call says), to be summed over
    the ranks in place. An exception in `reduce` is printed and fails the step (the
    library then raises DLError on this rank, and leaves the model unchanged)."""
    def callback(user_data: Any, buffer: Any, count: int, dtype: int) -> int:
        try:
            ctype = c_double if dtype == DTYPE_CODES[np.dtype(np.float64)] else ctypes.c_float
            reduce(np.ctypeslib.as_array(ctypes.cast(buffer, POINTER(ctype)), shape=(count,)))
            return 0
        except BaseException as error:  # nothing may unwind through the library's frames
            print(f"deeplearning: the gradient reducer raised {error!r}", file=sys.stderr)
            return 1
    return REDUCE_FN(callback)


NO_REDUCER = REDUCE_FN()


def last_accuracy() -> float | None:
    """dl_last_accuracy: this thread's accuracy of the last train step or progress report,
    None for a model that is not a classifier."""
    value = float(lib.dl_last_accuracy())
    return None if math.isnan(value) else value


def train_batch(handle: Any, x: np.ndarray, labels: np.ndarray | None, targets: np.ndarray | None) -> float:
    """dl_train_step on arrays checked by ``_arrays``; the batch's mean loss before the update.

    This is the call made once per mini-batch (Model.train_step, Model.fit), so
    it does by hand what :func:`call` does generically.
    """
    loss = c_double()
    check(lib.dl_train_step(handle, x, len(x), labels, targets, ctypes.byref(loss)))
    return float(loss.value)


# dl_predict and dl_predict_classes taking plain addresses, for arrays that ``_arrays``
# has checked (Model.predict, Model.predict_classes): the checked argument types that
# `lib.dl_predict` keeps for every other caller cost about 3 us a call, as much as the
# library takes to predict one MNIST sample, and :func:`call` 1.5 us more.
def _unchecked(name: str) -> Any:
    function = lib[name]   # a function object of its own; lib.<name> keeps its checked types
    function.restype = c_int
    function.argtypes = [c_void_p, c_void_p, c_size_t, c_void_p, c_size_t]
    return function


_PREDICT, _PREDICT_CLASSES = _unchecked("dl_predict"), _unchecked("dl_predict_classes")


def predict_into(handle: Any, x: np.ndarray, out: np.ndarray, classes: bool = False) -> None:
    """dl_predict (dl_predict_classes with `classes`) of the samples `x` into `out`. Both
    come checked by ``_arrays``: x C-contiguous, aligned float32 of at least one row; out
    a new C-contiguous float32 (int32) array of the outputs' size. The caller holds both
    for the call."""
    function = _PREDICT_CLASSES if classes else _PREDICT
    check(function(handle, _address(x), len(x), _address(out), out.size))


def _value(out: Any) -> Any:
    if isinstance(out, _HANDLES):
        return out
    if isinstance(out, c_char_p):
        return (out.value or b"").decode("utf-8", "replace")
    return out.value


def param_shape(handle: Any, index: int, function: Any = None) -> tuple[int, ...]:
    """The shape of parameter tensor `index` of a model or a standalone layer, or what
    another shape function of the header (dl_model_buffer_shape, ...) gives for `index`."""
    if function is None:
        function = lib.dl_layer_param_shape if isinstance(handle, LAYER_P) else lib.dl_model_param_shape
    dims = (c_size_t * 4)()
    ndim = call(function, handle, index, dims, len(dims), SIZE)
    return tuple(dims[:ndim])


def layer_output_shape(layer: Any) -> tuple[int, ...]:
    """One sample's output shape of a standalone layer made for an input shape."""
    dims = (c_size_t * 4)()
    ndim = call(lib.dl_layer_output_shape, layer, dims, len(dims), SIZE)
    return tuple(dims[:ndim])


def memory_view(address: int, shape: tuple[int, ...], dtype: DTypeLike, owner: object) -> np.ndarray:
    """A writable ndarray over `shape` elements of `dtype` at `address`, in place.

    The array keeps `owner` (whatever frees that memory when it dies) alive for
    as long as the array or any view of it exists, so it can never dangle.
    """
    ctypes_type: Any = np.ctypeslib.as_ctypes_type   # typed for literal dtypes only
    element = ctypes_type(np.dtype(dtype))
    memory: Any = (element * math.prod(shape)).from_address(address)
    memory._owner = owner
    return np.ctypeslib.as_array(memory).reshape(shape)


def size_array(values: tuple[int, ...]) -> ctypes.Array[c_size_t]:
    """`values` as a C array of size_t (a shape passed to the library); a value size_t
    cannot hold raises IntegerRangeError instead of wrapping."""
    return (c_size_t * len(values))(*(checked_integer(v, c_size_t, "a shape's dimension") for v in values))


def sample_shape(dataset: Any) -> tuple[int, ...]:
    """The shape of one sample of a ``dl_dataset``."""
    dims = (c_size_t * 32)()   # HDF5 allows 32 dimensions, the first of them the samples
    ndim = call(lib.dl_dataset_sample_shape, dataset, dims, len(dims), SIZE)
    return tuple(dims[:ndim])


def set_num_threads(n: int) -> None:
    """Threads the library computes on (dl_set_num_threads): 1 to 8, clamped.

    The default is DL_NUM_THREADS, else one per available CPU (less one, left to the batch
    loader, when there are three or more). Matrix products run on these threads too, one
    single-threaded OpenBLAS call per block (the library sets OpenBLAS to one thread, so
    OPENBLAS_NUM_THREADS does not change it). Results do not depend on it.
    """
    lib.dl_set_num_threads(checked_integer(n, c_int, "set_num_threads(n)"))


def registry() -> dict[str, Any]:
    """Every layer, loss, optimizer, schedule and initializer the library knows, with
    their options (name, value, required, default, doc, JSON schema), as
    ``dl_registry_json`` gives them: ``registry()["loss"][0]["type"]``."""
    components: dict[str, Any] = json.loads(lib.dl_registry_json().decode())
    return components


def get_num_threads() -> int:
    """The current setting of :func:`set_num_threads`."""
    return int(lib.dl_get_num_threads())
