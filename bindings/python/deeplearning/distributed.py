"""Data-parallel training: one model on several processes ("ranks"), kept identical.

Every rank builds the same model (same spec and seed, or the same checkpoint) and hands
it a reducer: a function that sums a NumPy buffer element-wise over all ranks, in place.
Each training step then packs the gradients (and batch norm's running statistics, and a
few counts) into one buffer, the reducer sums it, and every rank applies the same update.
With mpi4py::

    from deeplearning import distributed
    model = dl.Model.from_spec("specs/mnist_mlp.json")
    distributed.use_mpi(model)                  # MPI.COMM_WORLD; or pass a communicator
    history = model.fit(train, epochs=5, batch_size=64)   # 64 samples per rank and step
    if distributed.rank(model) == 0:
        model.save("mnist.h5")

run as ``mpirun -np 4 python train.py``. ``fit`` then behaves like ``mpirun dl train``:
each step takes batch_size samples per rank (batch_size * ranks in all, the step one
process takes with that batch), from one shuffle that every rank draws from the model's
seed; losses and accuracies are over all ranks; only rank 0 prints. Arrays given to fit
are trained as a Dataset (the library shards it). Evaluation (``evaluate``,
``evaluate_dataset``, fit's metrics) is split over the ranks and reduced: every rank must
make these calls, in the same order, with the same data. docs/distributed.md has the
semantics (batch norm, dropout, failures, checkpoints) and the cost model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._lib import NO_REDUCER, SIZE, call, lib, reduce_callback

if TYPE_CHECKING:
    from .model import Model

Reducer = Callable[[np.ndarray], None]


def set_gradient_reducer(model: Model, reduce: Reducer | None, rank: int = 0, world_size: int = 1) -> None:
    """Makes `model` rank `rank` of `world_size` with `reduce` (sums its argument over the
    ranks in place), or, with None, a single process again."""
    if reduce is None:
        call(lib.dl_model_set_gradient_reducer, model._h, 0, 0, NO_REDUCER, None)
        model._reducer = None
        return
    callback = reduce_callback(reduce)
    call(lib.dl_model_set_gradient_reducer, model._h, int(rank), int(world_size), callback, None)
    model._reducer = (callback, int(rank), int(world_size))   # the callback must outlive its use


def rank(model: Model) -> int:
    """This process's rank for `model` (0 without a reducer)."""
    return int(model._reducer[1]) if model._reducer else 0


def world_size(model: Model) -> int:
    """Number of ranks `model` trains with (1 without a reducer)."""
    return int(model._reducer[2]) if model._reducer else 1


def reduce_count(model: Model) -> int:
    """Elements each training step reduces (0 without a reducer)."""
    return int(call(lib.dl_model_reduce_count, model._h, SIZE))


def mpi_reducer(comm: Any = None) -> Reducer:
    """A reducer summing over an mpi4py communicator (MPI.COMM_WORLD by default) with
    ``Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)``."""
    from mpi4py import MPI  # type: ignore[import-not-found, unused-ignore]  # optional: only for MPI runs
    communicator = MPI.COMM_WORLD if comm is None else comm

    def reduce(buffer: np.ndarray) -> None:
        communicator.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)

    return reduce


def use_mpi(model: Model, comm: Any = None) -> tuple[int, int]:
    """Sets `model`'s reducer to :func:`mpi_reducer` on `comm`; returns (rank, size)."""
    from mpi4py import MPI  # type: ignore[import-not-found, unused-ignore]
    communicator = MPI.COMM_WORLD if comm is None else comm
    r, n = communicator.Get_rank(), communicator.Get_size()
    set_gradient_reducer(model, mpi_reducer(communicator), r, n)
    return r, n
