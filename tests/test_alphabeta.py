"""The alpha-beta fit recovers known latency and bandwidth from synthetic times."""

import numpy as np
import pytest

from hwlab.alphabeta import fit_alpha_beta, knee_bytes, model_time_s

SIZES = np.array([8 * 2**i for i in range(26)], dtype=float)  # 8 B .. 256 MiB


@pytest.mark.parametrize(
    "alpha, beta",
    [(25e-6, 12e9), (5e-6, 370e9 / 1.75), (400e-6, 0.6e9), (1e-3, 50e6)],
)
def test_noise_free_times_give_alpha_and_beta_exactly(alpha, beta):
    t = alpha + SIZES / beta
    fit = fit_alpha_beta(SIZES, t)
    assert fit.alpha_s == pytest.approx(alpha, rel=1e-9)
    assert fit.beta_bps == pytest.approx(beta, rel=1e-9)
    assert fit.knee_bytes == pytest.approx(alpha * beta, rel=1e-9)
    assert fit.rms_rel_residual < 1e-9
    assert fit.note is None


@pytest.mark.parametrize("seed", range(5))
def test_noisy_times_with_outliers_are_recovered(seed):
    alpha, beta = 30e-6, 20e9
    rng = np.random.default_rng(seed)
    t = (alpha + SIZES / beta) * rng.lognormal(0.0, 0.05, SIZES.size)
    outliers = rng.choice(SIZES.size, 3, replace=False)
    t[outliers] *= rng.uniform(3, 10, 3)  # a noisy neighbour, now and then
    fit = fit_alpha_beta(SIZES, t)
    assert fit.alpha_s == pytest.approx(alpha, rel=0.10)
    assert fit.beta_bps == pytest.approx(beta, rel=0.10)
    # the disturbed points were down-weighted, not dropped
    assert len(fit.weights) == SIZES.size
    slow = {SIZES[i] for i in outliers}
    assert slow <= {s for s, _ in fit.downweighted(SIZES.tolist())}


def test_plain_least_squares_would_not_recover_alpha():
    """Why the relative residual: an absolute fit is decided by the big sizes alone."""
    alpha, beta = 30e-6, 20e9
    rng = np.random.default_rng(1)
    t = (alpha + SIZES / beta) * rng.lognormal(0.0, 0.05, SIZES.size)
    a_abs = np.polyfit(SIZES, t, 1)[1]
    assert abs(a_abs - alpha) / alpha > 0.5  # the naive intercept is far off
    assert fit_alpha_beta(SIZES, t).alpha_s == pytest.approx(alpha, rel=0.10)


def test_knee_is_where_half_the_bandwidth_is_reached():
    alpha, beta = 40e-6, 100e9
    n = knee_bytes(alpha, beta)
    assert n == pytest.approx(4e6)
    assert model_time_s(n, alpha, beta) == pytest.approx(2 * alpha)
    assert n / model_time_s(n, alpha, beta) == pytest.approx(beta / 2)


def test_negative_alpha_is_clipped_and_said():
    sizes = np.array([1024 * 2**i for i in range(15)], dtype=float)
    t = 1e-10 * sizes**1.15  # super-linear: the free intercept would come out negative
    fit = fit_alpha_beta(sizes, t)
    assert fit.alpha_s == 0.0
    assert "clipped" in fit.note
    assert fit.beta_bps > 0 and fit.knee_bytes is None


def test_no_bandwidth_regime_leaves_beta_undefined():
    t = np.full(10, 400e-6) * np.linspace(1.2, 0.9, 10)  # time falls with size
    fit = fit_alpha_beta(SIZES[:10], t)
    assert fit.beta_bps is None and fit.knee_bytes is None
    assert "undefined" in fit.note


@pytest.mark.parametrize(
    "sizes, times, match",
    [
        ([8], [1e-5], "two distinct"),
        ([8, 8], [1e-5, 2e-5], "two distinct"),
        ([8, 16], [1e-5, -1.0], "positive"),
        ([8, 16], [1e-5], "same length"),
    ],
)
def test_bad_input_is_named(sizes, times, match):
    with pytest.raises(ValueError, match=match):
        fit_alpha_beta(sizes, times)
