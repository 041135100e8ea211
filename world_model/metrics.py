"""Metrics shared by the world-model evaluations: image similarity (PSNR, SSIM) of generated vs true
frames, and the bootstrap interval of a mean (``scipy.stats.bootstrap``) every paired comparison
uses. A leaf module (numpy, scipy): the evaluations, the autoencoder, the held-out diagnostics and
``agent.comparison.paired_comparison`` import it, and it imports none of them.
"""

from __future__ import annotations

import numpy as np


def psnr(a, b, data_range: float = 255.0, max_db: float = 100.0) -> float:
    """Mean over frames of ``10 log10(data_range^2 / MSE)``; frames (..., H, W, C) or (H, W[, C])."""
    a, b = _pair(a, b)
    mse = ((a - b) ** 2).reshape(a.shape[0], -1).mean(1)
    with np.errstate(divide="ignore"):
        v = 10.0 * np.log10(data_range ** 2 / mse)
    return float(np.minimum(v, max_db).mean())


def _gaussian(win: int, sigma: float) -> np.ndarray:
    x = np.arange(win, dtype=np.float64) - (win - 1) / 2.0
    g = np.exp(-x * x / (2.0 * sigma * sigma))
    return g / g.sum()


def ssim(a, b, data_range: float = 255.0, win: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> float:
    """Mean SSIM (Wang et al. 2004) over frames and channels with a Gaussian window.

    ``SSIM = (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))``,
    ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``, local statistics from a separable ``win`` x ``win``
    Gaussian (sigma 1.5) over the valid region; the window shrinks (odd) for images smaller than it.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    a, b = _pair(a, b)  # (N, H, W, C) float64
    win = int(min(win, a.shape[1], a.shape[2]))
    win -= 1 - win % 2
    g = _gaussian(win, sigma)

    def filt(z):  # valid separable filtering over H then W
        z = sliding_window_view(z, win, axis=1) @ g
        return sliding_window_view(z, win, axis=2) @ g

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_a, mu_b = filt(a), filt(b)
    saa = filt(a * a) - mu_a ** 2
    sbb = filt(b * b) - mu_b ** 2
    sab = filt(a * b) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return float(m.mean())


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[None, ..., None], b[None, ..., None]
    elif a.ndim == 3:
        a, b = a[None], b[None]
    return a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:])


def bootstrap_mean(x, n_boot: int = 10_000, seed: int | np.random.Generator = 0) -> tuple[list[float], np.ndarray]:
    """The 95% percentile bootstrap interval of the mean of ``x`` and the ``n_boot`` bootstrap means.

    ``scipy.stats.bootstrap`` (method "percentile"): ``x`` resampled with replacement ``n_boot``
    times, the interval is the 2.5% and 97.5% quantiles of the resampled means. ``seed``: an int,
    or a generator whose stream the draws continue (several metrics from one seed). One value:
    every resample is that value, so the interval is [x, x]; none: nan.
    """
    from scipy.stats import bootstrap

    x = np.asarray(x, np.float64).reshape(-1)
    if len(x) == 0:
        return [float("nan"), float("nan")], np.zeros(0)
    if len(x) == 1:
        return [float(x[0]), float(x[0])], np.full(int(n_boot), float(x[0]))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    res = bootstrap((x,), np.mean, n_resamples=int(n_boot), method="percentile", vectorized=True,
                    random_state=rng)
    ci = res.confidence_interval
    return [float(ci.low), float(ci.high)], res.bootstrap_distribution


def bootstrap_ci(x, n_boot: int = 10_000, seed: int | np.random.Generator = 0) -> list[float]:
    """95% percentile bootstrap interval of the mean of ``x`` (``bootstrap_mean``); nan for fewer
    than 2 values."""
    if len(np.asarray(x).reshape(-1)) < 2:
        return [float("nan"), float("nan")]
    return bootstrap_mean(x, n_boot, seed)[0]
