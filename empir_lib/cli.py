"""The ``empir`` command.

    empir train --dataset mnist --wbits 2 --abits 4 --seed 1 [--epochs N] [--zoo]
    empir train --dataset mnist --defence distillation --temperature 100 [--zoo]   (also igr, fgsm-at, pgd-at)
    empir train --dataset cifar10 --defence pgd-at --recipe original --zoo   (the original code's PGD training)
    empir zoo list | verify | build --dataset mnist [--defended | --seed-sets] [--workers N | --address ...]
    empir joint --dataset cifar10 --members a2w2,a2w2,a2w2 [--lam 0.5] [--zoo]   (stochastic members, trained jointly)
    empir samples [mnist cifar10 tiny-imagenet]
    empir deploy mnist-a4w2-s1 [more members]   (ONNX Runtime, integer kernels: data/deployed)
    empir evaluate --dataset mnist --members mnist-a4w2-s1,mnist-a4w2-s2,mnist-fp-s1 --attack pgd --protocol paper
    empir reproduce mnist|cifar10|tiny-imagenet [--n 10000] [--select-n 1000] [--only table2/]
                    [--dry-run] [--workers N | --address host:port]   (Dask: empir_lib/studies/parallel.py)
    empir bench [--n 500] [--only attacks|apgd|restarts|square|training|end_to_end]

Errors print one line (``empir: error: ...``) and exit 2; ``--debug`` shows
the traceback as well.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

# A command line should not open with TensorFlow's C++ start-up log: set the default before TF is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .attack import attacks
from .book import assignments, attack_runs, attack_tasks, attack_worst, grader
from .core import defences, settings
from .core.errors import EmpirError, check_choice, check_positive_int
from .hardware.deploy import deploy as deploy_member
from .nets import build, data, diversity, ensemble, train, zoo
from .nets.samples import write_samples
from .studies import bench, cards, evaluate, parallel, reproduce, results, schedule


def _bits_arg(text: str) -> str | list[str]:
    """'4' -> 4, '2,2,4' -> [2, 2, 4]; values are checked by the library."""
    parts = text.split(",")
    return parts[0] if len(parts) == 1 else parts


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="empir", description="EMPIR: ensembles of mixed-precision networks.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train one ensemble member")
    t.add_argument("--dataset", required=True,
                   help="mnist, cifar10, tiny-imagenet, or imagenet (its folder layout in --data-dir)")
    fp = str(settings.FULL_PRECISION)
    t.add_argument("--wbits", type=_bits_arg, default=fp, help=f"weight bits: 1..16 or {fp}, or a per-layer list a,b,c")
    t.add_argument("--abits", type=_bits_arg, default=fp, help=f"activation bits: 1..16 or {fp}, or a per-layer list")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--epochs", type=int, default=None, help="default: the dataset's recipe")
    t.add_argument("--n-train", type=int, default=None, help="train on the first N images only")
    t.add_argument("--batch-size", type=int, default=None,
                   help="global batch, split between tf.distribute replicas (default: the recipe's)")
    t.add_argument("--run-dir", default=None, help="default: runs/<member id>")
    t.add_argument("--data-dir", default=None, help="default: $EMPIR_DATA_DIR")
    t.add_argument("--zoo", action="store_true", help="add the trained member to data/models")
    t.add_argument("--defence", default="none", help=f"train with a defence's loss: {', '.join(defences.names())}")
    t.add_argument("--recipe", default=None,
                   help="a defence's named parameter set, e.g. pgd-at's 'original' (the original code's)")
    for name, param in _defence_params().items():
        t.add_argument(f"--{name.replace('_', '-')}", type=param.kind, default=None, help=param.help)

    j = sub.add_parser("joint", help="train stochastic-quantised members jointly with a diversity penalty")
    j.add_argument("--dataset", default="cifar10")
    j.add_argument("--members", default="a2w2,a2w2,a2w2", help="comma-separated precisions, e.g. a2w2,a4w2")
    j.add_argument("--lam", type=float, default=diversity.DIVERSITY_WEIGHT, help="weight of the diversity penalty")
    j.add_argument("--representation", default="nonmax", help=", ".join(diversity.REPRESENTATIONS))
    j.add_argument("--relaxation", default="ste", help="the stochastic quantiser's training relaxation")
    j.add_argument("--seed", type=int, default=1)
    j.add_argument("--epochs", type=int, default=None, help="default: the dataset's recipe")
    j.add_argument("--n-train", type=int, default=None)
    j.add_argument("--run-dir", default=None)
    j.add_argument("--data-dir", default=None)
    j.add_argument("--zoo", action="store_true", help="add the members to the model zoo when done")

    z = sub.add_parser("zoo", help="list, verify or build the model zoo")
    z.add_argument("action", choices=("list", "verify", "build"))
    z.add_argument("--dataset", default=None)
    z.add_argument("--epochs", type=int, default=None)
    z.add_argument("--data-dir", default=None)
    z.add_argument("--defended", action="store_true", help="build the members of Table 2's other defences")
    z.add_argument("--seed-sets", action="store_true",
                   help="build the seed study's independent seed sets of EMPIR (settings: seed_sets)")
    _parallel_args(z, "members")

    e = sub.add_parser("evaluate", help="one ensemble, one attack, one protocol: adversarial accuracy")
    e.add_argument("--dataset", required=True, help="mnist, cifar10 or tiny-imagenet")
    e.add_argument("--members", default=None,
                   help="comma-separated zoo ids (default: the paper's EMPIR configuration)")
    e.add_argument("--rule", default="vote", help="vote or average")
    e.add_argument("--attack", required=True, help="fgsm, bim, pgd or cw")
    e.add_argument("--protocol", default="paper", help="paper (the original code's wiring) or adaptive")
    e.add_argument("--objective", default=None,
                   help="what to differentiate (default: the protocol's); e.g. mean_prob, member:2")
    e.add_argument("--eps", type=float, default=None, help="override the Table 1 eps")
    e.add_argument("--nb-iter", type=int, default=None, help="override the iterations (BIM/PGD)")
    e.add_argument("--max-iterations", type=int, default=None, help="override CW's iterations")
    e.add_argument("--n", type=int, default=10000, help="evaluate the first N test images")
    e.add_argument("--quick", action="store_true", help="use the embedded sample (no data directory)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=500, help="images per attacked batch (and per checkpoint)")
    e.add_argument("--out", default=None, help="results file (default: print only)")
    e.add_argument("--data-dir", default=None)

    r = sub.add_parser("reproduce", help="every result the chapters need, resumable")
    r.add_argument("dataset", help="mnist, cifar10 or tiny-imagenet")
    r.add_argument("--n", type=int, default=10000, help="test images per full job")
    r.add_argument("--select-n", type=int, default=1000, help="test images per sweep/selection job")
    r.add_argument("--only", default=None, help="run only jobs whose name starts with this, e.g. table2/")
    r.add_argument("--out-dir", default=None, help="default: data/results/<dataset>")
    r.add_argument("--data-dir", default=None)
    r.add_argument("--dry-run", action="store_true",
                   help="print every job with its measured or estimated seconds and the expected wall time")
    _parallel_args(r, "jobs")

    b = sub.add_parser("bench", help="speed of attacks (vs cleverhans and the gradient floor) and training")
    b.add_argument("--n", type=int, default=500, help="MNIST sample images per attack")
    b.add_argument("--out-dir", default=None, help="default: benchmarks/")
    b.add_argument("--only", default=None, choices=bench.PARTS, help="rerun one part, keep the others")
    b.add_argument("--book", action="store_true", help="also time the quick-profile notebooks and the HTML build")

    a = sub.add_parser("assignments", help="classroom: build the chapters' Otter assignments, or grade a folder")
    a.add_argument("action", choices=("build", "grade", "attacks", "expected-worst"))
    a.add_argument("args", nargs="*", help="build: chapters (default: all); grade: CHAPTER SUBMISSIONS_DIR; "
                   "attacks: tasks (default: all): grade the reference and plain attacks, write their record; "
                   "expected-worst: the random ensemble's expected-accuracy worst case (its task's target)")
    a.add_argument("--out-dir", default=None, help="default: _build/assignments (build), <assignment>/graded")

    s = sub.add_parser("samples", help="rewrite data/samples from the full datasets")
    s.add_argument("names", nargs="*", help="datasets (default: all)")
    s.add_argument("--data-dir", default=None)

    c = sub.add_parser("cards", help="one card per evaluated row, RobustBench's layout (data/results/cards)")
    c.add_argument("datasets", nargs="*", help="datasets (default: every dataset with results)")

    d = sub.add_parser("deploy", help="write zoo members as ONNX files with integer kernels (data/deployed)")
    d.add_argument("members", nargs="+", help="zoo ids, e.g. mnist-a4w2-s1")
    d.add_argument("--out-dir", default=None, help="default: data/deployed")
    return p


def _defence_params() -> dict[str, defences.Param]:
    """Every registered defence's parameters by name, once each: the train command's flags."""
    out: dict[str, defences.Param] = {}
    for record in defences.REGISTRY.values():
        for param in record.params:
            out.setdefault(param.name, param)
    return out


def _parallel_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help=f"run the {what} as tasks on N worker processes on this machine (the 'parallel' extra)")
    p.add_argument("--address", default=None,
                   help="run them on a Dask cluster instead: its scheduler's host:port ('dask scheduler')")


def _int_or_list(v: str | list[str]) -> int | str | list:
    if isinstance(v, list):
        return [int(b) if b.strip().isdigit() else b for b in v]
    return int(v) if v.strip().isdigit() else v


def main(argv: list[str] | None = None) -> int:
    """Run one ``empir`` command; return its exit status."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("empir: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        if isinstance(e, (EmpirError, OSError)):
            print(f"empir: error: {e}", file=sys.stderr)
        else:
            print(f"empir: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
                  file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "workers", None) is not None:
        check_positive_int(args.workers, "--workers")
    if args.cmd == "train":
        given = {k: getattr(args, k) for k in _defence_params() if getattr(args, k) is not None}
        params = {**(defences.recipe(args.defence, args.recipe) if args.recipe else {}), **given}
        result = train.train_member(args.dataset, _int_or_list(args.wbits), _int_or_list(args.abits), args.seed,
                                    args.epochs, args.run_dir, args.data_dir, args.n_train, args.batch_size,
                                    defence=args.defence, defence_params=params)
        print(f"trained {result['run_dir']}: {result['model_path']}")
        if args.zoo:
            entry = zoo.add(result, args.data_dir)
            print(f"added to the zoo: test accuracy {entry['test_accuracy']:.4f} on {entry['n_test']} images")
        return 0
    if args.cmd == "joint":
        specs = [settings.parse_precision(m) for m in args.members.split(",")]
        result = diversity.train_joint(args.dataset, tuple(specs), args.seed, args.epochs, args.run_dir, args.data_dir,
                                       args.n_train, lam=args.lam, representation=args.representation,
                                       relaxation=args.relaxation)
        print(f"trained {result['run_dir']}")
        if args.zoo:
            for mid, e in diversity.add_to_zoo(result, args.data_dir).items():
                print(f"added {mid} to the zoo: test accuracy {e['test_accuracy']:.4f} (one draw a pass), "
                      f"{e['test_accuracy_nearest']:.4f} (nearest rounding)")
        return 0
    if args.cmd == "zoo":
        if args.action == "list":
            for mid, e in sorted(zoo.members(args.dataset).items()):
                print(f"{mid:24s} acc={e['test_accuracy']:.4f} epochs={e['epochs']:3d} "
                      f"train={e['train_time_s']:7.0f}s {e['size_bytes'] / 1e6:5.1f} MB")
            return 0
        if args.action == "verify":
            problems = zoo.verify()
            for p in problems:
                print(p)
            print("zoo OK" if not problems else f"{len(problems)} problem(s)")
            return 1 if problems else 0
        if not args.dataset:
            raise EmpirError("'empir zoo build' needs --dataset (mnist, cifar10 or tiny-imagenet).")
        if args.workers is not None or args.address is not None:
            parallel.build_zoo(args.dataset, args.epochs, args.data_dir, args.defended, args.workers, args.address,
                               seed_sets=args.seed_sets)
        else:
            build.build_zoo(args.dataset, args.epochs, args.data_dir, defended=args.defended, seed_sets=args.seed_sets)
        return 0
    if args.cmd == "cards":
        for dataset in args.datasets or [d for d in settings.DATASETS if cards.rows(d)]:
            for path in cards.write(dataset):
                card = json.loads(path.read_text())
                print(f"{path.relative_to(cards.cards_dir(dataset).parent)}: clean {card['clean_acc']}%, "
                      f"robust {card['robust_acc']}% on {card['n']:,} images"
                      f"{' (unreliable)' if card['unreliable'] else ''}")
        return 0
    if args.cmd == "evaluate":
        return _evaluate(args)
    if args.cmd == "reproduce":
        return _reproduce(args)
    if args.cmd == "bench":
        result = bench.run(args.out_dir, args.n, book=args.book, only=args.only)
        print(f"wrote benchmarks in {result['wall_time_s']:.0f} s")
        return 0
    if args.cmd == "assignments":
        return _assignments(args)
    if args.cmd == "samples":
        for path in write_samples(args.names or None, args.data_dir):
            print(path)
        return 0
    if args.cmd == "deploy":
        for member in args.members:
            entry = deploy_member(member, args.out_dir)
            print(f"{member}: {entry['file']} ({entry['size_bytes']:,} bytes, sha256 {entry['sha256'][:12]}...)")
        return 0
    return 2


def _reproduce(args: argparse.Namespace) -> int:
    if args.dry_run:
        ctx, entries = reproduce.prepare(args.dataset, args.n, args.select_n, out_dir=args.out_dir, only=args.only,
                                         load=False)
        workers = sorted({1, args.workers or 1})
        print(schedule.table(schedule.price(entries, ctx.out_dir / "timing.json", tuple(workers))))
    elif args.workers is not None or args.address is not None:
        parallel.reproduce(args.dataset, args.n, args.select_n, args.data_dir, args.out_dir, only=args.only,
                           workers=args.workers, address=args.address)
    else:
        reproduce.reproduce(args.dataset, args.n, args.select_n, args.data_dir, args.out_dir, only=args.only)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    check_choice(args.dataset, tuple(settings.EMPIR_MEMBERS), "dataset")
    ids = args.members.split(",") if args.members else settings.EMPIR_MEMBERS[args.dataset]
    overrides = {k: v for k, v in (("eps", args.eps), ("nb_iter", args.nb_iter),
                                   ("max_iterations", args.max_iterations)) if v is not None}
    params = attacks.preset(args.dataset, args.attack, **overrides)
    if args.out and not _writable(args.out):
        raise EmpirError(f"cannot write {args.out}: its folder is not writable; pass --out in a folder you own.")
    ens = ensemble.from_zoo(ids, args.rule)
    x, y = (data.load_sample(args.dataset) if args.quick else data.load(args.dataset, "test", args.data_dir))
    x, y = x[:args.n], y[:args.n]
    partial = f"{args.out}.partial.npz" if args.out else None
    res = evaluate.adversarial_accuracy(ens, args.attack, x, y, args.protocol, args.objective, params,
                                        seed=args.seed, batch_size=args.batch_size, partial_path=partial)
    print(f"{ens.describe()}\n{args.attack} / {args.protocol} / {res['objective']} on {len(y)} images: "
          f"clean {res['clean_accuracy']:.4f}, adversarial {res['adversarial_accuracy']:.4f} "
          f"({res['wall_time_s']:.0f} s)")
    if args.out:
        info = {"source": "embedded sample data/samples"} if args.quick else None
        results.write_result(args.out, res, args.dataset, extra={"data": {"split": "test", "first_n": len(y),
                              **(info or data.describe_source(args.dataset, args.data_dir))}})
        if os.path.exists(partial):
            os.unlink(partial)
        print(f"wrote {args.out}")
    return 0


def _assignments(args: argparse.Namespace) -> int:
    root = Path(args.out_dir if args.out_dir and args.action == "build" else assignments.OUT_DIR)
    if args.action == "build":
        for stem, folder in assignments.generate(args.args or None, root).items():
            print(f"{stem}: {folder}/student (hand out), {assignments.autograder_zip(folder)} (grade)")
        return 0
    if args.action == "expected-worst":
        attack_worst.expected_worst_case(attack_tasks.task("cifar10-stochastic"))
        return 0
    if args.action == "attacks":
        tasks = [attack_tasks.task(name) for name in args.args] or list(attack_tasks.TASKS.values())
        attack_runs.record(tasks, grader.hidden_seed(), Path(args.out_dir) / "attack_tasks.json" if args.out_dir
                           else attack_runs.RECORD)
        return 0
    if len(args.args) != 2:
        raise EmpirError("usage: empir assignments grade CHAPTER SUBMISSIONS_DIR, e.g. grade 3 submissions/")
    folder = root / assignments.chapter_path(args.args[0]).stem
    scores = assignments.grade(folder, args.args[1], args.out_dir)
    for s in scores:
        print(f"{s.submission}: {s.total:.3g} points" + (f"; failed: {', '.join(s.messages)}" if s.messages else "")
              + (f"; {s.error}" if s.error else ""))
    print(f"wrote {Path(args.out_dir or folder / 'graded') / 'scores.csv'}")
    return 0


def _writable(path: str) -> bool:
    """Try it: a scratch file in the nearest existing folder (root passes every os.access test)."""
    folder = Path(path).resolve().parent
    while not folder.exists():
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
