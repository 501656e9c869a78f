"""A long fit run as a steerable service: least squares by gradient descent over data shards.

Each step is one epoch: the gradient is computed over ``shards`` pieces of the data by the
actor's worker pool (``imap``), then the parameters move by ``lr`` times it. The fit reports
progress, reports improved parameters when the loss drops, checkpoints its state, and takes
``set`` (``lr``) and ``invoke`` (``best``, ``loss_at``) while it runs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

import plexa

_cache: dict[tuple[int, int, int, int, int], tuple[npt.NDArray[Any], npt.NDArray[Any]]] = {}


def _shard(
    seed: int, index: int, shards: int, n_samples: int, n_params: int
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Shard ``index`` of the synthetic data, made in the worker (and cached there)."""
    key = (seed, index, shards, n_samples, n_params)
    if key not in _cache:
        rng = np.random.default_rng([seed, index])
        true = np.random.default_rng(seed).normal(size=n_params)
        rows = n_samples // shards
        x = rng.normal(size=(rows, n_params))
        y = x @ true + 0.1 * rng.normal(size=rows)
        _cache[key] = (x, y)
    return _cache[key]


def shard_gradient(
    task: tuple[int, int, int, int, int, npt.NDArray[Any]],
) -> tuple[npt.NDArray[Any], float]:
    """Gradient and squared error of one shard at ``params`` (a worker-pool task)."""
    seed, index, shards, n_samples, params = task[0], task[1], task[2], task[3], task[5]
    x, y = _shard(seed, index, shards, n_samples, task[4])
    residual = x @ params - y
    return x.T @ residual, float(residual @ residual)


class LeastSquaresFit(plexa.Actor):
    """Fits ``n_params`` linear coefficients to ``n_samples`` noisy samples."""

    def setup(
        self,
        n_params: int = 200,
        n_samples: int = 40_000,
        epochs: int = 2000,
        lr: float = 0.5,
        shards: int = 4,
        seed: int = 0,
        pace_s: float = 0.0,
    ) -> None:
        self.n_params, self.n_samples, self.epochs = n_params, n_samples, epochs
        self.lr, self.shards, self.seed, self.pace_s = lr, shards, seed, pace_s
        self.params = np.zeros(n_params)
        self.epoch = 0
        self.best_loss = float("inf")

    def run_step(self) -> None:
        if self.epoch >= self.epochs:
            self.progress(self.epoch, self.epochs, "done")
            time.sleep(0.05)
            return
        tasks = [
            (self.seed, i, self.shards, self.n_samples, self.n_params, self.params)
            for i in range(self.shards)
        ]
        grad = np.zeros(self.n_params)
        sse = 0.0
        for g, e in self.imap(shard_gradient, tasks, ordered=False):
            grad += g
            sse += e
            self.safe_point()
        loss = sse / self.n_samples
        self.params = self.params - self.lr * grad / self.n_samples
        self.epoch += 1
        self.progress(self.epoch, self.epochs, f"loss {loss:.4g}")
        if loss < self.best_loss * 0.999:
            self.best_loss = loss
            self.improved({"epoch": self.epoch, "loss": loss}, score=-loss)
        if self.pace_s:
            time.sleep(self.pace_s)

    def get_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "params": self.params, "best_loss": self.best_loss}

    def set_state(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.params = np.array(state["params"])
        self.best_loss = state["best_loss"]
        self.log.info("resuming at epoch %d (best loss %.4g)", self.epoch, self.best_loss)

    def on_set(self, key: str, value: Any) -> None:
        super().on_set(key, value)
        self.log.info("%s set to %r at epoch %d", key, value, self.epoch)

    @plexa.command
    def best(self) -> dict[str, Any]:
        """The best loss so far and the epoch reached."""
        return {"epoch": self.epoch, "best_loss": self.best_loss}

    @plexa.command
    def loss_at(self, scale: float = 1.0) -> float:
        """The loss at the current parameters times ``scale`` (computed here, not in the pool)."""
        total = 0.0
        for i in range(self.shards):
            x, y = _shard(self.seed, i, self.shards, self.n_samples, self.n_params)
            r = x @ (self.params * scale) - y
            total += float(r @ r)
        return total / self.n_samples
