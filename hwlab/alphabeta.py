"""The alpha-beta (latency-bandwidth) model of a collective: t(n) = alpha + n / beta.

alpha is the fixed cost of one call (latency, seconds), beta the asymptotic bandwidth
(bytes/s, here the algorithm bandwidth: message bytes over time). The model's algbw
n / t(n) reaches beta / 2 at the knee n* = alpha * beta: below it a collective is
latency-bound, above it bandwidth-bound (the lab's "latency-vs-bandwidth knee").

Fit (robust, nothing dropped): the residual of a point is relative, r = t_fit / t - 1, so
an 8-byte call at 30 us weighs as much as a 256 MiB call at 0.5 s (a plain least-squares
fit on t would be decided by the largest sizes alone and leave alpha to chance). The
model is linear in (alpha, 1/beta), so each step is a weighted linear least-squares
solve; iteratively reweighted with Huber weights (k = 1.345, scale = 1.4826 x MAD of the
residuals) so that a few disturbed points (a noisy neighbour, a protocol switch) are
down-weighted rather than excluded. Every point keeps a weight, reported with the fit.
alpha < 0 (a curve that bends the other way) is clipped to 0 and said; a non-positive
slope (no bandwidth regime in the data) leaves beta and the knee undefined, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hwlab.io import fmt_sig

HUBER_K = 1.345
METHOD = (
    "t(n) = alpha + n/beta by iteratively reweighted least squares on relative residuals "
    "t_fit/t - 1 with Huber weights (k = 1.345, scale = 1.4826 MAD); no point dropped, "
    "down-weighted points listed"
)


@dataclass
class AlphaBetaFit:
    """Result of :func:`fit_alpha_beta`; beta in bytes/s (algbw), knee in bytes."""

    alpha_s: float
    beta_bps: float | None
    knee_bytes: float | None
    n_points: int
    rms_rel_residual: float
    max_abs_rel_residual: float
    weights: list[float] = field(default_factory=list)
    note: str | None = None
    method: str = METHOD

    def time_s(self, n: float) -> float:
        """Model time of an n-byte call."""
        return model_time_s(n, self.alpha_s, self.beta_bps)

    def downweighted(self, sizes: Sequence[float], below: float = 0.999) -> list[tuple]:
        """(size, weight) of every point the fit trusted less than fully."""
        return [(s, w) for s, w in zip(sizes, self.weights, strict=True) if w < below]


def model_time_s(n: float, alpha_s: float, beta_bps: float | None) -> float:
    """t(n) = alpha + n / beta (beta None or inf: latency only)."""
    if not beta_bps or not np.isfinite(beta_bps):
        return alpha_s
    return alpha_s + n / beta_bps


def knee_bytes(alpha_s: float, beta_bps: float | None) -> float | None:
    """n* = alpha * beta: the size at which algbw = beta / 2 (and t = 2 alpha)."""
    if beta_bps is None or not np.isfinite(beta_bps) or alpha_s <= 0:
        return None
    return alpha_s * beta_bps


def _wls(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """argmin_c sum w (x c - 1)^2 for design x (rows per point), target 1."""
    sw = np.sqrt(w)
    c, *_ = np.linalg.lstsq(x * sw[:, None], sw, rcond=None)
    return c


def _huber_weights(r: np.ndarray, k: float) -> np.ndarray:
    mad = np.median(np.abs(r - np.median(r)))
    scale = max(1.4826 * mad, 1e-9)
    u = np.abs(r) / scale
    return np.where(u <= k, 1.0, k / np.maximum(u, 1e-300))


def fit_alpha_beta(
    sizes_bytes: Sequence[float],
    times_s: Sequence[float],
    *,
    k: float = HUBER_K,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> AlphaBetaFit:
    """Fit t(n) = alpha + n / beta to measured (size, time) points (see module docstring)."""
    n = np.asarray(sizes_bytes, dtype=float)
    t = np.asarray(times_s, dtype=float)
    if n.shape != t.shape or n.ndim != 1:
        raise ValueError("sizes and times must be 1-D sequences of the same length")
    if len(n) < 2 or len(np.unique(n)) < 2:
        raise ValueError("the alpha-beta fit needs at least two distinct message sizes")
    if not (np.all(np.isfinite(t)) and np.all(t > 0) and np.all(n > 0)):
        raise ValueError("sizes and times must be positive and finite")
    x = np.column_stack([1.0 / t, n / t])  # (alpha, 1/beta) -> t_fit / t
    note = None
    w = np.ones_like(t)
    c = _wls(x, w)
    for _ in range(max_iter):
        r = x @ c - 1.0
        w = _huber_weights(r, k)
        c_new = _wls(x, w)
        done = np.allclose(c_new, c, rtol=tol, atol=0)
        c = c_new
        if done:
            break
    alpha, inv_beta = float(c[0]), float(c[1])
    if alpha < 0:  # refit the slope alone, same robust weighting
        note = f"alpha came out negative ({fmt_sig(alpha)} s) and was clipped to 0"
        alpha = 0.0
        xs = x[:, 1:]
        cs = _wls(xs, w)
        for _ in range(max_iter):
            w = _huber_weights(xs @ cs - 1.0, k)
            cs_new = _wls(xs, w)
            done = np.allclose(cs_new, cs, rtol=tol, atol=0)
            cs = cs_new
            if done:
                break
        inv_beta = float(cs[0])
    if inv_beta <= 0:
        note = (note + "; " if note else "") + (
            "time does not grow with size in these points: no bandwidth regime, beta and "
            "the knee are undefined"
        )
        beta = None
        inv_beta = 0.0
    else:
        beta = 1.0 / inv_beta
    r = (alpha + inv_beta * n) / t - 1.0
    return AlphaBetaFit(
        alpha_s=alpha,
        beta_bps=beta,
        knee_bytes=knee_bytes(alpha, beta),
        n_points=len(n),
        rms_rel_residual=float(np.sqrt(np.mean(r**2))),
        max_abs_rel_residual=float(np.max(np.abs(r))),
        weights=[float(v) for v in w],
        note=note,
    )
