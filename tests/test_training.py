"""fit / evaluate / checkpoints: learning on real MNIST, exact resume, Ctrl-C, metrics log."""

import json
import os
import re
import signal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import im2col_net
from im2col_net.datasets import load_dataset
from im2col_net.functional import planner
from im2col_net.layers import Conv2D, Dropout, Flatten, Linear, MaxPool2D, ReLU, Sequential
from im2col_net.models import build_model
from im2col_net.optim import make_optimizer, make_schedule
from im2col_net.training import (
    CheckpointError,
    TrainingInterrupted,
    confusion_matrix,
    evaluate,
    fit,
    load_checkpoint,
    per_class_accuracy,
    predict_proba,
    read_metrics,
)
from im2col_net.training.evaluation import batch_bounds


@pytest.fixture(scope="module")
def mnist_small():
    """4000 training images and 1000 held-out test images of the real MNIST."""
    return load_dataset("mnist", "train", limit=4000), load_dataset("mnist", "test", limit=1000)


def test_default_model_learns_real_mnist(mnist_small, tmp_path):
    train, test = mnist_small
    model = build_model("convnet", rng=0)
    optimizer = make_optimizer("adam", model.params, lr=1e-3)
    result = fit(model, train, test, epochs=2, batch_size=64, optimizer=optimizer,
                 schedule=make_schedule("cosine", 1e-3, 2), seed=0, out_dir=tmp_path,
                 progress=False)
    # Chance is 10%; a working engine gets ~95% here. 90% leaves room for BLAS noise.
    assert result.test_accuracy >= 0.90, result
    assert result.epochs == 2 and result.step == 2 * 63
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    # The saved model reproduces the accuracy on its own.
    loaded = im2col_net.load_model(tmp_path / "model.npz")
    _, accuracy, _ = evaluate(loaded, *test, batch_size=250)
    assert accuracy == pytest.approx(result.test_accuracy)


# -- small synthetic problem for the exactness tests ---------------------------------------
def _data(n, seed):
    """Two-class-ish images: class = which half is brighter (plus noise), 10 classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int64)
    images = rng.random((n, 1, 12, 12)).astype(np.float32) * 0.5
    images[np.arange(n), 0, labels, :] += 0.5
    return images, labels


TRAIN, TEST = _data(200, 0), _data(60, 1)
BATCH = 32          # 7 updates per epoch (the last one has 8 images)
EPOCHS = 3


def _tiny_model(seed=0):
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2D(1, 4, 3, padding=1, rng=rng), ReLU(), MaxPool2D(2), Flatten(),
        Dropout(0.3, rng=rng.spawn(1)[0]), Linear(4 * 6 * 6, 10, rng=rng),
    )


def _run(out_dir, *, resume=False, callback=None, model=None, epochs=EPOCHS, **kw):
    model = model or _tiny_model()
    optimizer = make_optimizer("adam", model.params, lr=3e-3)
    schedule = make_schedule("cosine", 3e-3, epochs)
    result = fit(model, TRAIN, TEST, epochs=epochs, batch_size=BATCH, optimizer=optimizer,
                 schedule=schedule, seed=7, out_dir=out_dir, resume=resume, progress=False,
                 log_every=3, callback=callback, **kw)
    return model, optimizer, result


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: final weights, optimizer state, epoch records."""
    out = tmp_path_factory.mktemp("reference")
    model, optimizer, result = _run(out)
    return model.state_dict(), optimizer.state_dict(), result


def _assert_same_run(model, optimizer, result, reference):
    ref_params, ref_opt, ref_result = reference
    params = model.state_dict()
    assert params.keys() == ref_params.keys()
    for name in params:  # bit for bit
        assert np.array_equal(params[name], ref_params[name]), name
    opt_state = optimizer.state_dict()
    for name in ref_opt:
        assert np.array_equal(opt_state[name], ref_opt[name]), name
    assert result.step == ref_result.step and result.epochs == ref_result.epochs
    strip = ("epoch_time", "time")
    assert ([{k: v for k, v in r.items() if k not in strip} for r in result.history]
            == [{k: v for k, v in r.items() if k not in strip} for r in ref_result.history])


def _interrupt_at(step):
    def callback(info):
        if info["step"] == step:
            raise KeyboardInterrupt
    return callback


@pytest.mark.parametrize("step", [4, 7, 9, 21])  # mid-epoch, epoch end, later, last update
def test_interrupted_then_resumed_run_is_bitwise_identical(tmp_path, reference, step):
    with pytest.raises(TrainingInterrupted) as info:
        _run(tmp_path, callback=_interrupt_at(step))
    assert info.value.checkpoint == str(tmp_path / "checkpoint.npz")
    assert info.value.progress.step == step
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert saved.progress.step == step
    assert saved.progress.epoch == (step - 1) // 7
    assert saved.progress.batch_in_epoch == step - 7 * ((step - 1) // 7)
    assert not (tmp_path / "model.npz").exists()
    model, optimizer, result = _run(tmp_path, resume=True)
    _assert_same_run(model, optimizer, result, reference)


def test_two_interruptions_and_resumes(tmp_path, reference):
    with pytest.raises(TrainingInterrupted):
        _run(tmp_path, callback=_interrupt_at(3))
    with pytest.raises(TrainingInterrupted):
        _run(tmp_path, resume=True, callback=_interrupt_at(12))
    model, optimizer, result = _run(tmp_path, resume=True)
    _assert_same_run(model, optimizer, result, reference)
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl", kind="step")]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


def test_interrupt_inside_forward_discards_that_update(tmp_path, reference, monkeypatch):
    model = _tiny_model()
    calls = {"n": 0}
    original = Linear.forward

    def forward(self, x):
        calls["n"] += self.training  # count training updates, not evaluation batches
        if calls["n"] == 10 and self.training:  # update 10 (epoch 2): after Dropout drew its mask
            raise KeyboardInterrupt
        return original(self, x)

    monkeypatch.setattr(Linear, "forward", forward)
    with pytest.raises(TrainingInterrupted) as info:
        _run(tmp_path, model=model)
    monkeypatch.undo()
    assert info.value.progress.step == 9
    assert load_checkpoint(tmp_path / "checkpoint.npz").progress.step == 9
    model, optimizer, result = _run(tmp_path, resume=True)
    _assert_same_run(model, optimizer, result, reference)


def test_interrupt_inside_optimizer_update_keeps_last_checkpoint(tmp_path, reference,
                                                                 monkeypatch):
    from im2col_net.optim import Adam

    original = Adam.step
    calls = {"n": 0}

    def step(self, grads):
        calls["n"] += 1
        if calls["n"] == 10:  # half-applied update: weights already touched
            next(iter(self.params.values()))[...] += 1.0
            raise KeyboardInterrupt
        return original(self, grads)

    monkeypatch.setattr(Adam, "step", step)
    with pytest.raises(TrainingInterrupted, match="cut short"):
        _run(tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "checkpoint.npz").progress.step == 7  # epoch 1
    model, optimizer, result = _run(tmp_path, resume=True)
    _assert_same_run(model, optimizer, result, reference)


def test_sigint_finishes_the_current_update_then_saves(tmp_path, reference):
    def callback(info):
        if info["step"] == 5:
            os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C were pressed now

    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted):
        _run(tmp_path, callback=callback)
    assert signal.getsignal(signal.SIGINT) is handler_before  # handler restored
    assert load_checkpoint(tmp_path / "checkpoint.npz").progress.step == 5
    events = [r["event"] for r in read_metrics(tmp_path / "metrics.jsonl", kind="event")]
    assert events == ["start", "interrupt"]
    model, optimizer, result = _run(tmp_path, resume=True)
    _assert_same_run(model, optimizer, result, reference)


def test_metrics_log_format(tmp_path):
    _run(tmp_path)
    records = read_metrics(tmp_path / "metrics.jsonl")
    with open(tmp_path / "metrics.jsonl") as handle:
        assert all(json.loads(line) for line in handle)  # one JSON object per line
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == [3, 6, 7, 10, 13, 14, 17, 20, 21]
    assert set(steps[0]) == {"kind", "epoch", "step", "loss", "accuracy", "lr",
                             "images_per_sec", "time"}
    assert steps[2]["epoch"] == 1.0 and steps[0]["epoch"] == pytest.approx(3 / 7)
    for r in steps:
        assert r["loss"] > 0 and 0 <= r["accuracy"] <= 1 and r["images_per_sec"] > 0
        assert 0 < r["lr"] <= 3e-3
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert [r["step"] for r in epochs] == [7, 14, 21]
    assert set(epochs[0]) == {"kind", "epoch", "step", "train_loss", "train_accuracy",
                              "test_loss", "test_accuracy", "lr", "epoch_time", "time"}
    for r in epochs:
        assert 0 <= r["test_accuracy"] <= 1 and r["test_loss"] > 0 and r["epoch_time"] > 0
    times = [r["time"] for r in records]
    assert times == sorted(times)
    assert [r["event"] for r in records if r["kind"] == "event"] == ["start", "end"]
    assert records[0]["run"]["batch_size"] == BATCH


def test_checkpoint_holds_the_model_and_run_state(tmp_path):
    model, optimizer, _ = _run(tmp_path, epochs=1)
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert saved.progress.epoch == 1 and saved.progress.step == 7
    assert saved.optimizer_config == optimizer.get_config()
    assert saved.schedule_config["class"] == "CosineLR"
    assert set(saved.rng["layers"]) == {"4"}  # the Dropout layer's generator
    assert saved.run["batch_size"] == BATCH and saved.run["n_train"] == 200
    assert set(saved.optimizer_state) == set(optimizer.state_dict())
    from_ckpt = im2col_net.load_model(tmp_path / "checkpoint.npz")
    final = im2col_net.load_model(tmp_path / "model.npz")
    for name, value in model.state_dict().items():
        assert np.array_equal(from_ckpt.params[name], value)
        assert np.array_equal(final.params[name], value)


def test_damaged_checkpoints_are_refused_on_resume(tmp_path):
    _run(tmp_path, epochs=1)
    path = tmp_path / "checkpoint.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="checkpoint.npz"):
        _run(tmp_path, resume=True)
    # A checkpoint smuggling a pickled object array is refused, never unpickled.
    members = {"__checkpoint__": np.array("{}"),
               "param/0.weight": np.array([object()], dtype=object)}
    with open(path, "wb") as handle:
        np.savez(handle, **members)
    with pytest.raises(CheckpointError, match="checkpoint.npz"):
        _run(tmp_path, resume=True)


def test_resume_refuses_a_different_run(tmp_path):
    _run(tmp_path, epochs=1)
    with pytest.raises(CheckpointError, match="batch_size"):
        model = _tiny_model()
        fit(model, TRAIN, TEST, epochs=2, batch_size=16, seed=7, out_dir=tmp_path,
            resume=True, progress=False,
            optimizer=make_optimizer("adam", model.params, lr=3e-3))
    with pytest.raises(CheckpointError, match="architecture"):
        model = Sequential(Flatten(), Linear(144, 10, rng=0))
        fit(model, TRAIN, TEST, epochs=2, batch_size=BATCH, seed=7, out_dir=tmp_path,
            resume=True, progress=False,
            optimizer=make_optimizer("adam", model.params, lr=3e-3))
    with pytest.raises(CheckpointError, match="optimizer"):
        model = _tiny_model()
        fit(model, TRAIN, TEST, epochs=2, batch_size=BATCH, seed=7, out_dir=tmp_path,
            resume=True, progress=False, optimizer=make_optimizer("sgd", model.params))
    with pytest.raises(FileExistsError, match="resume"):
        _run(tmp_path)  # a fresh run must not clobber an existing one
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        _run(tmp_path / "empty", resume=True)


def test_resuming_a_finished_run_changes_nothing(tmp_path, reference):
    _run(tmp_path)
    model, optimizer, result = _run(tmp_path, resume=True)
    _assert_same_run(model, optimizer, result, reference)
    assert result.test_accuracy == reference[2].test_accuracy


def test_fit_restores_the_first_layer_and_mode(tmp_path):
    model = _tiny_model()
    assert model[0].compute_input_grad
    optimizer = make_optimizer("sgd", model.params, lr=0.01)
    result = fit(model, TRAIN, None, epochs=1, batch_size=50, optimizer=optimizer, seed=0,
                 progress=False)
    assert model[0].compute_input_grad  # restored after training
    assert result.test_accuracy is None and result.history[0]["test_accuracy"] is None
    assert result.out_dir is None and result.model_path is None


def test_fit_rejects_bad_arguments():
    model = _tiny_model()
    optimizer = make_optimizer("adam", model.params)
    good = dict(epochs=1, batch_size=8, optimizer=optimizer, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, TRAIN, **dict(good, batch_size=0))
    with pytest.raises(ValueError, match="train_data labels"):
        fit(model, (TRAIN[0], TRAIN[1][:-1]), **good)
    with pytest.raises(ValueError, match="train_data images"):
        fit(model, (TRAIN[0].astype(np.uint8), TRAIN[1]), **good)
    with pytest.raises(ValueError, match="resume"):
        fit(model, TRAIN, resume=True, **good)


def test_float64_training_stays_float64(tmp_path):
    model = _tiny_model().astype(np.float64)
    optimizer = make_optimizer("adam", model.params, lr=3e-3)
    fit(model, TRAIN, TEST, epochs=1, batch_size=BATCH, optimizer=optimizer, seed=0,
        out_dir=tmp_path, progress=False)
    assert all(p.dtype == np.float64 for p in model.params.values())
    assert im2col_net.load_model(tmp_path / "model.npz").dtype == np.float64


def test_evaluate_and_predict_proba_agree_with_a_direct_forward():
    model = _tiny_model()
    images, labels = TEST
    model.train()
    loss, accuracy, predictions = evaluate(model, images, labels, batch_size=7)
    assert model.training  # mode restored
    model.eval()
    logits = model.forward(images)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-logp[np.arange(len(labels)), labels].mean(), rel=1e-5)
    assert np.array_equal(predictions, logits.argmax(axis=1))
    assert accuracy == pytest.approx(np.mean(predictions == labels))
    probs = predict_proba(model, images, batch_size=16)
    assert probs.dtype == np.float32 and probs.shape == (60, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(probs, np.exp(logp), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="labels"):
        evaluate(model, images, labels[:-1])


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 3000), batch_size=st.integers(1, 400))
def test_evaluation_batches_cover_the_set_in_near_equal_sizes(n, batch_size):
    bounds = batch_bounds(n, batch_size)
    assert len(bounds) == -(-n // batch_size)
    assert [i for lo, hi in bounds for i in range(lo, hi)] == list(range(n))
    sizes = [hi - lo for lo, hi in bounds]
    if sizes:
        assert max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1


def test_evaluate_runs_near_equal_batches_not_a_short_remainder():
    model = _tiny_model()
    seen = []
    forward = model.forward
    model.forward = lambda xb: (seen.append(len(xb)), forward(xb))[1]
    images, labels = TEST                       # 60 images
    evaluate(model, images, labels, batch_size=16)
    assert seen == [15, 15, 15, 15]
    seen.clear()
    predict_proba(model, images, batch_size=25)
    assert seen == [20, 20, 20]


def test_fit_evaluates_on_the_batch_shapes_its_training_planned():
    """By default the test set is evaluated in batches of the training's power-of-two
    bucket, so the planner has nothing new to time (a measuring planner would spend up
    to a second on each new shape)."""
    planner.reset()
    try:
        model = _tiny_model()
        train = (TRAIN[0][:192], TRAIN[1][:192])        # 6 full batches of 32
        fit(model, train, TEST, epochs=1, batch_size=BATCH, optimizer="sgd", seed=0,
            progress=False)
        buckets = {re.search(r"x=n(\d+)", entry["key"]).group(1)
                   for entry in planner.export_plans()}
        assert buckets == {"32"}
        # An explicit eval_batch_size still rules: 60 test images in one batch.
        fit(model, train, TEST, epochs=1, batch_size=BATCH, optimizer="sgd", seed=0,
            progress=False, eval_batch_size=60)
        buckets = {re.search(r"x=n(\d+)", entry["key"]).group(1)
                   for entry in planner.export_plans()}
        assert buckets == {"32", "64"}
    finally:
        planner.reset()


def test_confusion_matrix_and_per_class_accuracy():
    labels = np.array([0, 0, 1, 2, 2, 2])
    predictions = np.array([0, 1, 1, 2, 0, 2])
    matrix = confusion_matrix(labels, predictions, num_classes=4)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    recall = per_class_accuracy(matrix)
    assert recall[:3].tolist() == [0.5, 1.0, 2 / 3] and np.isnan(recall[3])
    with pytest.raises(ValueError, match="labels must lie in"):
        confusion_matrix(labels, predictions, num_classes=2)
    with pytest.raises(ValueError, match="predictions must lie in"):
        confusion_matrix(np.zeros(6, int), predictions, num_classes=2)


def test_label_smoothing_trains_on_the_smoothed_loss(tmp_path):
    """The first update's reported loss is the smoothed cross-entropy of the first batch
    (as torch's CrossEntropyLoss(label_smoothing=...)); the run records the setting, and
    a resume with another value is refused."""
    from im2col_net.datasets import iterate_batches
    from im2col_net.layers import SoftmaxCrossEntropy

    first = {}

    def callback(info):
        first.setdefault("loss", info["loss"])

    model = _tiny_model()
    xb, yb = next(iterate_batches(*TRAIN, BATCH, np.random.default_rng(7), shuffle=True))
    logits = model.forward(xb)        # dropout draws from its own generator: reset below
    model = _tiny_model()
    expected_plain = SoftmaxCrossEntropy().forward(logits, yb)
    expected = SoftmaxCrossEntropy(label_smoothing=0.2).forward(logits, yb)
    assert expected != pytest.approx(expected_plain)
    _run(tmp_path, epochs=1, model=model, callback=callback, label_smoothing=0.2)
    assert first["loss"] == pytest.approx(expected, rel=1e-6)
    assert load_checkpoint(tmp_path / "checkpoint.npz").run["label_smoothing"] == 0.2
    with pytest.raises(CheckpointError, match="label_smoothing was 0.2, now 0.0"):
        _run(tmp_path, resume=True, epochs=2)
    _run(tmp_path, resume=True, epochs=2, label_smoothing=0.2)


@pytest.mark.parametrize("value", [1.0, -0.1, True, "0.1", float("nan")])
def test_fit_rejects_bad_label_smoothing(value):
    model = _tiny_model()
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\)"):
        fit(model, TRAIN, epochs=1, batch_size=8, progress=False, label_smoothing=value,
            optimizer=make_optimizer("adam", model.params))
