"""The Ray executor on a small local Ray instance: same numbers as the local executor, results
filed by the driver, nothing redone. Few and small: starting Ray costs seconds.

Only the test that starts Ray needs it installed; the planning of Ray tasks (`ray_batches`,
`wants_gpu`) and the executor check are plain Python and run without it."""
from __future__ import annotations

import pytest

from lamp_core.config import ConfigError, DataConfig, RunConfig, TrainConfig
from lamp_core.store import RunStore
from lamp_core.sweep import SweepSpec, expand, ray_batches, run_sweep, wants_gpu

TINY = RunConfig(data=DataConfig(dataset="digits", max_train=16, max_test=30),
                 train=TrainConfig(epochs=1, batch_size=8, device="cpu"))


@pytest.mark.ray
@pytest.mark.slow
def test_ray_gives_the_local_numbers_and_resumes(tmp_path):
    ray = pytest.importorskip("ray")
    cfgs = expand(SweepSpec(base=TINY, grids=[{"train.seed": [0, 1], "train.lamp": [False, True]}]))
    local = run_sweep(cfgs, RunStore(tmp_path / "local"), executor="local", threads=1)
    store = RunStore(tmp_path / "ray")
    # a local instance with 2 CPUs; each task asks for 1 CPU and runs torch with 1 thread
    running_before = ray.is_initialized()        # True when another Ray test of this process ran first
    remote = run_sweep(cfgs, store, executor="ray", num_cpus=2, threads=1)
    # an instance the sweep started is shut down; one it found running is left running
    assert ray.is_initialized() == running_before
    assert remote.trained == 4 and remote.failed == 0
    for a, b in zip(local.runs, remote.runs):
        assert a.config == b.config
        assert a.evaluation.scores == b.evaluation.scores  # bit-identical: same seeds, same threads
        assert a.evaluation.auroc == b.evaluation.auroc
    assert all(store.has(c) for c in cfgs)                 # the driver filed every result
    again = run_sweep(cfgs, store, executor="ray", num_cpus=2)
    assert again.trained == 0 and all(r.cached for r in again.runs)
    # one task per run without stacking (stack=False) is `ray_batches` below, and stacked against
    # alone equal to float rounding is tests/test_sweep.py: another Ray start here would add seconds


def test_a_ray_task_gets_a_stack_not_a_run():
    cfgs = expand(SweepSpec(base=TINY, grids=[{"train.seed": [0, 1], "train.lamp": [False, True],
                                               "train.batch_size": [8, 4]}]))
    batches = ray_batches(cfgs, stack=True)
    assert sorted(len(b) for b in batches) == [4, 4]
    assert all(len({c.train.batch_size for c in b}) == 1 for b in batches)
    assert ray_batches(cfgs, stack=False) == [[c] for c in cfgs]
    big = [TINY.with_train(batch_size=512, seed=s) for s in range(3)]   # stacking does not pay there
    assert ray_batches(big, stack=True) == [[c] for c in big]


def test_ray_tasks_are_balanced_and_the_longest_start_first():
    """60 batch-1 runs at one thread's cap of 24 make three tasks of 20 (24 + 24 + 12 would leave
    one worker alone with the last); tasks of many small steps come before large-batch runs."""
    mnist = TINY.with_data(max_train=1000)
    cfgs = ([mnist.with_train(batch_size=128, seed=s) for s in range(4)]
            + [mnist.with_train(batch_size=1, seed=s) for s in range(60)])
    batches = ray_batches(cfgs, stack=True, threads=1)
    assert [len(b) for b in batches] == [20, 20, 20, 1, 1, 1, 1]
    assert [b[0].train.batch_size for b in batches] == [1, 1, 1, 128, 128, 128, 128]
    assert sorted(c.key() for b in batches for c in b) == sorted(c.key() for c in cfgs)


def test_gpu_requests_follow_the_run_device():
    assert wants_gpu(TINY.with_train(device="cuda"), cluster_gpus=0)
    assert wants_gpu(TINY.with_train(device="auto"), cluster_gpus=1)
    assert not wants_gpu(TINY.with_train(device="auto"), cluster_gpus=0)
    assert not wants_gpu(TINY.with_train(device="cpu"), cluster_gpus=4)


def test_unknown_executor_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="choose local or ray"):
        run_sweep([TINY], RunStore(tmp_path), executor="dask")
