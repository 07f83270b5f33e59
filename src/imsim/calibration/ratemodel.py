"""The pooled Poisson rate model: infant mortality of every state x race cell, with uncertainty.

Stage 1 of the calibration (:mod:`imsim.calibration.calibrate`). The infant mortality rate of every
state x race cell is ``log lambda[s, r] = mu_r + alpha_s + eps[s, r]`` with
``alpha_s ~ N(0, sigma_alpha^2)`` and ``eps ~ N(0, sigma_eps^2)`` (partial pooling towards the
national race rate x a state effect). The observations are counts of the *same* realised deaths
``Y[s, r] ~ Poisson(lambda B / 1000)``: the cell IMRs where published (pseudo-counts
``IMR x births / 1000``; births of a race within a state are *estimates*), the state all-race
totals (exact births) and the national race totals. Their joint likelihood is taken as Gaussian
with the Poisson covariance of the shared realised counts plus each source's own measurement error
(rounding; tier-3 secondary values +-0.4/1000), so a state total is not counted twice and a
suppressed cell is informed by its state total minus its siblings. Fitted by MAP (Fisher scoring
with analytic gradient and Hessian), ``sigma`` by empirical Bayes (Laplace marginal likelihood),
then a Laplace approximation gives K joint posterior draws of ``lambda`` for every cell.

The model knows nothing about files or targets: it takes plain arrays (:class:`RateData`, built
by :func:`imsim.calibration.observations.rate_data`) and returns a :class:`RateFit`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imsim.core.streams import generator

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054


@dataclass
class RateData:
    """Inputs of the rate model on an ``S x R`` grid (rates per 1,000 live births).

    ``obs`` is NaN where a cell has no observation; ``obs_sd`` is the sd (per 1,000) of the
    observation's measurement error *beyond* the Poisson noise of the deaths (rounding, secondary
    source). ``state_rate``/``race_rate`` (NaN where absent) are the all-race state and all-state
    race IMRs with their measurement sds.

    Attributes
    ----------
    births : numpy.ndarray
        ``[S, R]`` live births per cell over the fitted period.
    obs, obs_sd : numpy.ndarray
        float64 ``[S, R]``: observed cell IMR and its extra measurement sd, per 1,000.
    state_rate, state_sd : numpy.ndarray
        float64 ``[S]``: all-race IMR of each state and its sd, per 1,000.
    race_rate, race_sd : numpy.ndarray
        float64 ``[R]``: national IMR of each race and its sd, per 1,000.
    """

    births: np.ndarray
    obs: np.ndarray
    obs_sd: np.ndarray
    state_rate: np.ndarray
    state_sd: np.ndarray
    race_rate: np.ndarray
    race_sd: np.ndarray

    @property
    def shape(self):
        """The grid shape ``(S, R)``."""
        return self.births.shape


@dataclass
class RateFit:
    """Posterior of the cell rates (per 1,000): Laplace approximation around the MAP.

    Attributes
    ----------
    eta : numpy.ndarray
        float64 ``[S, R]``: MAP of the log rate (log of IMR per 1,000).
    cov_eta : numpy.ndarray
        float64 ``[S*R, S*R]``: posterior covariance of ``eta`` (state-major).
    mu : numpy.ndarray
        float64 ``[R]``: race log rates.
    alpha : numpy.ndarray
        float64 ``[S]``: state effects (log scale).
    sigma_alpha : float
        Sd of the state effects (log scale).
    sigma_eps : numpy.ndarray
        float64 ``[R]``: sd of the cell effects per race (log scale).
    draws : numpy.ndarray
        float64 ``[K, S, R]``: joint posterior draws of the rate, per 1,000 (mean-preserving:
        each cell's draws average ``exp(eta)``).
    log_ml : float
        Laplace log marginal likelihood at the final sigmas.
    iterations : int
        EM steps taken (0 when both sigmas were given).
    """

    eta: np.ndarray            # [S, R] MAP of log rate
    cov_eta: np.ndarray        # [S*R, S*R]
    mu: np.ndarray             # [R]
    alpha: np.ndarray          # [S]
    sigma_alpha: float
    sigma_eps: np.ndarray      # [R]
    draws: np.ndarray          # [K, S, R] rates per 1,000
    log_ml: float
    iterations: int

    @property
    def sd_eta(self) -> np.ndarray:
        """Posterior sd of the log rate, float64 ``[S, R]``."""
        return np.sqrt(np.diag(self.cov_eta)).reshape(self.eta.shape)

    @property
    def point(self) -> np.ndarray:
        """Point rate ``exp(eta_MAP)`` (the posterior median; the mean of the draws)."""
        return np.exp(self.eta)

    @property
    def lo(self) -> np.ndarray:
        """Lower 95% bound of the rate, ``exp(eta - 1.96 sd)``, per 1,000, ``[S, R]``."""
        return np.exp(self.eta - Z95 * self.sd_eta)

    @property
    def hi(self) -> np.ndarray:
        """Upper 95% bound of the rate, ``exp(eta + 1.96 sd)``, per 1,000, ``[S, R]``."""
        return np.exp(self.eta + Z95 * self.sd_eta)


class _RateProblem:
    """Observation design, covariance pieces and the Newton solve for fixed sigmas."""

    def __init__(self, data: RateData):
        S, R = data.shape
        self.S, self.R = S, R
        n = S * R
        self.n = n
        self.births = data.births.astype(float).ravel()
        rows, z, ve = [], [], []
        k1 = self.births / 1000.0
        for i in np.flatnonzero(~np.isnan(data.obs.ravel())):
            a = np.zeros(n)
            a[i] = 1.0
            rows.append(a)
            z.append(data.obs.ravel()[i] * k1[i])
            ve.append((data.obs_sd.ravel()[i] * k1[i]) ** 2)
        self.n_cell_obs = len(rows)
        grid = np.arange(n).reshape(S, R)
        for s in np.flatnonzero(~np.isnan(data.state_rate)):
            a = np.zeros(n)
            a[grid[s]] = 1.0
            b = k1[grid[s]].sum()
            rows.append(a)
            z.append(data.state_rate[s] * b)
            ve.append((data.state_sd[s] * b) ** 2)
        for r in np.flatnonzero(~np.isnan(data.race_rate)):
            a = np.zeros(n)
            a[grid[:, r]] = 1.0
            b = k1[grid[:, r]].sum()
            rows.append(a)
            z.append(data.race_rate[r] * b)
            ve.append((data.race_sd[r] * b) ** 2)
        self.A = np.array(rows)
        self.z = np.array(z)
        self.ve = np.maximum(np.array(ve), 1e-6)
        # theta = (mu[R], alpha[S], eps[S*R]); eta = L theta
        L = np.zeros((n, R + S + n))
        L[np.arange(n), (np.arange(n) % R)] = 1.0
        L[np.arange(n), R + np.arange(n) // R] = 1.0
        L[np.arange(n), R + S + np.arange(n)] = 1.0
        self.L = L
        self.s_of = np.arange(n) // R
        self.r_of = np.arange(n) % R
        rr = data.race_rate.copy()
        fallback = np.nanmedian(np.where(np.isnan(data.obs), np.nan, data.obs), axis=0) \
            if np.any(~np.isnan(data.obs)) else np.full(R, np.nan)
        rr = np.where(np.isnan(rr), fallback, rr)
        rr = np.where(np.isnan(rr) | (rr <= 0), 6.0, rr)
        self.mu0 = np.log(rr)

    def prior_precision(self, sigma_alpha, sigma_eps):
        S, R = self.S, self.R
        sig_e = np.broadcast_to(np.asarray(sigma_eps, float), (R,))
        p = np.concatenate([np.full(R, 1.0 / 10.0**2), np.full(S, 1.0 / sigma_alpha**2),
                            1.0 / sig_e[self.r_of] ** 2])
        return p

    def _pieces(self, theta):
        eta = self.L @ theta
        m = np.exp(eta) * self.births / 1000.0
        Sig = (self.A * m[None, :]) @ self.A.T + np.diag(self.ve)
        c = np.linalg.cholesky(Sig)
        r = self.z - self.A @ m
        Wr = _chol_solve(c, r)
        WA = _chol_solve(c, self.A)
        return eta, m, c, r, Wr, WA

    def _lhl(self, M):
        """L^T M L for the design L = [race one-hot | state one-hot | identity] (s-major)."""
        S, R, n = self.S, self.R, self.n
        MR = M.reshape(n, S, R).sum(axis=1)            # M @ Rm  [n, R]
        MS = M.reshape(n, S, R).sum(axis=2)            # M @ Sm  [n, S]
        out = np.empty((R + S + n, R + S + n))
        out[:R, :R] = MR.reshape(S, R, R).sum(axis=0)
        out[:R, R:R + S] = MS.reshape(S, R, S).sum(axis=0)
        out[R:R + S, R:R + S] = MS.reshape(S, R, S).sum(axis=1)
        out[:R, R + S:] = MR.T
        out[R:R + S, R + S:] = MS.T
        out[R + S:, R + S:] = M
        out[R + S:, :R] = MR
        out[R + S:, R:R + S] = MS
        out[R:R + S, :R] = out[:R, R:R + S].T
        return out

    def solve(self, sigma_alpha, sigma_eps, theta0=None, max_iter=60, tol=1e-8):
        """MAP by Fisher scoring (covariance re-evaluated at every step)."""
        P = self.prior_precision(sigma_alpha, sigma_eps)
        th0 = np.concatenate([self.mu0, np.zeros(self.S + self.n)])
        theta = th0.copy() if theta0 is None else theta0.copy()
        it = 0
        for it in range(1, max_iter + 1):
            eta, m, c, r, Wr, WA = self._pieces(theta)
            g_eta = -m * (self.A.T @ Wr)
            g = self.L.T @ g_eta + P * (theta - th0)
            H = self._lhl((m[:, None] * (self.A.T @ WA)) * m[None, :]) + np.diag(P)
            step = -np.linalg.solve(H, g)
            big = np.max(np.abs(self.L @ step))
            if big > 1.0:
                step = step / big
            theta = theta + step
            if np.max(np.abs(step)) < tol:
                break
        eta, m, c, r, Wr, WA = self._pieces(theta)
        H = self._lhl((m[:, None] * (self.A.T @ WA)) * m[None, :]) + np.diag(P)
        prior_q = np.sum(P * (theta - th0) ** 2)
        log_ml = (-0.5 * r @ Wr - np.sum(np.log(np.diag(c)))
                  - 0.5 * prior_q + 0.5 * np.sum(np.log(P))
                  - 0.5 * np.linalg.slogdet(H)[1])
        return theta, H, log_ml, it


def _chol_solve(c, b):
    from scipy.linalg import cho_solve

    return cho_solve((c, True), b)


def fit_rates(data: RateData, *, sigma_alpha: float | None = None, sigma_eps=None,
              sigma_eps_by_race: bool = True, draws: int = 200, seed: int = 0,
              max_em: int = 300, em_tol: float = 5e-4) -> RateFit:
    """Fit the rate model (see module docstring).

    The sigmas not given are estimated by empirical Bayes: EM on the Laplace approximation
    (``sigma^2 <- mean(posterior mean^2 + posterior variance)``), which climbs the Laplace
    marginal likelihood. Draws are joint (they keep the correlation between cells through
    ``mu`` and ``alpha``) and mean-preserving: the average draw of a cell is its point rate
    ``exp(eta_MAP)``.

    Parameters
    ----------
    data : RateData
        Observations on the ``S x R`` grid.
    sigma_alpha : float, optional
        Sd of the state effects (log scale); estimated when None.
    sigma_eps : float or array_like of float, optional
        Sd of the cell effects (log scale), scalar or ``[R]``; estimated when None.
    sigma_eps_by_race : bool
        Estimate one ``sigma_eps`` per race (else one for all).
    draws : int
        Number of posterior draws ``K``.
    seed : int
        Seed of the posterior draws (stream ``ratemodel_posterior``, keyed by draw index).
    max_em : int
        Maximum EM steps.
    em_tol : float
        Stop EM when no sigma changes by more than this relative amount (on the log scale).

    Returns
    -------
    RateFit
        The MAP, posterior covariance, sigmas and ``K`` draws.
    """
    with _blas_threads(1):
        prob = _RateProblem(data)
        R, S = prob.R, prob.S
        sa = 0.15 if sigma_alpha is None else float(sigma_alpha)
        se = np.full(R, 0.2) if sigma_eps is None else \
            np.broadcast_to(np.asarray(sigma_eps, float), (R,)).copy()
        theta = None
        em_steps = 0
        if sigma_alpha is None or sigma_eps is None:
            for em_steps in range(1, max_em + 1):
                theta, H, lml, _ = prob.solve(sa, se, theta)
                var = np.diag(np.linalg.inv(H))
                a_hat, e_hat = theta[R:R + S], theta[R + S:]
                old = np.concatenate([[sa], se])
                if sigma_alpha is None:
                    sa = float(np.sqrt(np.mean(a_hat**2 + var[R:R + S])))
                if sigma_eps is None:
                    q = e_hat**2 + var[R + S:]
                    if sigma_eps_by_race:
                        se = np.sqrt(np.bincount(prob.r_of, q, R) / np.bincount(prob.r_of, None, R))
                    else:
                        se = np.full(R, np.sqrt(q.mean()))
                sa = max(sa, 1e-3)
                se = np.maximum(se, 1e-3)
                new = np.concatenate([[sa], se])
                if np.max(np.abs(np.log(new / old))) < em_tol:
                    break
        theta, H, lml, it = prob.solve(sa, se, theta)
        cov_theta = np.linalg.inv(H)
        cov_theta = 0.5 * (cov_theta + cov_theta.T)
        cov_eta = prob.L @ cov_theta @ prob.L.T
        eta = (prob.L @ theta).reshape(S, R)
        chol = np.linalg.cholesky(cov_theta + 1e-12 * np.eye(len(theta)))
        # Posterior draw k is keyed by k (imsim.core.streams): more draws only append.
        zs = np.array([generator(seed, "ratemodel_posterior", k).standard_normal(len(theta))
                       for k in range(draws)]).reshape(draws, len(theta))
        eta_d = (theta[None, :] + zs @ chol.T) @ prob.L.T - 0.5 * np.diag(cov_eta)[None, :]
    return RateFit(eta=eta, cov_eta=cov_eta, mu=theta[:R], alpha=theta[R:R + S],
                   sigma_alpha=float(sa), sigma_eps=np.asarray(se, float),
                   draws=np.exp(eta_d).reshape(draws, S, R), log_ml=float(lml),
                   iterations=int(em_steps))


class _blas_threads:
    """Context manager: run OpenBLAS single-threaded (small matrices; threads only contend).

    Best effort through the ``*set_num_threads*`` symbols of the OpenBLAS copies numpy and
    scipy loaded; a no-op where they cannot be found.
    """

    def __init__(self, n: int = 1):
        self.n = n
        self.libs = []

    def __enter__(self):
        import ctypes

        try:
            paths = {line.split()[-1] for line in open("/proc/self/maps")
                     if "openblas" in line.lower() and line.strip().endswith(".so")}
        except OSError:
            return self
        for p in sorted(paths):
            try:
                lib = ctypes.CDLL(p)
            except OSError:
                continue
            for pre in ("scipy_openblas", "openblas"):
                for suf in ("64_", "_64_", ""):
                    get = getattr(lib, f"{pre}_get_num_threads{suf}", None)
                    put = getattr(lib, f"{pre}_set_num_threads{suf}", None)
                    if get is not None and put is not None:
                        get.restype = ctypes.c_int
                        old = get()
                        put(ctypes.c_int(self.n))
                        self.libs.append((put, old))
                        break
                else:
                    continue
                break
        return self

    def __exit__(self, *exc):
        import ctypes

        for put, old in self.libs:
            put(ctypes.c_int(old))
        return False
