"""Training loop, evaluation metrics and the run store."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from lamp_core.config import ConfigError, DataConfig, RunConfig, TrainConfig
from lamp_core.data import load
from lamp_core.evaluate import anomaly_scores, confusion_at, evaluate
from lamp_core.runner import compare_configs, run_config
from lamp_core.store import RunStore
from lamp_core.train import TrainResult, initial_model, resolve_device, train

TINY = RunConfig(data=DataConfig(max_train=48, max_test=120), train=TrainConfig(epochs=2, batch_size=16))


@pytest.fixture(scope="module")
def digits():
    return load(TINY.data)


def test_same_seed_same_result_on_cpu(digits):
    a = train(TINY, digits)
    b = train(TINY, digits)
    assert a.history == b.history
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k])
    c = train(TINY.with_train(seed=1), digits)
    assert c.history != a.history


def test_base_and_lamp_start_from_the_same_weights(digits):
    base_cfg, lamp_cfg = compare_configs(TINY)
    assert not base_cfg.train.lamp and lamp_cfg.train.lamp
    w0 = initial_model(base_cfg, 1, 28).state_dict()
    w1 = initial_model(lamp_cfg, 1, 28).state_dict()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    rb, rl = train(base_cfg, digits), train(lamp_cfg, digits)
    assert rb.history["loss"] != rl.history["loss"]


def test_should_stop_keeps_partial_history(digits):
    calls = {"n": 0}

    def stop_after_some_steps():
        calls["n"] += 1
        return calls["n"] > 4   # 48 images / 16 = 3 steps per epoch: stops in epoch 2

    res = train(TINY.with_train(epochs=5), digits, should_stop=stop_after_some_steps)
    assert res.stopped and res.epochs_done == 1 and len(res.history["loss"]) == 1 and res.steps == 4


def test_progress_and_per_epoch_auroc(digits):
    seen = []
    res = train(TINY.with_train(eval_every_epoch=True), digits, on_progress=seen.append)
    assert len(res.history["test_auroc"]) == 2 and all(0 <= v <= 1 for v in res.history["test_auroc"])
    assert seen and seen[-1]["epoch"] == 2 and seen[-1]["steps_total"] == 6


@pytest.mark.parametrize("opt", ["adam", "sgd", "rmsprop"])
@pytest.mark.parametrize("loss", ["l2", "l1", "ssim"])
def test_every_optimizer_and_loss_trains(digits, opt, loss):
    cfg = TINY.with_train(optimizer=opt, base_loss=loss, lamp=True, epochs=1, lr=1e-3)
    res = train(cfg, digits)
    assert np.isfinite(res.history["loss"]).all() and not res.diverged


def test_batch_size_one_and_patches(digits):
    res = train(TINY.with_train(batch_size=1, epochs=1).with_model(patches=2), digits)
    assert res.steps == 48


def test_bad_config_is_config_error(digits):
    with pytest.raises(ConfigError, match="eps"):
        train(TINY.with_train(eps=0.0), digits)
    with pytest.raises(ConfigError, match="patches"):
        train(TINY.with_model(patches=3), digits)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"


def test_evaluation_metrics(digits):
    res = train(TINY, digits)
    ev = evaluate(res.model(), digits)
    assert 0 <= ev.auroc <= 1 and len(ev.scores) == len(digits.test)
    assert ev.fpr[0] == 0 and ev.tpr[-1] == 1
    # scores are the per-image mean L2, whatever loss trained the model
    net = res.model()
    np.testing.assert_allclose(ev.scores, anomaly_scores(net, digits.test), rtol=1e-6)
    c = confusion_at(ev, ev.f1_threshold)
    assert sum(c.values()) == len(ev.scores)
    json.dumps(ev.to_dict())   # plain data, JSON-safe (no inf)


def test_perfect_scores_give_auroc_one():
    class Oracle(torch.nn.Module):
        """Reconstructs normal images perfectly and anomalous ones as black."""
        def forward(self, x):
            return x * (x.flatten(1).mean(1) < 0.5).float().view(-1, 1, 1, 1)

    from lamp_core.data.common import ADDataset
    x = torch.cat([torch.full((5, 1, 8, 8), 0.2), torch.full((5, 1, 8, 8), 0.8)])
    ds = ADDataset(name="toy", train=x[:5], test=x, test_labels=torch.tensor([0] * 5 + [1] * 5),
                   test_masks=torch.cat([torch.zeros(5, 1, 8, 8), torch.ones(5, 1, 8, 8)]))
    ev = evaluate(Oracle(), ds)
    assert ev.auroc == 1.0 and ev.pixel_auroc == 1.0 and ev.f1_max == 1.0


def _scored_set(normal_scores, anomalous_scores):
    """A toy test set whose per-image anomaly scores under a model that outputs zeros are
    exactly the given values (an image of constant sqrt(v) has mean squared error v)."""
    from lamp_core.data.common import ADDataset
    values = torch.tensor(list(normal_scores) + list(anomalous_scores), dtype=torch.float32)
    x = values.sqrt().view(-1, 1, 1, 1).expand(-1, 1, 8, 8).contiguous()
    labels = torch.tensor([0] * len(normal_scores) + [1] * len(anomalous_scores))
    return ADDataset(name="toy", train=x[:2], test=x, test_labels=labels)


class _Zeros(torch.nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def test_threshold_f1_separates_models_where_f1_max_cannot():
    """MNIST one-class has 10% normal test images: there the best F1 over thresholds is that of
    flagging everything (2·0.9/1.9 ≈ 0.947) for a detector that ranks at random too, while the F1
    at the 95th percentile of normal scores tells a random ranking from a good one."""
    rng = np.random.default_rng(0)
    random_ev = evaluate(_Zeros(), _scored_set(rng.uniform(0.1, 0.9, 20), rng.uniform(0.1, 0.9, 180)))
    good_ev = evaluate(_Zeros(), _scored_set(rng.uniform(0.1, 0.4, 20), rng.uniform(0.5, 0.9, 180)))
    flag_all = 2 * 0.9 / 1.9
    assert random_ev.f1_max >= flag_all - 1e-9 and good_ev.f1_max >= flag_all - 1e-9   # no difference to see
    assert random_ev.f1_at_normal_p95 < 0.3 < 0.99 < good_ev.f1_at_normal_p95
    # it is the F1 of the page's confusion matrix at the slider's start (95th percentile of normal scores)
    from lamp_core.evaluate import NORMAL_PERCENTILE, normal_percentile_threshold
    for ev in (random_ev, good_ev):
        c = confusion_at(ev, normal_percentile_threshold(ev.scores, ev.labels, NORMAL_PERCENTILE))
        assert ev.f1_at_normal_p95 == pytest.approx(2 * c["tp"] / (2 * c["tp"] + c["fp"] + c["fn"]))


def test_records_stored_before_the_threshold_f1_still_load_and_carry_it(tmp_path):
    store = RunStore(tmp_path / "store")
    first = run_config(TINY, store=store)
    path = store.folder(TINY) / "evaluation.json"
    old = json.loads(path.read_text())
    del old["f1_at_normal_p95"]                      # an entry written before the field existed
    path.write_text(json.dumps(old))
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # no "skipped unreadable entry"
        stored = store.get(TINY)
    assert stored.evaluation.f1_max == first.evaluation.f1_max
    assert stored.evaluation.f1_at_normal_p95 == pytest.approx(first.evaluation.f1_at_normal_p95)


def test_store_round_trip_and_reuse(tmp_path):
    store = RunStore(tmp_path / "store")
    first = run_config(TINY, store=store)
    assert not first.cached and store.has(TINY)
    second = run_config(TINY, store=store)
    assert second.cached and second.evaluation.auroc == first.evaluation.auroc
    assert second.result.history == first.result.history
    assert not list((tmp_path / "store").rglob("*.tmp"))
    ckpt = torch.load(store.folder(TINY) / "checkpoint.pt", weights_only=True)
    assert TrainResult.from_checkpoint(ckpt).config == TINY
    store.save_arrays(TINY, "surface", {"values": np.ones((2, 3))})
    assert store.load_arrays(TINY, "surface")["values"].shape == (2, 3)
    assert store.configs() == [TINY]


def test_store_skips_unreadable_entries(tmp_path):
    store = RunStore(tmp_path)
    run_config(TINY, store=store)
    (store.folder(TINY) / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        assert store.get(TINY) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert RunStore(tmp_path / "empty").get(TINY) is None


def test_stopped_runs_are_not_stored(tmp_path):
    store = RunStore(tmp_path)
    rec = run_config(TINY, store=store, should_stop=lambda: True)
    assert rec.result.stopped and rec.evaluation is None and not store.has(TINY)


def test_base_runs_are_shared_whatever_their_unused_lamp_fields(tmp_path):
    store = RunStore(tmp_path)
    run_config(TINY.with_train(eps=0.2, max_over="batch"), store=store)
    again = run_config(TINY.with_train(eps=0.05, max_over="sample", detach_max=True), store=store)
    assert again.cached
    lamp_cfg = TINY.with_train(lamp=True)
    assert not store.has(lamp_cfg)
