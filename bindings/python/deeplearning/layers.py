"""The tutorial's layers, computed by the library: Linear and the activations.

    layer = Linear(784, 128)
    y = layer.forward(x)                 # x: (N, 784) -> y: (N, 128)
    dL_dx = layer.backward(dL_dy)        # stores layer.dL_dW (128, 784), layer.dL_db (128,)
    layer._w -= lr * layer.dL_dW         # updates the layer in place

Each layer is a library ``dl_layer``. It computes in float64, as NumPy would,
unless made with ``dtype=np.float32``; ``forward`` converts any real input to
that dtype (integers and bools too) and returns a new array of it.

A layer's parameters and their gradients are NumPy views of the library's own
memory: writing into them changes the layer, and ``backward`` overwrites the
gradients. Keeping a view keeps that memory alive, even after ``close()``.
"""

from __future__ import annotations

import math
import numbers
import operator

from typing import Any, SupportsIndex

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _arrays
from ._lib import (ADDRESS, DTYPE_CODES, LAYER, SIZE, STRING, call, layer_output_shape, lib, memory_view,
                   param_shape, size_array)
from ._native import Handle, NativeObject, rows_cols, spec_text


def _seed(seed: SupportsIndex | None) -> int:
    """The initial weights' seed: `seed`, or a draw from NumPy's global generator.

    Drawing from ``np.random`` makes ``np.random.seed(42)`` before building the
    layers reproduce them, as it does for a NumPy implementation.
    """
    if seed is None:
        return int(np.random.randint(2**63))
    value = operator.index(seed)
    if not 0 <= value < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {value}")
    return value


def _positive(value: SupportsIndex, name: str) -> int:
    count = operator.index(value)
    if count < 1:
        raise ValueError(f"{name} must be a positive integer, got {count}")
    return count


class Layer(NativeObject):
    """A library layer: ``forward(x)`` caches what ``backward(dL_dy)`` needs.

    ``parameters`` and ``gradients`` map each parameter's name ("weight",
    "bias") to an in-place view (see the module docs); both are empty for an
    activation.
    """

    def __init__(self, spec: dict[str, Any], dtype: DTypeLike = np.float64, seed: int = 0,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(dtype)
        if input_shape is None:
            pointer = call(lib.dl_layer_from_json, spec_text(spec), DTYPE_CODES[self.dtype], seed, LAYER)
        else:
            pointer = call(lib.dl_layer_from_json_shaped, spec_text(spec), size_array(input_shape),
                           len(input_shape), DTYPE_CODES[self.dtype], seed, LAYER)
        self._handle = Handle(pointer, lib.dl_layer_free)
        self._parameters: dict[str, np.ndarray] = {}
        self._gradients: dict[str, np.ndarray] = {}
        for index in range(call(lib.dl_layer_num_params, pointer, SIZE)):
            name = call(lib.dl_layer_param_name, pointer, index, STRING)
            shape = param_shape(pointer, index)
            for views, function in ((self._parameters, lib.dl_layer_param_data),
                                    (self._gradients, lib.dl_layer_grad_data)):
                address = call(function, pointer, index, ADDRESS)
                views[name] = memory_view(address, shape, self.dtype, self._handle)
        self._buffers: dict[str, np.ndarray] = {}
        for index in range(call(lib.dl_layer_num_buffers, pointer, SIZE)):
            name = call(lib.dl_layer_buffer_name, pointer, index, STRING)
            shape = param_shape(pointer, index, lib.dl_layer_buffer_shape)
            address = call(lib.dl_layer_buffer_data, pointer, index, ADDRESS)
            self._buffers[name] = memory_view(address, shape, self.dtype, self._handle)
        self._x_shape: tuple[int, ...] | None = None
        self._y_shape: tuple[int, ...] | None = None
        self.training = True

    def train(self, mode: bool = True) -> Layer:
        """Training mode (the default), as in PyTorch: dropout drops. Returns the layer."""
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Evaluation mode: dropout passes everything through. Returns the layer."""
        return self.train(False)

    def close(self) -> None:
        self._parameters, self._gradients, self._buffers = {}, {}, {}
        super().close()

    @property
    def parameters(self) -> dict[str, np.ndarray]:
        """{name: view of the parameter's memory}."""
        self._check_open()
        return dict(self._parameters)

    @property
    def gradients(self) -> dict[str, np.ndarray]:
        """{name: view of the gradient's memory}, filled by each backward()."""
        self._check_open()
        return dict(self._gradients)

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """{name: view of non-trainable state}: BatchNorm's "running_mean" and
        "running_var" (updated by each forward in training mode), empty for others.
        Writing into a view sets the state, as for parameters."""
        self._check_open()
        return dict(self._buffers)

    def _output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """y's shape for x of `shape`: the last axis becomes the layer's output features."""
        cols = rows_cols(shape)[1]
        out = call(lib.dl_layer_output_features, self._h, cols, SIZE)
        return shape if out == cols else shape[:-1] + (out,)

    def _rows_cols(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(samples, values per sample) of an array of `shape`, as the library takes it."""
        return rows_cols(shape)

    def forward(self, x: ArrayLike) -> np.ndarray:
        """y = layer(x). x: any shape whose last axis holds one sample's features."""
        x = _arrays.values(x, self.dtype)
        y = np.empty(self._output_shape(x.shape), self.dtype)
        rows, cols = self._rows_cols(x.shape)
        call(lib.dl_layer_forward, self._h, x, rows, cols, 1 if self.training else 0, y, y.size)
        self._x_shape, self._y_shape = x.shape, y.shape
        return y

    def __call__(self, x: ArrayLike) -> np.ndarray:
        """``layer(x)`` is ``layer.forward(x)``, as in PyTorch."""
        return self.forward(x)

    def backward(self, dL_dy: ArrayLike) -> np.ndarray:
        """dL/dx, shaped like the last forward's x, from dL/dy (shaped like its y)."""
        if self._y_shape is None or self._x_shape is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward()")
        dy = _arrays.values(dL_dy, self.dtype, "dL_dy")
        if dy.shape != self._y_shape:
            raise ValueError(f"dL_dy must have the shape of the last output, {self._y_shape}, "
                             f"got {dy.shape}")
        dx = np.empty(self._x_shape, self.dtype)
        call(lib.dl_layer_backward, self._h, dy, *self._rows_cols(dy.shape), dx, dx.size)
        return dx

    def __repr__(self) -> str:
        state = " (closed)" if self.closed else ""
        return f"<deeplearning.{type(self).__name__} {self.dtype}{state}>"


class _Tensor:
    """A Linear's parameter or gradient, as a view of the library's memory.

    Reading gives the view, so in-place arithmetic updates the layer. Assigning
    copies values of the same shape into the memory; ``layer._w -= g``, which
    Python runs as ``layer._w = layer._w.__isub__(g)``, assigns the view itself
    back, which changes nothing more.
    """

    def __init__(self, name: str, gradient: bool = False):
        self.name, self.gradient = name, gradient

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute

    def __get__(self, layer: Any, owner: type | None = None) -> Any:
        if layer is None:
            return self
        return (layer.gradients if self.gradient else layer.parameters)[self.name]

    def __set__(self, layer: Any, value: ArrayLike) -> None:
        view = self.__get__(layer)
        if value is view:
            return
        value = np.asarray(value)
        if value.shape != view.shape:
            raise ValueError(f"{self.attribute} has shape {view.shape}, got values of shape "
                             f"{value.shape}")
        np.copyto(view, value)


class Linear(Layer):
    """Fully connected: y = x @ W.T + b.

    x: (N, in) -> y: (N, out); also (in,) -> (out,), and (..., in) -> (..., out).
    ``_w`` (alias ``weight``) is (out, in) and ``_b`` (``bias``) (out,); after
    backward, ``dL_dW`` = dL_dy.T @ x and ``dL_db`` = dL_dy summed over samples.

    `init` names the weight initializer ("he_normal", the default, "he_uniform",
    "xavier_normal", "xavier_uniform", "zeros"); the bias starts at zero. `seed`
    fixes the initial weights; without it one is drawn from ``np.random``.
    """

    _w, weight = _Tensor("weight"), _Tensor("weight")
    _b, bias = _Tensor("bias"), _Tensor("bias")
    dL_dW = _Tensor("weight", gradient=True)
    dL_db = _Tensor("bias", gradient=True)

    def __init__(self, in_features: int, out_features: int, *, dtype: DTypeLike = np.float64,
                 seed: int | None = None,
                 init: str | None = None):
        self.in_features = _positive(in_features, "in_features")
        self.out_features = _positive(out_features, "out_features")
        spec = {"type": "linear", "in_features": self.in_features, "units": self.out_features}
        if init is not None:
            spec["init"] = init
        super().__init__(spec, dtype, _seed(seed))

    def _output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if not shape or shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) needs x of shape "
                             f"(N, {self.in_features}), got {shape}; flatten images first, e.g. "
                             "x.reshape(len(x), -1)")
        return shape[:-1] + (self.out_features,)

    def __repr__(self) -> str:
        return (f"Linear({self.in_features}, {self.out_features}, dtype=np.{self.dtype})"
                + (" (closed)" if self.closed else ""))


def _json_value(value: Any) -> Any:
    """An option as the spec's JSON carries it: NumPy scalars become Python numbers."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


class Dropout(Layer):
    """Zeroes each input with probability `p` while training and scales the rest by
    1 / (1 - p), so evaluation (``eval()``) passes x through unchanged; backward
    applies the same mask. `seed` fixes the masks' generator (else drawn from
    ``np.random``)."""

    def __init__(self, p: float = 0.5, *, dtype: DTypeLike = np.float64, seed: int | None = None):
        self.p = float(p)
        super().__init__({"type": "dropout", "rate": self.p}, dtype, _seed(seed))

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}, dtype=np.{self.dtype})" + (" (closed)" if self.closed else "")


def _pair(value: int | tuple[int, int], name: str) -> list[int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return [operator.index(v) for v in pair]


class _ShapedLayer(Layer):
    """A layer built for samples of one shape, (channels, height, width) for images:
    x is (N, *input_shape) (or (N, features) holding as many values), y is
    (N, *output_shape)."""

    def __init__(self, spec: dict[str, Any], input_shape: tuple[int, ...], dtype: DTypeLike,
                 seed: int | None):
        self.input_shape = tuple(_positive(d, "input_shape dimension") for d in input_shape)
        super().__init__(spec, dtype, _seed(seed), self.input_shape)
        self.output_shape = layer_output_shape(self._h)

    def _rows_cols(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return (shape[0] if shape else 1), math.prod(shape[1:])

    def _output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) < 2 or (shape[1:] != self.input_shape and shape[1:] != (math.prod(self.input_shape),)):
            raise ValueError(f"{type(self).__name__} takes x of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {shape}")
        return (shape[0], *self.output_shape)


class Conv2D(_ShapedLayer):
    """2-D convolution (cross-correlation, as PyTorch's ``nn.Conv2d``) of images of
    ``input_size`` (height, width): x (N, in_channels, H, W) -> y (N, out_channels, OH, OW),
    OH = (H + 2 padding - kernel) // stride + 1. ``_w``/``weight`` is (out, in, kh, kw),
    ``_b``/``bias`` (out,); ``dL_dW``, ``dL_db`` after backward. The library builds a
    layer for one input size, so it is given here (PyTorch infers it at each call)."""

    _w, weight = _Tensor("weight"), _Tensor("weight")
    _b, bias = _Tensor("bias"), _Tensor("bias")
    dL_dW = _Tensor("weight", gradient=True)
    dL_db = _Tensor("bias", gradient=True)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0, bias: bool = True, *,
                 input_size: tuple[int, int], dtype: DTypeLike = np.float64, seed: int | None = None,
                 init: str | None = None):
        spec: dict[str, Any] = {"type": "conv2d", "filters": _positive(out_channels, "out_channels"),
                                "kernel_size": _pair(kernel_size, "kernel_size"), "stride": _pair(stride, "stride"),
                                "padding": _pair(padding, "padding"), "bias": bool(bias)}
        if init is not None:
            spec["init"] = init
        super().__init__(spec, (in_channels, *input_size), dtype, seed)

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return (f"Conv2D({c}, {self.output_shape[0]}, input_size=({h}, {w}), dtype=np.{self.dtype})"
                + (" (closed)" if self.closed else ""))


class _Pool2D(_ShapedLayer):
    kind = ""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, *, input_shape: tuple[int, int, int],
                 dtype: DTypeLike = np.float64):
        spec: dict[str, Any] = {"type": self.kind, "kernel_size": _pair(kernel_size, "kernel_size"),
                                "padding": _pair(padding, "padding")}
        if stride is not None:
            spec["stride"] = _pair(stride, "stride")
        super().__init__(spec, input_shape, dtype, 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(input_shape={self.input_shape}, output_shape={self.output_shape})"


class MaxPool2D(_Pool2D):
    """The largest value of each window (stride defaults to the kernel size):
    x (N, C, H, W) of ``input_shape`` (C, H, W) -> (N, C, OH, OW)."""
    kind = "max_pool2d"


class AvgPool2D(_Pool2D):
    """The mean of each window (zero padding counts), as MaxPool2D otherwise."""
    kind = "avg_pool2d"


class BatchNorm(_ShapedLayer):
    """Batch normalisation over each channel (image input, ``input_shape`` (C, H, W)) or
    each feature (flat input, ``input_shape`` (features,)): training normalises with the
    batch's statistics and updates the running ones (`momentum`, PyTorch's convention:
    ``running = (1 - momentum) running + momentum batch``, the variance unbiased);
    ``eval()`` uses the running ones. ``weight`` and ``bias`` (C,) when `affine`;
    ``running_mean`` and ``running_var`` (C,) are views, as the parameters are."""

    _w, weight = _Tensor("weight"), _Tensor("weight")
    _b, bias = _Tensor("bias"), _Tensor("bias")
    dL_dW = _Tensor("weight", gradient=True)
    dL_db = _Tensor("bias", gradient=True)

    def __init__(self, input_shape: tuple[int, ...], momentum: float = 0.1, eps: float = 1e-5,
                 affine: bool = True, *, dtype: DTypeLike = np.float64):
        spec = {"type": "batch_norm", "momentum": float(momentum), "eps": float(eps), "affine": bool(affine)}
        super().__init__(spec, tuple(input_shape), dtype, 0)

    @property
    def running_mean(self) -> np.ndarray:
        return self.buffers["running_mean"]

    @running_mean.setter
    def running_mean(self, value: ArrayLike) -> None:
        self._set_buffer("running_mean", value)

    @property
    def running_var(self) -> np.ndarray:
        return self.buffers["running_var"]

    @running_var.setter
    def running_var(self, value: ArrayLike) -> None:
        self._set_buffer("running_var", value)

    def _set_buffer(self, name: str, value: ArrayLike) -> None:
        view = self.buffers[name]
        if value is view:
            return
        array = np.asarray(value)
        if array.shape != view.shape:
            raise ValueError(f"{name} has shape {view.shape}, got values of shape {array.shape}")
        if not np.all(np.isfinite(array)) or (name == "running_var" and np.any(array < 0)):
            raise ValueError(f"{name} must hold finite values{' >= 0' if name == 'running_var' else ''}")
        np.copyto(view, array)

    def __repr__(self) -> str:
        return f"BatchNorm(input_shape={self.input_shape}, dtype=np.{self.dtype})"


class Flatten:
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), and back for the gradient: a reshape,
    done by NumPy (no library memory)."""

    def __init__(self) -> None:
        self._x_shape: tuple[int, ...] | None = None
        self.parameters: dict[str, np.ndarray] = {}
        self.gradients: dict[str, np.ndarray] = {}

    def forward(self, x: ArrayLike) -> np.ndarray:
        array = np.asarray(x)
        self._x_shape = array.shape
        return array.reshape(len(array), -1)

    __call__ = forward

    def backward(self, dL_dy: ArrayLike) -> np.ndarray:
        if self._x_shape is None:
            raise RuntimeError("Flatten.backward() called before forward()")
        return np.asarray(dL_dy).reshape(self._x_shape)

    def train(self, mode: bool = True) -> Flatten:
        return self

    def eval(self) -> Flatten:
        return self

    def __repr__(self) -> str:
        return "Flatten()"


class Activation(Layer):
    """An activation, or any layer without parameters whose y has x's shape, by its
    spec type: ``Activation("gelu", approximate="tanh")``.

    Options take the spec's names, which are PyTorch's; the library checks them
    and fills in the defaults (PyTorch's) of those not given. Every activation a
    spec can name works here; the classes below name the common ones and also
    take PyTorch's positional options by position.
    """

    type = ""                               # the spec type, fixed by each subclass
    positional: tuple[str, ...] = ()        # options that may come by position, in order

    def __init__(self, *args: Any, dtype: DTypeLike = np.float64, **options: Any):
        name = type(self).__name__
        if not self.type:                   # this class itself: the type comes first
            if not args or not isinstance(args[0], str):
                raise TypeError('Activation() needs the spec type first, e.g. Activation("gelu")')
            self.type, args = args[0], args[1:]
        if len(args) > len(self.positional):
            raise TypeError(f"{name}() takes {len(self.positional)} option(s) by position "
                            f"{self.positional}, got {len(args)}")
        given = dict(zip(self.positional, args))
        twice = sorted(given.keys() & options.keys())
        if twice:
            raise TypeError(f"{name}() got option {twice[0]!r} both by position and by name")
        given.update(options)
        self.options = {key: _json_value(value) for key, value in given.items()}
        super().__init__({"type": self.type, **self.options}, dtype)

    def __repr__(self) -> str:
        generic = [repr(self.type)] if type(self) is Activation else []
        options = [f"{k}={v!r}" for k, v in self.options.items()]
        return (f"{type(self).__name__}({', '.join(generic + options + [f'dtype=np.{self.dtype}'])})"
                + (" (closed)" if self.closed else ""))


class ReLU(Activation):
    """y = max(0, x); the gradient passes where x > 0 (not at 0)."""
    type = "relu"


class LeakyReLU(Activation):
    """y = x where x > 0, alpha * x elsewhere; alpha in [0, 1]."""
    type, positional = "leaky_relu", ("alpha",)


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x)); dL/dx = dL/dy * y * (1 - y)."""
    type = "sigmoid"


class Tanh(Activation):
    """y = tanh(x); dL/dx = dL/dy * (1 - y^2)."""
    type = "tanh"


class GELU(Activation):
    """y = x * Phi(x), Phi the standard normal CDF (erf); approximate="tanh" for the
    tanh form, as PyTorch's ``nn.GELU``."""
    type, positional = "gelu", ("approximate",)


class SiLU(Activation):
    """y = x * sigmoid(x) (swish)."""
    type = "silu"


class ELU(Activation):
    """y = x where x > 0, alpha * (exp(x) - 1) elsewhere."""
    type, positional = "elu", ("alpha",)


class Softplus(Activation):
    """y = log(1 + exp(beta * x)) / beta, and y = x where beta * x > threshold, as
    PyTorch's ``nn.Softplus``."""
    type, positional = "softplus", ("beta", "threshold")


class Softmax(Activation):
    """Softmax over the last axis (each sample's features). Not before
    CrossEntropyLoss, which applies its own."""
    type = "softmax"


__all__ = ["Activation", "AvgPool2D", "BatchNorm", "Conv2D", "Dropout", "ELU", "Flatten", "GELU", "Layer",
           "MaxPool2D", "LeakyReLU", "Linear", "ReLU", "SiLU", "Sigmoid",
           "Softmax", "Softplus", "Tanh"]
