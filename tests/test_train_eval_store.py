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
