"""Table 2's other defences: their losses against independent computations, training, zoo ids, reproduce jobs."""
import json
import subprocess
import sys
from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf

from empir_lib import cli
from empir_lib.book.chapters import defence_rows
from empir_lib.core import defences, paper, settings
from empir_lib.core.errors import EmpirError
from empir_lib.nets import defence_losses, train, zoo
from empir_lib.studies import reproduce


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(8, activation="tanh")(x)
    return keras.Model(inp, keras.layers.Dense(3)(x))


def _batch(n=5, seed=1):
    rng = np.random.RandomState(seed)
    x = tf.constant(rng.rand(n, 4, 4, 1).astype(np.float32))
    return x, tf.one_hot(rng.randint(0, 3, n), 3)


def _ce(targets, logits):
    return -tf.reduce_sum(targets * tf.nn.log_softmax(logits), -1)


# --- bad input: one clear error each ----------------------------------------------------------

@pytest.mark.parametrize("defence,params,msg", [
    ("adversarial", {}, "unknown defence 'adversarial'"),
    ("distillation", {"temperature": 0}, "temperature=0.0 must be > 0"),
    ("distillation", {"temperature": -5}, "temperature=-5.0 must be > 0"),
    ("igr", {"lam": -1}, r"lambda \(lam\)=-1.0 must be >= 0"),
    ("fgsm-at", {"eps": 1.5}, r"eps=1.5 must lie in \[0.0, 1.0\]"),
    ("pgd-at", {"eps": -0.1}, r"eps=-0.1 must lie in \[0.0, 1.0\]"),
    ("pgd-at", {"steps": 0}, "steps=0 must be an integer >= 1"),
    ("igr", {"temperature": 10}, "defence 'igr' takes no parameter temperature"),
    ("none", {"eps": 0.3}, "eps needs a defence"),
])
def test_bad_defence_settings_are_refused_before_training(tmp_path, defence, params, msg):
    with pytest.raises(EmpirError, match=msg):
        train.train_member("mnist", run_dir=tmp_path / "run", defence=defence, defence_params=params)
    assert not (tmp_path / "run").exists()


def test_cli_reports_a_bad_temperature_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "empir_lib.cli", "train", "--dataset", "mnist", "--defence",
                          "distillation", "--temperature", "0", "--run-dir", str(tmp_path / "r")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("empir: error: temperature=0.0 must be > 0")


def test_defaults_are_the_papers_and_pgd_step_follows_eps():
    assert defences.check("distillation")["temperature"] == 100
    assert defences.check("igr")["lam"] == 100
    assert defences.check("fgsm-at") == {"eps": 0.3, "clean_weight": 0.5}
    p = defences.check("pgd-at", {"eps": 0.1, "steps": 5})
    assert p["step_size"] == pytest.approx(2.5 * 0.1 / 5) and p["clean_weight"] == 0


# --- zoo ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize("defence,params,tag", [
    ("distillation", {"temperature": 100}, "distill-t100"), ("igr", {"lam": 100}, "igr-l100"),
    ("fgsm-at", {"eps": 0.3}, "fgsmat-e0.3"), ("pgd-at", {"eps": 0.1}, "pgdat-e0.1"), ("none", {}, None),
])
def test_defence_tags_round_trip_through_zoo_ids(defence, params, tag):
    assert defences.tag(defence, params) == tag
    mid = settings.member_id("cifar10", 4, 2, 2, tag)
    assert settings.parse_member_id(mid) == ("cifar10", 4, 2, 2)
    assert settings.defence_tag(mid) == tag


def test_defence_rows_name_the_papers_rows_and_share_the_fp_member():
    for dataset in ("mnist", "cifar10"):
        rows = settings.get(dataset).defence_row_ids()
        assert {r.split("_")[0] for r in rows} == set(paper.TABLE2_DEFENCES[dataset])
        # EMPIR (FGSM adv. train) is built from the FGSM-trained FP member of the FGSM row.
        assert rows["empir-fgsm-at"][-1] == rows["fgsm-at"][0]
        assert len(rows["empir-fgsm-at"]) == 3


# --- the losses, checked against independent computations ---------------------------------------

def test_igr_adds_lambda_times_the_squared_input_gradient():
    model, (x, t) = _tiny_model(), _batch()
    ce, _ = defence_losses.loss_fn("none", {}, model)(x, t)
    loss, _ = defence_losses.loss_fn("igr", {"lam": 7.0}, model)(x, t)
    grads = []
    for i in range(len(x)):  # one image at a time, with its own tape
        xi = x[i:i + 1]
        with tf.GradientTape() as tape:
            tape.watch(xi)
            li = _ce(t[i:i + 1], model(xi))
        grads.append(float(tf.reduce_sum(tape.gradient(li, xi) ** 2)))
    np.testing.assert_allclose(loss.numpy(), ce.numpy() + 7.0 * np.array(grads), rtol=1e-4)
    zero, _ = defence_losses.loss_fn("igr", {"lam": 0.0}, model)(x, t)
    np.testing.assert_allclose(zero.numpy(), ce.numpy(), rtol=1e-6)


def test_igr_loss_is_differentiated_twice():
    model, (x, t) = _tiny_model(), _batch()
    f0, f1 = (defence_losses.loss_fn("igr", {"lam": lam}, model) for lam in (0.0, 50.0))
    grads = []
    for f in (f0, f1):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(f(x, t)[0])
        grads.append(tape.gradient(loss, model.trainable_variables))
    # The penalty moves the weight gradient: the input gradient was itself differentiated.
    assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(*grads)) > 1e-4


def test_fgsm_examples_step_eps_along_the_gradient_sign_and_raise_the_loss():
    model, (x, t) = _tiny_model(), _batch()
    adv = defence_losses.fgsm_examples(model, x, t, 0.05)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(_ce(t, model(x)))
    expected = np.clip(x.numpy() + 0.05 * np.sign(tape.gradient(loss, x).numpy()), 0, 1)
    np.testing.assert_allclose(adv.numpy(), expected, atol=1e-6)
    assert float(tf.reduce_sum(_ce(t, model(adv)))) > float(loss)


def test_fgsm_training_loss_mixes_clean_and_adversarial_halves():
    model, (x, t) = _tiny_model(), _batch()
    loss, _ = defence_losses.loss_fn("fgsm-at", {"eps": 0.1}, model)(x, t)
    adv = defence_losses.fgsm_examples(model, x, t, 0.1)
    np.testing.assert_allclose(loss.numpy(), (0.5 * _ce(t, model(x)) + 0.5 * _ce(t, model(adv))).numpy(),
                               rtol=1e-5)


def test_pgd_examples_stay_in_the_ball_and_beat_a_random_start():
    model, (x, t) = _tiny_model(), _batch(n=20)
    tf.random.set_seed(0)
    adv = defence_losses.pgd_examples(model, x, t, 0.1, 10, 0.025)
    assert np.all(np.abs(adv.numpy() - x.numpy()) <= 0.1 + 1e-6)
    assert adv.numpy().min() >= 0 and adv.numpy().max() <= 1
    start = defence_losses.pgd_examples(model, x, t, 0.1, 0, 0.025)  # zero steps: the random start alone
    assert float(tf.reduce_sum(_ce(t, model(adv)))) > float(tf.reduce_sum(_ce(t, model(start))))


def test_distillation_student_matches_the_teachers_softened_probabilities():
    teacher, student, (x, t) = _tiny_model(0), _tiny_model(1), _batch()
    loss, _ = defence_losses.loss_fn("distillation", {"temperature": 20}, student, teacher)(x, t)
    soft = tf.nn.softmax(teacher(x) / 20)
    np.testing.assert_allclose(loss.numpy(), _ce(soft, student(x) / 20).numpy(), rtol=1e-5)
    teach, _ = defence_losses.loss_fn("distillation", {"temperature": 20}, teacher, stage="teacher")(x, t)
    np.testing.assert_allclose(teach.numpy(), _ce(t, teacher(x) / 20).numpy(), rtol=1e-5)
    with pytest.raises(EmpirError, match="needs its teacher"):
        defence_losses.loss_fn("distillation", {}, student)


# --- training and the zoo ----------------------------------------------------------------------

def test_distillation_trains_a_teacher_then_the_student_and_resumes(tmp_path, data_dir):
    kw = dict(dataset="mnist", epochs=1, n_train=256, progress=False, run_dir=tmp_path / "d",
              defence="distillation", defence_params={"temperature": 10})
    interrupted = train.train_member(stop_after_batches=1, **kw)
    assert interrupted["interrupted"] and (tmp_path / "d" / "teacher" / "config.json").is_file()
    result = train.train_member(**kw)
    assert json.loads((tmp_path / "d" / "teacher" / "config.json").read_text())["stage"] == "teacher"
    assert result["config"]["defence"] == "distillation"
    assert result["config"]["defence_params"] == {"temperature": 10.0}
    # The member's training time counts its teacher's, which is also given apart.
    assert 0 < result["teacher_train_time_s"] < result["train_time_s"]
    with pytest.raises(EmpirError, match="different configuration"):
        train.train_member(**{**kw, "defence_params": {"temperature": 20}})


@pytest.mark.parametrize("defence", ["igr", "fgsm-at", "pgd-at"])
def test_each_defence_trains_and_registers_under_its_tag(tmp_path, data_dir, defence):
    params = {"eps": 0.2} if defence != "igr" else {"lam": 1.0}
    if defence == "pgd-at":
        params["steps"] = 2
    result = train.train_member("mnist", 2, 4, seed=1, epochs=1, n_train=256, progress=False,
                                run_dir=tmp_path / "run", defence=defence, defence_params=params)
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    entry = zoo.add(result, zoo_dir=zoo_dir, command="test")
    mid = settings.member_id("mnist", 2, 4, 1, defences.tag(defence, params))
    assert set(zoo.members("mnist", zoo_dir)) == {mid}
    assert entry["defence"] == defence and entry["defence_params"] == defences.check(defence, params)
    assert zoo.load(mid, zoo_dir).output_shape == (None, 10)


def test_train_command_names_every_defence_setting():
    cmd = zoo.train_command("cifar10", 32, 32, 1, None, "pgd-at", defences.check("pgd-at", {"eps": 0.1}))
    assert cmd.startswith("empir train --dataset cifar10 --wbits 32 --abits 32 --seed 1 --defence pgd-at")
    assert "--eps 0.1" in cmd and "--steps 7" in cmd and "--clean-weight 0" in cmd and cmd.endswith("--zoo")


# --- reproduce ---------------------------------------------------------------------------------

def test_reproduce_plans_the_four_attacks_and_the_suite_per_row():
    jobs = reproduce.defence_jobs("mnist", 100)
    names = [j["name"] for j in jobs]
    rows = settings.MNIST.defence_row_ids()
    assert names[:4] == [f"defences/distillation-paper-{a}" for a in reproduce.ATTACK_ORDER]
    # Every paper-protocol row before any suite row, one suite job per row.
    assert names[4 * len(rows):] == [f"defences/{r}-suite-linf-table1" for r in rows]  # MNIST: one L-inf budget
    cifar = [j["name"] for j in reproduce.defence_jobs("cifar10", 100)]
    pgd = [r for r in settings.CIFAR10.defence_row_ids() if r.startswith("pgd-at")]
    assert cifar[-len(pgd):] == [f"defences/{r}-suite-linf-8-255" for r in pgd]
    assert all("-paper-" in name for name in names[:4 * len(rows)])
    assert all(j["n"] == 100 for j in jobs)
    empir_row = [j for j in jobs if j["name"] == "defences/empir-fgsm-at-paper-pgd"][0]
    assert empir_row["members"] == settings.MNIST.defence_row_ids()["empir-fgsm-at"]


# --- the registry: one record per defence ------------------------------------------------------

@pytest.fixture
def toy_defence():
    """A toy defence registered in one place (its record and its loss), taken out again afterwards."""
    record = defences.register(defences.Defence(
        "toy", "toy", "toy defence", "TOY", "toy-trained",
        (defences.Param("noise", 0.1, "n", "noise {}", "the toy's input noise", lambda v: float(v)),),
        tagged=("noise",), paper_order=9))

    @defence_losses.loss_for("toy")
    def _toy(params, model, teacher, stage):
        def loss(x, targets):  # cross-entropy on noisy inputs
            logits = model(x, training=True)
            noisy = model(x + params["noise"] * tf.random.normal(tf.shape(x)), training=True)
            return _ce(targets, noisy), logits
        return loss

    yield record
    defences.unregister("toy")
    defence_losses.LOSSES.pop("toy", None)


def test_a_toy_defence_is_listed_by_the_cli_and_tagged(toy_defence, capsys):
    with pytest.raises(SystemExit):  # the parser is built when called, so after the toy registered
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    assert "toy" in text and "--noise" in text and "the toy's input noise" in text
    assert defences.tag("toy", {"noise": 0.25}) == "toy-n0.25"
    assert defences.setting_text("toy", {}) == "noise 0.1"
    mid = settings.member_id("mnist", 32, 32, 1, defences.tag("toy"))
    assert mid == "mnist-fp-s1-toy-n0.1" and settings.defence_tag(mid) == "toy-n0.1"


def test_a_toy_defence_trains_and_shows_in_chapter_10s_tables(tmp_path, data_dir, toy_defence, monkeypatch):
    result = train.train_member("mnist", 32, 32, seed=1, epochs=1, n_train=256, progress=False,
                                run_dir=tmp_path / "run", defence="toy", defence_params={"noise": 0.2})
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    entry = zoo.add(result, zoo_dir=zoo_dir, command="test")
    assert entry["defence"] == "toy" and "mnist-fp-s1-toy-n0.2" in zoo.members("mnist", zoo_dir)
    spec = (32, 32, 1, "toy", {"noise": 0.2})
    mnist = replace(settings.MNIST, defence_rows=(*settings.MNIST.defence_rows, ("toy", (spec,))))
    monkeypatch.setitem(settings.DATASETS, "mnist", mnist)
    # After the paper's rows (its paper_order is last), before our extra '_' rows.
    assert defence_rows.defence_rows("mnist")[-2:] == ["toy", "igr_batchmean"]
    assert defence_rows.label("mnist", "toy") == "toy defence (noise 0.2)"
    assert "| `toy` | toy defence (noise 0.2) |" in defence_rows.rows_table("mnist", zoo_dir)


def test_registering_a_defence_twice_or_tagging_a_missing_parameter_is_refused(toy_defence):
    with pytest.raises(EmpirError, match="already registered"):
        defences.register(toy_defence)
    with pytest.raises(EmpirError, match="tags parameters it does not have: eps"):
        defences.register(defences.Defence("bad", "bad", "bad", "BAD", tagged=("eps",)))


# --- the original code's PGD training, behind its name ----------------------------------------

def test_the_original_pgd_recipe_is_named_and_tagged_with_every_setting():
    params = defences.check("pgd-at", defences.recipe("pgd-at", "original"))
    assert params == {"eps": 0.3, "steps": 40, "step_size": 0.01, "clean_weight": 0.5, "labels": "predicted"}
    assert defences.tag("pgd-at", params) == "pgdat-e0.3-n40-a0.01-w0.5-ypred"
    assert defences.tag("pgd-at", {"eps": 0.1}) == "pgdat-e0.1"  # Madry's recipe: the tags already in the zoo
    assert settings.parse_member_id("cifar10-fp-s1-pgdat-e0.3-n40-a0.01-w0.5-ypred") == ("cifar10", 32, 32, 1)
    with pytest.raises(EmpirError, match="unknown pgd-at recipe 'madri'"):
        defences.recipe("pgd-at", "madri")
    with pytest.raises(EmpirError, match="labels"):
        defences.check("pgd-at", {"labels": "random"})


def test_predicted_labels_craft_against_the_models_own_answer_and_mix_half_clean_loss():
    model, (x, t) = _tiny_model(), _batch(8)
    params = {"eps": 0.1, "steps": 3, "step_size": 0.05, "clean_weight": 0.5, "labels": "predicted"}
    tf.random.set_seed(5)
    loss, _ = defence_losses.loss_fn("pgd-at", params, model)(x, t)
    predicted = tf.one_hot(tf.argmax(model(x, training=False), -1), 3)
    assert not np.array_equal(predicted.numpy(), t.numpy())  # the labels differ, so the choice matters
    tf.random.set_seed(5)
    adv = defence_losses.pgd_examples(model, x, predicted, 0.1, 3, 0.05)
    expected = 0.5 * _ce(t, model(adv, training=True)) + 0.5 * _ce(t, model(x, training=True))
    np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-5)
    tf.random.set_seed(5)
    true_labels, _ = defence_losses.loss_fn("pgd-at", {**params, "labels": "true"}, model)(x, t)
    assert not np.allclose(loss.numpy(), true_labels.numpy())
