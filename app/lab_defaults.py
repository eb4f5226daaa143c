"""The app's default comparison, in a module of its own so that tools without Streamlit (the
classroom benchmark) use the very settings the app does."""
from __future__ import annotations

from lamp_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lamp_core.data import MNIST_SUBSET_DIR

# The app's default comparison: real MNIST offline (the subset shipped in assets/mnist_subset),
# digit 8 normal, a seeded 500 of its training images, the subset's 2,000 stratified test images,
# 28 px, 5 epochs, 3 seeds (so the spread over seeds is on screen from the first click). On a GPU
# the six runs train as one stack in the job queue; on the CPU one at a time, since stacking was
# measured not to pay at batch 32 (lamp_core/stack.py).
DEFAULT_CONFIG = RunConfig(data=DataConfig(dataset="mnist", data_root=str(MNIST_SUBSET_DIR), normal_class=8,
                                           image_size=28, max_train=500),
                           model=ModelConfig(), train=TrainConfig(epochs=5, batch_size=32))
DEFAULT_SEEDS = 3
