"""Model files in other frameworks' formats: ONNX export and import.

    model.to_onnx("mnist.onnx")                     # an ONNX inference graph
    same = dl.Model.from_onnx("mnist.onnx")         # back, trainable
    torch_net = dl.Model.from_onnx("net.onnx", loss="mse", optimizer={"type": "sgd", "lr": 0.01})

The exported graph takes the raw input as :meth:`Model.predict` does (the
preprocessing becomes Mul/Sub/Div nodes at the front), has a symbolic batch
dimension, and runs in ONNX Runtime. Import reads chains of the operators listed
in docs/onnx.md, as ``torch.onnx.export`` and tf2onnx write MLPs and CNNs, and
refuses anything else naming the node and its operator
(:class:`~deeplearning.UnsupportedError`). Both go through the library's
``dl_model_export`` / ``dl_model_import``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._lib import MODEL, call, lib
from ._native import spec_text

if TYPE_CHECKING:
    from .model import Model, PathLike

#: The keyword options :func:`import_model` takes (spec settings an ONNX file does not say).
IMPORT_OPTIONS = ("name", "loss", "optimizer", "seed", "init", "dtype")


def _format(format: str | None) -> bytes | None:
    return None if format is None else format.encode("utf-8")


def export(model: Model, path: PathLike, format: str | None = None) -> None:
    """Writes `model` to `path` as `format` ("onnx", "h5", "keras", "keras_h5", "safetensors"; None: from the extension)."""
    from .model import _path
    call(lib.dl_model_export, model._h, _path(path), _format(format))


def import_model(path: PathLike, format: str | None = None, **options: Any) -> Model:
    """The model in the file at `path` ("onnx", "h5"; None: from the extension).

    `options` set what an ONNX file does not say, each as in a spec: ``loss``
    (a name or a dict), ``optimizer`` (a dict), ``name``, ``seed``, ``init``,
    ``dtype``. Without them, a graph exported by this library brings back its
    own; any other gets cross-entropy for several outputs, MSE for one, and
    Adam with lr 0.001.
    """
    from .model import Model, _path
    unknown = sorted(set(options) - set(IMPORT_OPTIONS))
    if unknown:
        raise TypeError(f"import_model() got unknown options {unknown}; the options are {list(IMPORT_OPTIONS)}")
    text = spec_text(options) if options else None
    return Model._wrap(call(lib.dl_model_import, _path(path), _format(format), text, MODEL))


__all__ = ["IMPORT_OPTIONS", "export", "import_model"]
