"""Run by test_distributed.py under mpirun: fit on every rank with deeplearning.distributed
(mpi4py), then rank 0 writes the parameters and the history to argv[1] (.npz); every rank
writes its parameters to argv[1] + ".rankR.npy" so the test can check they are the same bits.
argv[2] "nan-on-rank-1": one train_step per rank, rank 1's with a NaN, which must fail
every rank with a clear message instead of a hang."""

from __future__ import annotations

import sys

import numpy as np

import deeplearning as dl
from deeplearning import distributed

from test_distributed import SPEC, data   # noqa: E402  (the same data and spec as the test)

out = sys.argv[1]
model = dl.Model(SPEC)
rank, size = distributed.use_mpi(model)
x, y = data()
if len(sys.argv) > 2 and sys.argv[2] == "nan-on-rank-1":
    # One step on each rank's own 8 samples; rank 1's hold a NaN. Every rank must fail (rank 0
    # told that rank 1 failed), none may wait forever, and nothing may change.
    mine = slice(8 * rank, 8 * rank + 8)
    local = x[mine].copy()
    if rank == 1:
        local[3, 3] = np.nan
    before = model.get_weights()
    try:
        model.train_step(local, y[mine])
    except dl.DLError as error:
        unchanged = all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        print(f"rank {rank}: {error} (model unchanged: {unchanged})", file=sys.stderr, flush=True)
        # Every rank failed this step, so every rank gets here: wait for all to have
        # printed, or mpirun stops the others as soon as the first exits with an error.
        from mpi4py import MPI
        MPI.COMM_WORLD.Barrier()
        sys.exit(3)
    sys.exit(0)
try:
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
except dl.DLError as error:
    print(f"rank {rank}: {error}", file=sys.stderr, flush=True)
    from mpi4py import MPI
    MPI.COMM_WORLD.Abort(3)
params = np.concatenate([w.ravel() for w in model.get_weights()])
np.save(f"{out}.rank{rank}.npy", params)
if rank == 0:
    np.savez(out, params=params, loss=np.array(history.history["loss"]),
             accuracy=np.array(history.history["accuracy"]))
