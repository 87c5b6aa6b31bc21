"""Training one ensemble member, seeded, checkpointed every epoch, resumable.

Recipes follow the original code (the original code, appendix section 3,
book/appendix_original_code.ipynb): each member is
trained separately from random initialisation with Adam (lr 1e-3, the TF1
epsilon 1e-8), batch 128, softmax cross-entropy on the logits, no
augmentation; CIFAR-10 adds the original's label smoothing, which *clips* the
one-hot target to [0.1/9, 0.9] (not Keras' ``label_smoothing``, which gives
0.91 / 0.01).  The original's epoch counts (15 for MNIST, 6 for CIFAR) were
argparse defaults, not what the released checkpoints used; our defaults are the
``recipe`` of each dataset in :mod:`empir_lib.core.settings`, and every zoo entry records the epochs it really ran.

Determinism: the seed fixes the initial weights (``keras.utils.set_random_seed``)
and the order of every epoch (``RandomState([seed, epoch])``); TensorFlow's op
determinism is switched on.  A checkpoint holds the weights, the optimiser
state, the epoch and the history, so a run killed mid-epoch restarts that epoch
from the same state and ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..core import defences, distribute, settings
from ..core.errors import FULL_PRECISION, EmpirError, check_bits, check_choice, check_finite_number, check_positive_int
from ..core.files import atomic_write
from . import data as data_mod
from . import defence_losses, imagenet, models

AUGMENT_PAD = 4


def augment_batch(xb: np.ndarray, rng: np.random.RandomState, pad: int = AUGMENT_PAD) -> np.ndarray:
    """Random crop of the image reflect-padded by ``pad`` pixels, and a random left-right flip.

    One draw per image from ``rng``, so an epoch's augmentation is fixed by
    (seed, epoch) and a resumed epoch sees the same crops.
    """
    n, h, w = xb.shape[:3]
    padded = np.pad(xb, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    dy, dx = rng.randint(0, 2 * pad + 1, n), rng.randint(0, 2 * pad + 1, n)
    flip = rng.rand(n) < 0.5
    out = np.empty_like(xb)
    for i in range(n):
        crop = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop[:, ::-1] if flip[i] else crop
    return out


def smoothed_targets(y: tf.Tensor, num_classes: int, smoothing: float) -> tf.Tensor:
    """The original's label smoothing: one-hot clipped to [s/(K-1), 1-s]."""
    onehot = tf.one_hot(y, num_classes)
    if smoothing == 0:
        return onehot
    return tf.clip_by_value(onehot, smoothing / (num_classes - 1), 1.0 - smoothing)


def seed_everything(seed: int) -> None:
    """Seed Keras, NumPy and Python, and switch TensorFlow's op determinism on."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def save_checkpoint(path: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer, state: dict) -> None:
    """Weights, optimiser state and ``state`` (epoch, history) in one ``.npz``, written atomically."""
    arrays = {f"w{i}": v.numpy() for i, v in enumerate(model.weights)}
    arrays.update({f"o{i}": v.numpy() for i, v in enumerate(optimizer.variables)})
    arrays["state"] = np.array(json.dumps(state))
    atomic_write(path, lambda p: np.savez(open(p, "wb"), **arrays))


def load_checkpoint(path: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> dict:
    """Restore what :func:`save_checkpoint` wrote into ``model`` and ``optimizer``; return the state."""
    with np.load(path, allow_pickle=False) as f:
        for i, v in enumerate(model.weights):
            v.assign(f[f"w{i}"])
        for i, v in enumerate(optimizer.variables):
            v.assign(f[f"o{i}"])
        return json.loads(str(f["state"]))


def save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """``model.save`` to a temporary ``.keras`` file, then rename (never a half file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def claim_run_dir(run_dir: Path, config: dict) -> tuple[Path, Path]:
    """Create ``run_dir`` and record ``config`` there, refusing a folder that holds another configuration.

    Only the epochs may differ (a run can be extended).  Returns the paths of
    ``config.json`` and ``checkpoint.npz``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path, ckpt_path = run_dir / "config.json", run_dir / "checkpoint.npz"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if {k: v for k, v in old.items() if k != "epochs"} != {k: v for k, v in config.items() if k != "epochs"}:
            raise EmpirError(f"{run_dir} holds a run with a different configuration ({old}); "
                             "pass another run_dir or delete that folder.")
    atomic_write(cfg_path, lambda p: Path(p).write_text(json.dumps(config, indent=1)))
    return cfg_path, ckpt_path


def training_batches(dataset: str, data_dir: str | os.PathLike | None, n_train: int | None, batch_size: int,
                     seed: int, augment: str | None) -> tuple:
    """``(epoch -> iterator of (x, y) batches, images per epoch)`` for a dataset.

    MNIST, CIFAR-10 and Tiny ImageNet sit in memory: the order of an epoch is
    ``RandomState([seed, epoch])`` and the augmentation ``RandomState([seed,
    epoch, 1])``.  Full ImageNet streams from its folder layout
    (:func:`empir_lib.nets.imagenet.imagenet_dataset`), shuffled and cropped by seeds
    derived from (seed, epoch), so a rerun of an epoch sees the same batches.
    """
    if dataset == "imagenet":
        root = imagenet.imagenet_root(data_dir)
        n_images = len(imagenet.imagenet_files(root, "train")[0])
        n_images = min(n_images, n_train or n_images)
        size = settings.IMAGENET.input_shape[0]

        def stream(epoch):
            ds = imagenet.imagenet_dataset(root, "train", size, batch_size, shuffle=True, seed=seed * 1000 + epoch,
                                           augment=augment == "crop-flip", n=n_train)
            return ((xb.numpy(), yb.numpy()) for xb, yb in ds)

        return stream, n_images
    x, y = data_mod.load(dataset, "train", data_dir, n_train)

    def in_memory(epoch):
        order = np.random.RandomState([seed, epoch]).permutation(len(x))
        aug_rng = np.random.RandomState([seed, epoch, 1])
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            yield (augment_batch(x[idx], aug_rng) if augment == "crop-flip" else x[idx]), y[idx]

    return in_memory, len(x)


def train_member(dataset: str, wbits: models.Bits = FULL_PRECISION, abits: models.Bits = FULL_PRECISION,
                 seed: int = 1, epochs: int | None = None, run_dir: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, n_train: int | None = None, batch_size: int | None = None,
                 lr: float | None = None, progress: bool = True, arch_kwargs: dict | None = None,
                 stop_after_batches: int | None = None, defence: str = "none", defence_params: dict | None = None,
                 stage: str = "student") -> dict:
    """Train one member and return its summary (run directory, model path, history, time).

    ``run_dir`` (default ``runs/<member id>``) holds ``config.json``,
    ``checkpoint.npz`` (rewritten atomically after every epoch) and, at the
    end, ``model.keras``.  Calling again with the same arguments resumes;
    with different arguments it refuses rather than mixing two runs.
    ``stop_after_batches`` is for tests: it stops mid-epoch as a kill would.

    ``defence`` (with ``defence_params``, see :mod:`empir_lib.core.defences`) swaps
    the loss for a defence's (Table 2's other rows).  Distillation first trains
    its teacher in ``<run_dir>/teacher`` (``stage='teacher'``; resumable the
    same way), then the student, which is the member.
    """
    check_choice(dataset, tuple(settings.RECIPES), "dataset")
    recipe = dict(settings.RECIPES[dataset])
    wbits = [check_bits(b, "wbits") for b in wbits] if isinstance(wbits, (list, tuple)) else check_bits(wbits, "wbits")
    abits = [check_bits(b, "abits") for b in abits] if isinstance(abits, (list, tuple)) else check_bits(abits, "abits")
    seed = check_positive_int(seed, "seed", 0)
    epochs = check_positive_int(epochs if epochs is not None else recipe["epochs"], "epochs")
    batch_size = check_positive_int(batch_size if batch_size is not None else recipe["batch_size"], "batch_size")
    lr = check_finite_number(lr if lr is not None else recipe["lr"], "lr", 1e-8, 1.0)
    if n_train is not None:
        n_train = check_positive_int(n_train, "n_train")
    defence_params = defences.check(defence, defence_params)
    check_choice(stage, ("teacher", "student"), "distillation stage")
    arch = settings.ARCH_FOR_DATASET[dataset]
    arch_kwargs = recipe.get("arch_kwargs", {}) if arch_kwargs is None else arch_kwargs
    config = {"dataset": dataset, "arch": arch, "arch_kwargs": arch_kwargs, "wbits": wbits,
              "abits": abits, "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "label_smoothing": recipe["label_smoothing"], "n_train": n_train}
    # Only recipes that use them carry these keys, so older run folders still resume.
    for key in ("augment", "lr_schedule"):
        if key in recipe:
            config[key] = recipe[key]
    if defence != "none":
        config.update(defence=defence, defence_params=defence_params)
        if stage == "teacher":
            config["stage"] = stage
    tag = defences.tag(defence, defence_params)
    run_dir = Path(run_dir or Path("runs") / settings.member_id(dataset, wbits, abits, seed, tag))
    _, ckpt_path = claim_run_dir(run_dir, config)
    model_path = run_dir / "model.keras"

    teacher, teacher_time = None, 0.0
    if defences.get(defence).teacher and stage == "student":
        teacher = train_member(dataset, wbits, abits, seed, epochs, run_dir / "teacher", data_dir, n_train, batch_size,
                               lr, progress, arch_kwargs, stop_after_batches, defence, defence_params, "teacher")
        if teacher["interrupted"]:
            return teacher
        teacher_time = teacher["train_time_s"]
        teacher = teacher["model"]

    batches, n_images = training_batches(dataset, data_dir, n_train, batch_size, seed, config.get("augment"))
    num_classes = settings.get(dataset).num_classes

    seed_everything(seed)
    strat = distribute.strategy()
    with strat.scope():  # variables live on every replica (a no-op on one device)
        model = models.build(arch, wbits, abits, **arch_kwargs)
        steps_per_epoch = -(-n_images // batch_size)
        schedule = (keras.optimizers.schedules.CosineDecay(lr, epochs * steps_per_epoch)
                    if config.get("lr_schedule") == "cosine" else lr)
        optimizer = keras.optimizers.Adam(learning_rate=schedule, epsilon=1e-8)
        optimizer.build(model.trainable_variables)
    state = {"epoch": 0, "history": [], "train_time_s": 0.0}
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, model, optimizer)
    smoothing = recipe["label_smoothing"]
    objective = defence_losses.loss_fn(defence, defence_params, model, teacher, stage)

    def replica_step(xb, yb, n):
        with tf.GradientTape() as tape:
            per_image, logits = objective(xb, smoothed_targets(yb, num_classes, smoothing))
            # Divided by the *whole* batch: the replicas' gradients are summed.
            loss = tf.reduce_sum(per_image) / tf.cast(n, per_image.dtype)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == yb, tf.float32))

    @tf.function
    def step(xb, yb):
        loss, correct = strat.run(replica_step, args=(*distribute.shard(strat, xb, yb), tf.shape(xb)[0]))
        return strat.reduce("SUM", loss, None), strat.reduce("SUM", correct, None)

    # Only when training: tqdm.auto warns in a notebook without ipywidgets.
    from tqdm.auto import tqdm  # noqa: PLC0415

    batches_done = 0
    for epoch in range(state["epoch"], epochs):
        t0, loss_sum, correct, seen = time.perf_counter(), 0.0, 0.0, 0
        bar = tqdm(batches(epoch), total=steps_per_epoch, desc=f"{run_dir.name} epoch {epoch + 1}/{epochs}",
                   unit="batch", disable=not progress, mininterval=1)
        for xb, yb in bar:
            loss, c = step(tf.constant(xb), tf.constant(yb))
            loss_sum += float(loss) * len(yb)
            correct += float(c)
            seen += len(yb)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
            batches_done += 1
            if stop_after_batches is not None and batches_done >= stop_after_batches:
                return {"run_dir": str(run_dir), "interrupted": True, "epoch": epoch}
        bar.close()
        state["train_time_s"] += time.perf_counter() - t0
        state["history"].append({"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                                 "seconds": time.perf_counter() - t0})
        state["epoch"] = epoch + 1
        save_checkpoint(ckpt_path, model, optimizer, state)
    save_model(model, model_path)
    return {"run_dir": str(run_dir), "model_path": str(model_path), "config": config,
            # A distilled member's time includes its teacher's (also given apart).
            "history": state["history"], "train_time_s": state["train_time_s"] + teacher_time,
            **({"teacher_train_time_s": teacher_time} if teacher is not None else {}), "interrupted": False,
            "model": model, "distribute": distribute.describe(strat)}
