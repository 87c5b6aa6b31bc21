"""Building the zoo: training every member a dataset's settings list that the zoo lacks.

Kept apart from :mod:`empir_lib.nets.zoo` (loading, the manifest, hash checks)
so that loading a member, and with it every attack, never imports the
training code.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..core import defences, settings
from ..core.errors import EmpirError, check_choice
from . import models, train
from .zoo import members, register, store


def train_command(dataset: str, wbits: models.Bits, abits: models.Bits, seed: int, epochs: int | None = None,
                  defence: str = "none", params: dict | None = None) -> str:
    """The ``empir train`` command line that trains (and registers) one member."""
    cmd = f"empir train --dataset {dataset} --wbits {wbits} --abits {abits} --seed {seed}"
    if epochs:
        cmd += f" --epochs {epochs}"
    if defence != "none":
        def value(v: object) -> str:
            return f"{v:g}" if isinstance(v, (int, float)) else str(v)
        cmd += f" --defence {defence}" + "".join(f" --{k.replace('_', '-')} {value(v)}"
                                                 for k, v in (params or {}).items() if v is not None)
    return cmd + " --zoo"


def build_zoo(dataset: str, epochs: int | None = None, data_dir: str | os.PathLike | None = None,
              progress: bool = True, runs_dir: str | os.PathLike = "runs", only: list[str] | None = None,
              defended: bool = False, seed_sets: bool = False) -> list[str]:
    """Train and register every ``settings.ZOO_MEMBERS`` member of ``dataset`` not yet in the zoo.

    ``defended=True`` trains the members of Table 2's other defences instead
    (``settings.DATASETS[name].defence_rows``), at the recipe's epochs;
    ``seed_sets=True`` the members of the seed study's independent seed sets
    (``settings.DATASETS[name].seed_sets``), each at its own epochs.
    """
    done = []
    for todo in to_build(dataset, epochs, defended, only, seed_sets):
        mid, entry = train_and_store(todo, data_dir, runs_dir, progress)
        register({mid: entry})
        print(build_line(mid, entry), flush=True)
        done.append(mid)
    return done


def to_build(dataset: str, epochs: int | None = None, defended: bool = False,
             only: list[str] | None = None, seed_sets: bool = False) -> list[dict]:
    """The members :func:`build_zoo` trains, in order: id, precision, seed, defence, epochs and command each."""
    check_choice(dataset, tuple(settings.ZOO_MEMBERS), "dataset")
    if defended and seed_sets:
        raise EmpirError("build the defended members and the seed sets in two runs (--defended, --seed-sets).")
    if defended:
        todo = list(settings.get(dataset).defended)
    else:
        specs = ([m for members in settings.get(dataset).seed_sets for m in members] if seed_sets
                 else settings.ZOO_MEMBERS[dataset])
        todo = [(w, a, s, "none", {}, *rest) for w, a, s, *rest in specs]
    out = []
    for wbits, abits, seed, defence, params, *own_epochs in todo:
        mid = settings.member_id(dataset, wbits, abits, seed, defences.tag(defence, params))
        if mid in members(dataset) or (only and mid not in only):
            continue
        n_epochs = epochs or (own_epochs[0] if own_epochs else None)
        out.append({"id": mid, "dataset": dataset, "wbits": wbits, "abits": abits, "seed": seed, "epochs": n_epochs,
                    "defence": defence, "params": params,
                    "command": train_command(dataset, wbits, abits, seed, n_epochs, defence, params)})
    return out


def train_and_store(todo: dict, data_dir: str | os.PathLike | None = None, runs_dir: str | os.PathLike = "runs",
                    progress: bool = True) -> tuple[str, dict]:
    """Train one member of :func:`to_build` and write its file into the zoo; its id and manifest entry."""
    result = train.train_member(todo["dataset"], todo["wbits"], todo["abits"], todo["seed"], todo["epochs"],
                                Path(runs_dir) / todo["id"], data_dir, progress=progress, defence=todo["defence"],
                                defence_params=todo["params"])
    return store(result, data_dir, command=todo["command"])


def build_line(mid: str, entry: dict) -> str:
    """What a build prints for a member it trained."""
    return (f"{mid}: test accuracy {entry['test_accuracy']:.4f} after {entry['epochs']} epochs "
            f"({entry['train_time_s']:.0f} s)")
