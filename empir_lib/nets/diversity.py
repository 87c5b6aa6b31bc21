"""Training ensemble members jointly with a diversity objective (Farkya et al. 2023, in our own named form).

Farkya et al. (2023, abstract) train quantised members together with an
objective that "captures diversity and accuracy via mutual information
between ensemble members".  Only their abstract is available to us, so the
objective here is our own, with every choice named:

    L = (1/K) sum_k CE(z_k, t) + lambda * (2 / (K (K - 1))) sum_{i<j} CKA(R_i, R_j)

* ``CE`` is the softmax cross-entropy of member k's logits ``z_k`` at the
  dataset's training targets ``t`` (the original's clipped label smoothing,
  :func:`empir_lib.nets.train.smoothed_targets`);
* the dependence between two members is the **linear CKA** of their
  representations over the batch (Kornblith et al. 2019, "Similarity of
  neural network representations revisited", section 3: centred kernel
  alignment, HSIC normalised; HSIC from Gretton et al. 2005):
  ``CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with ``Xc``,
  ``Yc`` the batch-centred (batch, features) matrices.  It is 1 for members
  whose representations are equal up to rotation and scale, near 0 for
  independent ones;
* the representation (:data:`REPRESENTATIONS`) is by default ``'nonmax'``:
  each member's predictive distribution over the classes *other than the
  label*, renormalised.  Diversity there costs no accuracy, which is
  Pang et al.'s (2019, "Improving adversarial robustness via promoting
  ensemble diversity", section 3) argument for their ADP regulariser;
  ``'logits'`` uses the whole logit vector (which the cross-entropy pushes
  towards the label, so the two terms pull against each other);
* ``lambda = 0.5`` by default (:data:`DIVERSITY_WEIGHT`), a stated choice,
  not tuned.

Members are stochastic-quantised (:func:`empir_lib.nets.stochastic.build`) and are
trained in one optimiser (Adam, the dataset's recipe) on the same batches.
:func:`train_joint` is seeded, checkpointed after every epoch and resumable
as :func:`empir_lib.nets.train.train_member` is, and reuses its helpers (batches,
targets, checkpoints, saving).  The stochastic layers' draws are reseeded
from (seed, epoch, member) at the start of every epoch, so a resumed run
draws the same noise as an uninterrupted one.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from ..core import provenance, settings
from ..core.errors import EmpirError, check_choice, check_finite_number, check_positive_int
from ..core.files import atomic_write, sha256
from . import data as data_mod
from . import metrics, quantize, stochastic, train, zoo

REPRESENTATIONS = ("nonmax", "logits")
DIVERSITY_WEIGHT = 0.5
# Three a2w2 members: one precision, so any diversity comes from the objective and the noise.
DEFAULT_MEMBERS = ((2, 2), (2, 2), (2, 2))


def joint_tag(index: int, lam: float) -> str:
    """The zoo tag of member ``index`` of a joint run at weight ``lam``: ``joint_tag(0, 0.5)`` -> 'joint0-l0.5'."""
    return f"joint{check_positive_int(index, 'member index', 0)}-l{lam:g}"


def linear_cka(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Linear CKA of two (batch, features) representations (Kornblith et al. 2019, section 3): in [0, 1]."""
    x = x - tf.reduce_mean(x, 0, keepdims=True)
    y = y - tf.reduce_mean(y, 0, keepdims=True)
    cross = tf.reduce_sum(tf.square(tf.matmul(y, x, transpose_a=True)))
    norm = tf.norm(tf.matmul(x, x, transpose_a=True)) * tf.norm(tf.matmul(y, y, transpose_a=True))
    return cross / (norm + 1e-12)


def nonmax_distribution(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Each image's predictive distribution over the classes other than its label, renormalised (Pang et al. 2019)."""
    mask = 1.0 - tf.one_hot(y, tf.shape(logits)[-1], dtype=logits.dtype)
    p = tf.nn.softmax(logits - 1e9 * (1.0 - mask), -1)
    return p * mask


def representations(logits: tf.Tensor, y: tf.Tensor, representation: str = "nonmax") -> tf.Tensor:
    """The representations the penalty compares: (members, batch, classes) from stacked member logits."""
    check_choice(representation, REPRESENTATIONS, "representation")
    if representation == "logits":
        return logits
    return tf.stack([nonmax_distribution(logits[k], y) for k in range(logits.shape[0])])


def dependence(reps: tf.Tensor | ArrayLike) -> tf.Tensor:
    """The penalty: the mean linear CKA over every pair of members, ``reps`` (members, batch, features)."""
    reps = tf.convert_to_tensor(reps, tf.float32)
    k = int(reps.shape[0])
    if k < 2:
        raise EmpirError(f"a dependence penalty needs at least two members; got {k}.")
    pairs = [linear_cka(reps[i], reps[j]) for i in range(k) for j in range(i + 1, k)]
    return tf.add_n(pairs) / float(len(pairs))


def joint_loss(logits: tf.Tensor, y: tf.Tensor, targets: tf.Tensor, lam: float = DIVERSITY_WEIGHT,
               representation: str = "nonmax") -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(loss, mean cross-entropy, penalty)``: the module docstring's L, logits (members, batch, classes)."""
    ce = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=tf.broadcast_to(targets, tf.shape(logits)),
                                                                logits=logits))
    penalty = dependence(representations(logits, y, representation))
    return ce + lam * penalty, ce, penalty


def train_joint(dataset: str = "cifar10", members: tuple = DEFAULT_MEMBERS, seed: int = 1,
                epochs: int | None = None, run_dir: str | os.PathLike | None = None,
                data_dir: str | os.PathLike | None = None, n_train: int | None = None,
                batch_size: int | None = None, lr: float | None = None, lam: float = DIVERSITY_WEIGHT,
                representation: str = "nonmax", relaxation: str = "ste", progress: bool = True,
                stop_after_batches: int | None = None) -> dict:
    """Train ``members`` ((wbits, abits) each) jointly as stochastic-quantised networks (module docstring).

    ``run_dir`` (default ``runs/<dataset>-joint-<tags>-s<seed>``) holds
    ``config.json``, ``checkpoint.npz`` (after every epoch) and, at the end,
    ``member<k>.keras``.  Calling again with the same arguments resumes; other
    arguments are refused.  ``history`` records per epoch the loss, the mean
    cross-entropy, the penalty, each member's training accuracy, the seconds
    and the images per second.  ``stop_after_batches`` is for tests.
    """
    recipe = dict(settings.RECIPES[check_choice(dataset, tuple(settings.RECIPES), "dataset")])
    specs = [(int(quantize.check_stochastic_bits(w, "wbits")), int(quantize.check_stochastic_bits(a, "abits")))
             for w, a in members]
    if len(specs) < 2:
        raise EmpirError(f"joint training needs at least two members; got {len(specs)}.")
    seed = check_positive_int(seed, "seed", 0)
    epochs = check_positive_int(epochs if epochs is not None else recipe["epochs"], "epochs")
    batch_size = check_positive_int(batch_size if batch_size is not None else recipe["batch_size"], "batch_size")
    lr = check_finite_number(lr if lr is not None else recipe["lr"], "lr", 1e-8, 1.0)
    lam = check_finite_number(lam, "lam", 0.0, 1e3)
    check_choice(representation, REPRESENTATIONS, "representation")
    check_choice(relaxation, quantize.RELAXATIONS, "relaxation")
    if n_train is not None:
        n_train = check_positive_int(n_train, "n_train")
    arch = settings.ARCH_FOR_DATASET[dataset]
    arch_kwargs = recipe.get("arch_kwargs", {})
    config = {"dataset": dataset, "arch": arch, "arch_kwargs": arch_kwargs, "members": [list(s) for s in specs],
              "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr, "lam": lam,
              "representation": representation, "relaxation": relaxation, "inference": "sample",
              "label_smoothing": recipe["label_smoothing"], "n_train": n_train, "augment": recipe.get("augment")}
    tags = "-".join(settings.precision_tag(w, a) for w, a in specs)
    run_dir = Path(run_dir or Path("runs") / f"{dataset}-joint-{tags}-s{seed}")
    _, ckpt_path = train.claim_run_dir(run_dir, config)

    batches, n_images = train.training_batches(dataset, data_dir, n_train, batch_size, seed, config["augment"])
    num_classes = settings.get(dataset).num_classes
    train.seed_everything(seed)
    nets = [stochastic.build(arch, w, a, relaxation=relaxation, inference="sample", seed=None, **arch_kwargs)
            for w, a in specs]
    variables = [v for m in nets for v in m.trainable_variables]
    optimizer = keras.optimizers.Adam(learning_rate=lr, epsilon=1e-8)
    optimizer.build(variables)
    # The checkpoint helpers read ``.weights``: all members' weights, in member order.
    joint = SimpleNamespace(weights=[v for m in nets for v in m.weights])
    state = {"epoch": 0, "history": [], "train_time_s": 0.0}
    if ckpt_path.exists():
        state = train.load_checkpoint(ckpt_path, joint, optimizer)
    smoothing = recipe["label_smoothing"]

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            logits = tf.stack([m(xb, training=True) for m in nets])
            loss, ce, penalty = joint_loss(logits, yb, train.smoothed_targets(yb, num_classes, smoothing), lam,
                                           representation)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == yb[None], tf.float32), 1)
        return loss, ce, penalty, correct

    from tqdm.auto import tqdm  # noqa: PLC0415  (only when training: tqdm.auto warns in a notebook)

    steps_per_epoch = -(-n_images // batch_size)
    batches_done = 0
    for epoch in range(state["epoch"], epochs):
        for k, m in enumerate(nets):  # the epoch's draws depend on (seed, epoch, member) only
            stochastic.reseed(m, (seed * 1000 + epoch) * 100 + k)
        t0, sums, correct, seen = time.perf_counter(), np.zeros(3), np.zeros(len(nets)), 0
        bar = tqdm(batches(epoch), total=steps_per_epoch, desc=f"{run_dir.name} epoch {epoch + 1}/{epochs}",
                   unit="batch", disable=not progress, mininterval=1)
        for xb, yb in bar:
            loss, ce, penalty, c = step(tf.constant(xb), tf.constant(yb.astype(np.int32)))
            sums += np.array([float(loss), float(ce), float(penalty)]) * len(yb)
            correct += c.numpy()
            seen += len(yb)
            bar.set_postfix(loss=f"{sums[0] / seen:.4f}", penalty=f"{sums[2] / seen:.3f}", refresh=False)
            batches_done += 1
            if stop_after_batches is not None and batches_done >= stop_after_batches:
                return {"run_dir": str(run_dir), "interrupted": True, "epoch": epoch}
        bar.close()
        secs = time.perf_counter() - t0
        state["train_time_s"] += secs
        state["history"].append({"epoch": epoch + 1, "loss": sums[0] / seen, "cross_entropy": sums[1] / seen,
                                 "penalty": sums[2] / seen, "train_accuracy": (correct / seen).tolist(),
                                 "seconds": secs, "images_per_s": seen / secs})
        state["epoch"] = epoch + 1
        train.save_checkpoint(ckpt_path, joint, optimizer, state)
    paths = []
    for k, m in enumerate(nets):
        paths.append(str(run_dir / f"member{k}.keras"))
        train.save_model(m, paths[-1])
    return {"run_dir": str(run_dir), "model_paths": paths, "config": config, "history": state["history"],
            "train_time_s": state["train_time_s"], "interrupted": False, "models": nets}


def add_to_zoo(result: dict, data_dir: str | os.PathLike | None = None, zoo_dir: str | os.PathLike | None = None,
               command: str | None = None) -> dict[str, dict]:
    """Register every member of a finished :func:`train_joint` run in the zoo, one entry each.

    Member k gets the id ``<dataset>-<precision>-s<seed>-joint<k>-l<lambda>``
    (:func:`joint_tag`).  The members are stochastic, so two accuracies on the
    full test set are recorded: ``test_accuracy`` as deployed (``'sample'``, a
    fresh draw per pass, reseeded from the run's seed so that the number
    repeats) and ``test_accuracy_nearest`` (deterministic rounding).  The
    training time is the whole joint run's, the same in every entry.
    """
    if result.get("interrupted"):
        raise EmpirError("this joint run was interrupted; run the same command again to finish it before "
                         "adding it to the zoo.")
    cfg = result["config"]
    if cfg["dataset"] in settings.FLOAT16_DATASETS:
        raise EmpirError(f"{cfg['dataset']} members are stored as float16 weights, which keep no stochastic "
                         "rounding; the zoo takes joint runs of mnist and cifar10.")
    zoo_path = Path(zoo_dir or zoo.ZOO_DIR)
    x, y = data_mod.load(cfg["dataset"], "test", data_dir)
    prov = provenance.record(command)
    n_train = cfg["n_train"] or len(data_mod.load(cfg["dataset"], "train", data_dir)[1])
    entries = {}
    for k, ((wbits, abits), src) in enumerate(zip(cfg["members"], result["model_paths"])):
        mid = settings.member_id(cfg["dataset"], wbits, abits, cfg["seed"], joint_tag(k, cfg["lam"]))
        dest = zoo_path / f"{mid}.keras"
        t0 = time.perf_counter()
        atomic_write(dest, lambda p, src=src: shutil.copyfile(src, p))
        model = keras.saving.load_model(dest, compile=False, safe_mode=True)
        stochastic.reseed(model, cfg["seed"])
        acc = metrics.accuracy(model, x, y)
        nearest = metrics.accuracy(stochastic.with_inference(model, "nearest"), x, y)
        entries[mid] = {"dataset": cfg["dataset"], "arch": cfg["arch"], "arch_kwargs": cfg["arch_kwargs"],
                        "wbits": wbits, "abits": abits, "seed": cfg["seed"], "epochs": cfg["epochs"],
                        "batch_size": cfg["batch_size"], "lr": cfg["lr"], "label_smoothing": cfg["label_smoothing"],
                        "joint": {"index": k, "members": cfg["members"], "lam": cfg["lam"],
                                  "representation": cfg["representation"], "relaxation": cfg["relaxation"],
                                  "inference": cfg["inference"]},
                        "n_train": n_train, "train_time_s": round(result["train_time_s"], 1),
                        "history": result["history"], "test_accuracy": acc, "test_accuracy_nearest": nearest,
                        "n_test": int(len(y)), "eval_time_s": round(time.perf_counter() - t0, 1),
                        "storage": "keras", "file": dest.name, "sha256": sha256(dest),
                        "size_bytes": dest.stat().st_size, **prov}
    zoo.register(entries, zoo_path)
    return entries


def joint_ids(dataset: str = "cifar10", members: tuple = DEFAULT_MEMBERS, seed: int = 1,
              lam: float = DIVERSITY_WEIGHT) -> list[str]:
    """The zoo ids of a joint run's members (``empir joint --zoo``; :func:`add_to_zoo`)."""
    return [settings.member_id(dataset, w, a, seed, joint_tag(k, lam)) for k, (w, a) in enumerate(members)]
