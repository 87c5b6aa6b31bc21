"""Which ``tf.distribute`` strategy training and evaluation run under, and batch sharding.

On this 2-core CPU there is one device, and the default strategy (a no-op)
runs everything.  A reader with several GPUs gets ``MirroredStrategy``
automatically (one replica per GPU, each batch split between them, gradients
summed); a reader with several machines sets ``TF_CONFIG`` and
``EMPIR_STRATEGY=multi-worker``.  Nothing here schedules work itself: the
strategies are TensorFlow's own.

``EMPIR_STRATEGY`` (or the ``name`` argument) picks one of:

* ``auto`` (default): mirrored over the local GPUs when there are two or
  more, otherwise the default strategy;
* ``default``: one device, whatever TensorFlow places on;
* ``mirrored``: every local GPU (or every logical CPU device when there is none);
* ``multi-worker``: ``MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``.

Batch normalisation statistics stay per replica (as in the original's
single-GPU training), so each replica's share of a batch should stay large.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from .errors import check_choice

NAMES = ("auto", "default", "mirrored", "multi-worker")


def strategy(name: str | None = None) -> tf.distribute.Strategy:
    """The strategy named by ``name`` or ``$EMPIR_STRATEGY`` (default ``auto``)."""
    name = check_choice(name or os.environ.get("EMPIR_STRATEGY") or "auto", NAMES, "EMPIR_STRATEGY")
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if name == "mirrored":
        # Every local GPU; without GPUs, every logical CPU device (one, unless a
        # test or a reader split the CPU with tf.config.set_logical_device_configuration).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def describe(strat: tf.distribute.Strategy) -> dict:
    """What a results or zoo entry records about the strategy."""
    return {"strategy": type(strat).__name__, "replicas": int(strat.num_replicas_in_sync)}


def shard(strat: tf.distribute.Strategy, *tensors: tf.Tensor) -> tuple:
    """Split each tensor along its first axis, one contiguous shard per replica (inside ``tf.function``).

    With one replica the tensors pass through unchanged.  Shards may differ
    in size by one when the batch does not divide evenly.
    """
    k = strat.num_replicas_in_sync
    if k == 1:
        return tensors

    def split(t):
        n = tf.shape(t)[0]
        bounds = [(n * i) // k for i in range(k + 1)]
        return strat.experimental_distribute_values_from_function(
            lambda ctx: t[bounds[ctx.replica_id_in_sync_group]:bounds[ctx.replica_id_in_sync_group + 1]])

    return tuple(split(t) for t in tensors)


def gather(strat: tf.distribute.Strategy, per_replica: object) -> np.ndarray:
    """Concatenate per-replica results in replica order (the inverse of :func:`shard`)."""
    parts = strat.experimental_local_results(per_replica)
    return np.concatenate([np.asarray(p) for p in parts])


def sharded(strat: tf.distribute.Strategy, fn: Callable, n_split: int) -> Callable[..., np.ndarray]:
    """``fn`` as a traced function of numpy-convertible arguments that returns numpy.

    The first ``n_split`` arguments are split over the replicas (:func:`shard`),
    the rest go to every replica whole, and the replicas' outputs are
    concatenated back in order.  On one replica this is just ``tf.function(fn)``.
    """
    traced = tf.function(fn, reduce_retracing=True)
    if strat.num_replicas_in_sync == 1:
        return lambda *args: traced(*args).numpy()

    @tf.function(reduce_retracing=True)
    def run(*args):
        return strat.run(traced, args=(*shard(strat, *args[:n_split]), *args[n_split:]))

    return lambda *args: gather(strat, run(*args))
