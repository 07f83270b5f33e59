"""Calibration: a small-cell-aware fit of the baseline to observed 2013-2015 rates, with uncertainty.

The fit has two stages (see ``docs/calibration.md``):

1. **Rates** (:func:`fit_rates`). The infant mortality rate of every state x race cell,
   ``log lambda[s, r] = mu_r + alpha_s + eps[s, r]`` with ``alpha_s ~ N(0, sigma_alpha^2)`` and
   ``eps ~ N(0, sigma_eps^2)`` (partial pooling towards the national race rate x a state effect).
   The observations are counts of the *same* realised deaths ``Y[s, r] ~ Poisson(lambda B / 1000)``:
   the cell IMRs where published (pseudo-counts ``IMR x births / 1000``; births of a race within a
   state are *estimates*), the state all-race totals (exact births) and the national race totals.
   Their joint likelihood is taken as Gaussian with the Poisson covariance of the shared realised
   counts plus each source's own measurement error (rounding; tier-3 secondary values +-0.4/1000),
   so a state total is not counted twice and a suppressed cell is informed by its state total minus
   its siblings. Fitted by MAP (Fisher scoring with analytic gradient and Hessian), ``sigma`` by
   empirical Bayes (Laplace marginal likelihood), then a Laplace approximation gives K joint
   posterior draws of ``lambda`` for every cell.
2. **Structure** (:func:`fit_structure`). A gestational-age shift per race (and per state where a
   state preterm rate exists) so preterm rates match, and per-race cause shares (neonatal, SUID,
   other postneonatal) from the NMR/PNMR and SUID targets and the packaged cohort structure.

:class:`CalibratedTargets` holds both and is saved to ``calibration/<name>/``;
:func:`imsim.fit.direct_fit` with ``targets=`` solves the per-cell multipliers that make the
expected engine reproduce them for any effect draw. :func:`load_calibration` finds a saved fit.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .constants import ALL, GA_BANDS, RACES, STATES
from .errors import InputError

N_S = len(STATES)
N_R = len(RACES)
S_INDEX = {s: i for i, s in enumerate(STATES)}
R_INDEX = {r: i for i, r in enumerate(RACES)}
Z95 = 1.959963984540054
BASE_PERIOD = (2013, 2015)
#: Files that make a loadable calibration (the rest of a fit folder is its report).
FIT_FILES = ("calibration.json", "cells.csv", "races.csv", "states.csv", "imr_draws.csv")
#: Files a fit folder also holds (reports).
REPORT_FILES = ("fit_report.csv", "fit_report.png", "backtest.csv", "backtest.png")

DEFAULT_SETTINGS = {
    "draws": 200,                 # K posterior draws per cell
    "seed": 20130101,             # seed of the posterior draws
    "tier3_sd": 0.2,              # extra sd (per 1,000) of a tier-3 (secondary) cell IMR
    "tier3_rel_sd": 0.05,         # ... plus this relative sd ("more for small groups")
    "tier3_bias": 0.0,            # added to tier-3 values before fitting (REPORT: ~0.1 low)
    "derived_sd": 0.02,           # sd (per 1,000) of a tier-2 derived state IMR
    "national_sd": 0.005,         # sd (per 1,000) of a national race IMR (the anchors)
    "closure_kappa": 0.0,         # extra variance (x deaths) of state totals and national race
    "close_national": True,       # scale national race IMRs so their deaths sum to the states'
    "sigma_eps_by_race": True,    # one sigma_eps per race (else one for all)
    "sigma_alpha": None,          # fix instead of empirical Bayes
    "sigma_eps": None,
}


# =============================================================================================
# Stage 1: rates
# =============================================================================================

@dataclass
class RateData:
    """Inputs of the rate model on an ``S x R`` grid (rates per 1,000 live births).

    ``obs`` is NaN where a cell has no observation; ``obs_sd`` is the sd (per 1,000) of the
    observation's measurement error *beyond* the Poisson noise of the deaths (rounding, secondary
    source). ``state_rate``/``race_rate`` (NaN where absent) are the all-race state and all-state
    race IMRs with their measurement sds.
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
        return self.births.shape


@dataclass
class RateFit:
    """Posterior of the cell rates (per 1,000): Laplace approximation around the MAP."""

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
        return np.sqrt(np.diag(self.cov_eta)).reshape(self.eta.shape)

    @property
    def point(self) -> np.ndarray:
        """Point rate ``exp(eta_MAP)`` (the posterior median; the mean of the draws)."""
        return np.exp(self.eta)

    @property
    def lo(self) -> np.ndarray:
        return np.exp(self.eta - Z95 * self.sd_eta)

    @property
    def hi(self) -> np.ndarray:
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
        rng = np.random.default_rng(seed)
        chol = np.linalg.cholesky(cov_theta + 1e-12 * np.eye(len(theta)))
        zs = rng.standard_normal((draws, len(theta)))
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


# =============================================================================================
# Observations: packaged targets, optionally replaced by a user's WONDER import
# =============================================================================================

@dataclass
class Observations:
    """Everything the fit reads, on the 51 x 5 grid (rates per 1,000; NaN = none)."""

    births: np.ndarray                 # [51, 5] pooled 2013-2015 births used by the fit
    cell: pd.DataFrame                 # one row per state x race with an observed IMR
    state: pd.DataFrame                # state all-race IMR rows
    race: pd.DataFrame                 # national race IMR rows (+ race ALL)
    imr_year: pd.DataFrame             # state x year IMR (back-test)
    preterm: pd.DataFrame
    suid: pd.DataFrame
    nmr_pnmr: pd.DataFrame
    ga_share: pd.DataFrame
    targets_hash: str
    targets_file: str | None = None
    user_rows: int = 0
    notes: list = field(default_factory=list)
    closure: float = 1.0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _packaged_targets() -> pd.DataFrame:
    from .data import load_table

    return load_table("targets")


def _packaged_targets_hash() -> str:
    from importlib import resources

    return _sha(resources.files("imsim.data").joinpath("targets.csv").read_bytes())


def _poisson_interval(deaths, births, rounding=0.0):
    """Exact (Garwood) 95% interval of a rate per 1,000 from deaths and births."""
    from scipy.stats import chi2

    d = np.asarray(deaths, float)
    b = np.asarray(births, float)
    lo = np.where(d > 0, chi2.ppf(0.025, 2 * d) / 2, 0.0)
    hi = chi2.ppf(0.975, 2 * (d + 1)) / 2
    return 1000 * lo / b - rounding, 1000 * hi / b + rounding


def load_observations(targets_file: str | os.PathLike | None = None,
                      settings: dict | None = None) -> Observations:
    """Read the packaged targets (and a user targets CSV from ``imsim data import-wonder``).

    User rows (measure ``imr``) for 2013-2015 replace the packaged IMR of the cells they cover
    (state x race, state ALL, national race); single years 2013, 2014 and 2015 of one cell are
    pooled when the pooled row is absent; 2016/2017 state all-race rows replace the back-test
    observations; ``births`` rows (2013-2015 pooled or the three single years) replace the births
    the fit weights that cell by. A ``suppressed``/``missing`` IMR row removes the cell's packaged
    value (the cell is then estimated from pooling and its state total). Other periods are
    ignored with a note. Errors raise :class:`InputError` naming file and row; nothing is written.
    """
    from .baseline import get_baseline

    st = {**DEFAULT_SETTINGS, **(settings or {})}
    t = _packaged_targets()
    t["source_tier"] = t["source_tier"].astype(float)
    births = get_baseline().pooled_cells().births.reshape(N_S, N_R).astype(float)
    period = f"{BASE_PERIOD[0]}-{BASE_PERIOD[1]}"
    imr = t[(t["target"] == "imr") & (t["period"].astype(str) == period)].copy()
    imr["origin"] = "packaged"
    imr_year = t[t["target"] == "imr_year"].copy()
    imr_year["year"] = imr_year["period"].astype(int)
    imr_year["origin"] = "packaged"
    hashes = [_packaged_targets_hash()]
    notes: list[str] = []
    user_rows = 0
    if targets_file is not None:
        path = Path(targets_file)
        if not path.is_file():
            raise InputError("targets file not found", file=str(targets_file))
        from .wonder import validate_targets

        user = validate_targets(str(path))
        user["row"] = np.arange(len(user)) + 2
        hashes.append(_sha(path.read_bytes()))
        imr, imr_year, births, notes, user_rows = _apply_user_targets(
            user, str(path), imr, imr_year, births)
    cell = imr[(imr["state"] != ALL) & (imr["race"] != ALL)].copy()
    state = imr[(imr["state"] != ALL) & (imr["race"] == ALL)].copy()
    race = imr[imr["state"] == ALL].copy()

    def extra_sd(df):
        tier = df["source_tier"].to_numpy(float)
        val = df["value"].to_numpy(float)
        rnd = np.where(tier >= 3, 0.05, 0.005) / math.sqrt(3.0)
        t3 = np.where(tier >= 3, np.hypot(st["tier3_sd"], st["tier3_rel_sd"] * val), 0.0)
        nat = (df["state"] == ALL).to_numpy()
        t2 = np.where(tier == 2, np.where(nat, st["national_sd"], st["derived_sd"]), 0.0)
        return np.sqrt(rnd**2 + t3**2 + t2**2)

    for df in (cell, state, race):
        df["fit_value"] = df["value"] + np.where(df["source_tier"] >= 3, st["tier3_bias"], 0.0)
        df["meas_sd"] = extra_sd(df) if len(df) else []
    closure = 1.0
    if st["close_national"] and len(state) == N_S:
        rr = race[race["race"].isin(RACES)]
        if len(rr) == N_R:
            tot_s = float(np.sum(state["fit_value"].to_numpy(float) * _group_births(state, births)))
            tot_r = float(np.sum(rr["fit_value"].to_numpy(float) * _group_births(rr, births)))
            closure = tot_s / tot_r
            race["fit_value"] = np.where(race["race"].isin(RACES), race["fit_value"] * closure,
                                         race["fit_value"])
            notes.append(f"national race IMRs scaled by {closure:.4f} so that their deaths add up to "
                         "the state totals (the five groups do not close: births of mothers of "
                         "other or unknown race are allocated to them)")
    for df in (state, race):
        # closure variance kappa * deaths, as an sd per 1,000 of the group's births
        b = _group_births(df, births)
        d = df["value"].to_numpy(float) * b / 1000.0
        df["meas_sd"] = np.sqrt(df["meas_sd"].to_numpy(float) ** 2
                                + st["closure_kappa"] * d / np.maximum(b / 1000.0, 1e-9) ** 2)
    # 95% interval of the observation: its own (Poisson + rounding) interval, widened by the
    # secondary-source uncertainty for tier-3 values (REPORT: +-0.4 per 1,000).
    for df in (cell, state, race):
        if not len(df):
            continue
        val = df["value"].to_numpy(float)
        lo = df["lo"].to_numpy(float)
        hi = df["hi"].to_numpy(float)
        w = np.where(df["source_tier"] >= 3, Z95 * np.hypot(st["tier3_sd"], st["tier3_rel_sd"] * val), 0.0)
        df["poisson_lo"], df["poisson_hi"] = lo, hi
        df["obs_lo"] = val - np.hypot(val - lo, w)
        df["obs_hi"] = val + np.hypot(hi - val, w)
    return Observations(
        births=births, cell=cell.reset_index(drop=True), state=state.reset_index(drop=True),
        race=race.reset_index(drop=True), imr_year=imr_year.reset_index(drop=True),
        preterm=t[t["target"] == "preterm_rate"].reset_index(drop=True),
        suid=t[t["target"] == "suid_rate"].reset_index(drop=True),
        nmr_pnmr=t[t["target"].isin(["nmr", "pnmr"])].reset_index(drop=True),
        ga_share=t[t["target"] == "ga_death_share"].reset_index(drop=True),
        targets_hash=_sha("|".join(hashes).encode()) if len(hashes) > 1 else hashes[0],
        targets_file=None if targets_file is None else str(targets_file),
        user_rows=user_rows, notes=notes, closure=closure)


def _group_births(df, births):
    out = np.zeros(len(df))
    for i, (s, r) in enumerate(zip(df["state"], df["race"])):
        if s != ALL:
            out[i] = births[S_INDEX[s]].sum()
        elif r in R_INDEX:
            out[i] = births[:, R_INDEX[r]].sum()
        else:
            out[i] = births.sum()
    return out


def _apply_user_targets(user, name, imr, imr_year, births):
    notes = []
    used = 0
    births = births.copy()
    y0, y1 = BASE_PERIOD
    base_years = set(range(y0, y1 + 1))
    for col in ("rate", "deaths", "births"):
        user[col] = pd.to_numeric(user[col], errors="coerce")
    # pool single years 2013, 2014, 2015 of a cell when no pooled row exists
    rows = []
    pooled_keys = {(r.state, r.race, r.measure) for r in user.itertuples()
                   if r.year_start == y0 and r.year_end == y1}
    singles = user[(user["year_start"] == user["year_end"]) & user["year_start"].isin(base_years)]
    for (s, r, meas), g in singles.groupby(["state", "race", "measure"], sort=False):
        if (s, r, meas) in pooled_keys or set(g["year_start"]) != base_years:
            continue
        ok = g["flag"].isin(["ok", "unreliable"]).all()
        deaths = g["deaths"].sum() if g["deaths"].notna().all() else np.nan
        b = g["births"].sum() if g["births"].notna().all() else np.nan
        rate = 1000 * deaths / b if ok and b > 0 and deaths == deaths else np.nan
        rows.append({"state": s, "race": r, "year_start": y0, "year_end": y1, "measure": meas,
                     "deaths": deaths, "births": b, "rate": rate,
                     "flag": "ok" if ok else "suppressed", "row": int(g["row"].min())})
    if rows:
        user = pd.concat([user, pd.DataFrame(rows)], ignore_index=True)
    imr = imr.set_index(["state", "race"], drop=False)
    new_year_rows = []
    for r in user.itertuples():
        where = f"row {r.row}"
        pooled = r.year_start == y0 and r.year_end == y1
        if r.measure == "births":
            if pooled and r.state != ALL and r.race != ALL and r.births == r.births:
                if r.births <= 0:
                    raise InputError("births must be positive for a fitted cell", file=name, where=where)
                births[S_INDEX[r.state], R_INDEX[r.race]] = float(r.births)
                used += 1
            continue
        # measure imr
        if pooled:
            if r.flag in ("suppressed", "missing") or r.rate != r.rate:
                if (r.state, r.race) in imr.index:
                    imr = imr.drop(index=(r.state, r.race))
                notes.append(f"{name} {where}: {r.state} {r.race} {r.flag}; packaged value dropped")
                used += 1
                continue
            b = r.births if r.births == r.births and r.births > 0 else np.nan
            d = r.deaths if r.deaths == r.deaths else (r.rate * b / 1000 if b == b else np.nan)
            if b == b and d == d:
                lo, hi = _poisson_interval(d, b, 0.0005)
            else:
                lo, hi = r.rate * 0.9, r.rate * 1.1
                notes.append(f"{name} {where}: no deaths/births; assumed +-10% interval")
            rec = {"target": "imr", "state": r.state, "race": r.race, "period": f"{y0}-{y1}",
                   "value": float(r.rate), "unit": "per 1,000 live births", "deaths": d,
                   "births": b, "lo": float(lo), "hi": float(hi), "source_tier": 1.0,
                   "source": f"user targets {name}", "note": f"{name} {where} ({r.flag})",
                   "origin": "user"}
            if (r.state, r.race) in imr.index:
                imr = imr.drop(index=(r.state, r.race))
            imr = pd.concat([imr, pd.DataFrame([rec]).set_index(["state", "race"], drop=False)])
            used += 1
        elif r.year_start == r.year_end and r.state != ALL and r.race == ALL \
                and r.year_start in (2013, 2014, 2015, 2016, 2017) and r.rate == r.rate \
                and r.flag in ("ok", "unreliable"):
            b = r.births if r.births == r.births and r.births > 0 else np.nan
            d = r.deaths if r.deaths == r.deaths else np.nan
            lo, hi = (_poisson_interval(d, b, 0.005) if b == b and d == d
                      else (r.rate * 0.9, r.rate * 1.1))
            new_year_rows.append({"target": "imr_year", "state": r.state, "race": ALL,
                                  "period": str(r.year_start), "year": int(r.year_start),
                                  "value": float(r.rate), "deaths": d, "births": b,
                                  "lo": float(lo), "hi": float(hi), "source_tier": 1.0,
                                  "origin": "user", "note": f"{name} {where}"})
            used += 1
        else:
            notes.append(f"{name} {where}: {r.measure} {r.state} {r.race} "
                         f"{r.year_start}-{r.year_end} not used (the fit uses {y0}-{y1} cells "
                         "and 2013-2017 state totals)")
    if new_year_rows:
        ny = pd.DataFrame(new_year_rows)
        keys = set(zip(ny["state"], ny["year"]))
        keep = [(s, y) not in keys for s, y in zip(imr_year["state"], imr_year["year"])]
        imr_year = pd.concat([imr_year[keep], ny], ignore_index=True)
    if used == 0:
        raise InputError("no usable rows: the file needs measure 'imr' rows for 2013-2015 "
                         "(state x race, state ALL or national race), single years 2013-2017 "
                         "by state, or 2013-2015 'births' rows", file=name)
    return imr.reset_index(drop=True), imr_year, births, notes, used


def rate_data(obs: Observations) -> RateData:
    """The rate model's inputs from :class:`Observations`."""
    y = np.full((N_S, N_R), np.nan)
    sd = np.zeros((N_S, N_R))
    for r in obs.cell.itertuples():
        y[S_INDEX[r.state], R_INDEX[r.race]] = r.fit_value
        sd[S_INDEX[r.state], R_INDEX[r.race]] = r.meas_sd
    srate = np.full(N_S, np.nan)
    ssd = np.zeros(N_S)
    for r in obs.state.itertuples():
        srate[S_INDEX[r.state]] = r.fit_value
        ssd[S_INDEX[r.state]] = r.meas_sd
    rrate = np.full(N_R, np.nan)
    rsd = np.zeros(N_R)
    for r in obs.race.itertuples():
        if r.race in R_INDEX:
            rrate[R_INDEX[r.race]] = r.fit_value
            rsd[R_INDEX[r.race]] = r.meas_sd
    return RateData(obs.births, y, sd, srate, ssd, rrate, rsd)


# =============================================================================================
# Stage 2: gestational age and cause structure
# =============================================================================================

def _logit(p):
    p = np.asarray(p, float)
    return np.log(p) - np.log1p(-p)


def _expit(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def preterm_targets(obs: Observations) -> dict:
    """Preterm (<37 wk) targets for the 2013-2015 fit (fractions).

    Race: the 2014-2015 pooled national values (2013 obstetric-estimate rates do not exist);
    ``ALL`` likewise; groups without a published rate share one value that makes the national
    rate match. States: the published state values (2016/2017, March of Dimes) moved to 2014-2015
    by the national trend on the log-odds scale, averaged over years.
    """
    pt = obs.preterm
    nat = pt[pt["state"] == ALL]
    pooled = nat[nat["period"].astype(str) == "2014-2015"]
    race = {r.race: r.value / 100 for r in pooled.itertuples()}
    nat_all_year = {str(r.period): r.value / 100 for r in nat[nat["race"] == ALL].itertuples()
                    if len(str(r.period)) == 4}
    ref = race.get(ALL, 0.096)
    states: dict[str, list] = {}
    for r in pt[(pt["state"] != ALL) & (pt["race"] == ALL)].itertuples():
        y = str(r.period)
        if r.state not in S_INDEX or y not in nat_all_year:
            continue
        adj = _expit(_logit(r.value / 100) - (_logit(nat_all_year[y]) - _logit(ref)))
        states.setdefault(r.state, []).append((float(adj), r))
    return {"race": race, "state": {k: float(np.mean([a for a, _ in v])) for k, v in states.items()},
            "state_rows": states, "all": ref}


def fit_ga_shift(baseline, obs: Observations, births: np.ndarray,
                 engine_check: bool = True) -> tuple[np.ndarray, dict]:
    """Log-odds shift ``[51, 5]`` of every GA cut so preterm rates match (see preterm_targets)."""
    tg = preterm_targets(obs)
    pt0 = baseline.ga_cum_target[:, 3]                       # current race preterm (fraction)
    w = births.astype(float)
    delta = np.zeros(N_R)
    gamma = np.zeros(N_S)
    known = np.array([r in tg["race"] for r in RACES])
    from scipy.optimize import brentq

    def cell_pt():
        return _expit(_logit(pt0)[None, :] + delta[None, :] + gamma[:, None])

    for _ in range(30):
        old = np.concatenate([delta, gamma])
        for ri, rname in enumerate(RACES):
            if not known[ri]:
                continue

            def f(x, ri=ri, rname=rname):
                p = _expit(_logit(pt0[ri]) + x + gamma)
                return np.sum(p * w[:, ri]) / w[:, ri].sum() - tg["race"][rname]
            delta[ri] = brentq(f, -5, 5)
        if (~known).any():
            def g(x):
                d = delta.copy()
                d[~known] = _logit(x) - _logit(pt0[~known])
                p = _expit(_logit(pt0)[None, :] + d[None, :] + gamma[:, None])
                return np.sum(p * w) / w.sum() - tg["all"]
            x = brentq(g, 0.02, 0.4)
            delta[~known] = _logit(x) - _logit(pt0[~known])
        for st_name, target in tg["state"].items():
            si = S_INDEX[st_name]

            def h(x, si=si, target=target):
                p = _expit(_logit(pt0) + delta + x)
                return np.sum(p * w[si]) / w[si].sum() - target
            gamma[si] = brentq(h, -5, 5)
        if np.max(np.abs(np.concatenate([delta, gamma]) - old)) < 1e-10:
            break
    shift = delta[None, :] + gamma[:, None]
    target_cell = cell_pt()
    # The analytic shift assumes the cut-point solve hits P(GA < 37) exactly; measure it with the
    # engine at point effects and correct cell by cell (a few Newton steps on the log-odds), so
    # the calibration hits the preterm targets as the engine computes them.
    measured = None
    if engine_check:
        for _ in range(4):
            measured = _engine_preterm(baseline, shift)
            err = _logit(target_cell) - _logit(np.clip(measured, 1e-9, 1 - 1e-9))
            if np.max(np.abs(err)) < 1e-6:
                break
            shift = shift + err
    info = {"delta_race": delta, "gamma_state": gamma, "targets": tg,
            "cell_preterm": target_cell, "engine_preterm": measured,
            "engine_correction": shift - (delta[None, :] + gamma[:, None])}
    return shift, info


def _engine_preterm(baseline, shift: np.ndarray) -> np.ndarray:
    """P(GA < 37 wk) per cell ``[51, 5]`` from the expected engine with GA shift ``shift``."""
    from .engines import expected
    from .evidence import EvidenceLibrary
    from .fit import Fit
    from .model import build_tables

    cells = baseline.pooled_cells()
    fit = Fit(np.repeat(shift[:, :, None], 5, axis=2), np.ones((3, N_S, N_R)))
    params = baseline.params(cells, EvidenceLibrary.load().point(), fit)
    out = expected(build_tables(params))
    b = out[:, :6].sum(axis=1)
    return (out[:, :4].sum(axis=1) / np.maximum(b, 1e-12)).reshape(N_S, N_R)


def suid_targets(obs: Observations) -> dict:
    """SUID per 1,000 by race for 2013-2015: linear in time between the published years
    (2009/2011 and 2017) evaluated at 2014; one year only: that year. Returns
    ``{race: (value, lo, hi, note)}``; lo/hi span the published values used (and their own lo/hi)."""
    out = {}
    for race, g in obs.suid[obs.suid["state"] == ALL].groupby("race"):
        g = g.assign(y=g["period"].astype(int)).sort_values("y")
        if race == ALL:
            g = g[g["y"].between(2013, 2015)] if g["y"].between(2013, 2015).any() else g
        if len(g) >= 2:
            a, b = g.iloc[-2], g.iloc[-1]
            v = a.value + (b.value - a.value) * (2014 - a.y) / (b.y - a.y)
            lo = min(a.lo, b.lo, v)
            hi = max(a.hi, b.hi, v)
            note = f"interpolated to 2014 between {a.y} ({a.value:g}) and {b.y} ({b.value:g})"
        else:
            a = g.iloc[-1]
            v, lo, hi = a.value, a.lo, a.hi
            note = f"{a.y} value"
        out[race] = (float(v), float(lo), float(hi), note)
    return out


def cause_shares(baseline, obs: Observations, race_imr: np.ndarray) -> tuple[np.ndarray, dict]:
    """Target shares ``[5 races, 3 causes]`` of infant deaths (neonatal, SUID, other postneonatal).

    Neonatal: the packaged cohort structure (deaths by race x cause, 2010-2013 cohorts) with one
    common odds factor so that the national share equals the 2015-cohort NMR / (NMR + PNMR).
    SUID: the race's SUID rate (:func:`suid_targets`) over its national IMR. Other postneonatal:
    the rest.
    """
    from .data import load_table

    ga = load_table("ga_structure")
    neo = np.zeros(N_R)
    tot = np.zeros(N_R)
    for ri, r in enumerate(RACES):
        sub = ga[ga["race"] == r]
        neo[ri] = sub["deaths_neonatal"].sum()
        tot[ri] = sub[["deaths_neonatal", "deaths_suid", "deaths_other_postneonatal"]].to_numpy().sum()
    share0 = neo / tot
    nm = obs.nmr_pnmr
    nmr = nm[(nm["target"] == "nmr") & (nm["state"] == ALL) & (nm["race"] == ALL)]
    pnmr = nm[(nm["target"] == "pnmr") & (nm["state"] == ALL) & (nm["race"] == ALL)]
    coh_n = nmr[nmr["period"].astype(str).str.contains("2015")]
    coh_p = pnmr[pnmr["period"].astype(str).str.contains("2015")]
    w = race_imr * obs.births.sum(axis=0)                     # deaths by race
    info = {"share_cohort": share0}
    if len(coh_n) and len(coh_p):
        target = coh_n.value.iloc[0] / (coh_n.value.iloc[0] + coh_p.value.iloc[0])
        from scipy.optimize import brentq

        k = brentq(lambda x: np.sum(w * _expit(_logit(share0) + x)) / w.sum() - target, -3, 3)
        share_neo = _expit(_logit(share0) + k)
        info.update(neonatal_target=target, neonatal_log_odds=k)
    else:
        share_neo = share0
    su = suid_targets(obs)
    share_suid = np.array([su[r][0] / race_imr[ri] if r in su else np.nan
                           for ri, r in enumerate(RACES)])
    if np.isnan(share_suid).any():    # no race value: the cohort share
        for ri, r in enumerate(RACES):
            if np.isnan(share_suid[ri]):
                sub = ga[ga["race"] == r]
                share_suid[ri] = sub["deaths_suid"].sum() / tot[ri]
    other = 1.0 - share_neo - share_suid
    if (other <= 0.02).any():
        raise ValueError("cause shares leave no room for other postneonatal deaths")
    info["suid_targets"] = su
    return np.stack([share_neo, share_suid, other], axis=1), info


# =============================================================================================
# The calibrated targets: what a run loads
# =============================================================================================

@dataclass
class CalibratedTargets:
    """Calibrated targets on the 51 x 5 grid that :func:`imsim.fit.direct_fit` reproduces.

    ``imr`` is the point (posterior median, = mean of the draws) IMR per 1,000 of every cell;
    ``imr_lo``/``imr_hi`` its 95% posterior interval; ``imr_draws[K, 51, 5]`` joint posterior
    draws; ``cause_share[5, 3]`` the share of deaths by cause per race (neonatal, SUID, other
    postneonatal); ``ga_shift[51, 5]`` the log-odds shift of every GA cut; ``cells`` a table per
    cell (observation, tier, births, pooled); ``meta`` data and targets hashes, settings, sigmas.
    """

    imr: np.ndarray
    imr_lo: np.ndarray
    imr_hi: np.ndarray
    imr_draws: np.ndarray
    cause_share: np.ndarray
    ga_shift: np.ndarray
    cells: pd.DataFrame
    meta: dict
    path: str | None = None

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "calibration"))

    @property
    def n_draws(self) -> int:
        return int(self.imr_draws.shape[0])

    def cell_imr(self, draw: int | None = None) -> np.ndarray:
        """IMR per 1,000 ``[51, 5]``: the point (``draw=None``) or posterior draw ``draw % K``."""
        if draw is None:
            return self.imr
        return self.imr_draws[int(draw) % self.n_draws]

    def ga_shift_cuts(self) -> np.ndarray:
        """``[51, 5, 5]``: the same shift on every GA cut (the form :class:`Fit` holds)."""
        return np.repeat(self.ga_shift[:, :, None], 5, axis=2)

    @property
    def stale(self) -> bool:
        """True when the packaged data changed since this fit (its data hash differs)."""
        from .data import data_hash

        return self.meta.get("data_hash") != data_hash()

    # -- persistence --------------------------------------------------------------------------
    def save(self, out: str | os.PathLike) -> Path:
        """Write the fit files (:data:`FIT_FILES`) into folder ``out`` (created)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        cells = self.cells.copy()
        cells.to_csv(out / "cells.csv", index=False, float_format="%.6g")
        races = pd.DataFrame({"race": RACES, "share_neonatal": self.cause_share[:, 0],
                              "share_suid": self.cause_share[:, 1],
                              "share_other_postneonatal": self.cause_share[:, 2]})
        for k, v in self.meta.get("race_columns", {}).items():
            races[k] = v
        races.to_csv(out / "races.csv", index=False, float_format="%.6g")
        states = pd.DataFrame({"state": STATES})
        for k, v in self.meta.get("state_columns", {}).items():
            states[k] = v
        states.to_csv(out / "states.csv", index=False, float_format="%.6g")
        cols = [f"{s}.{r}" for s in STATES for r in RACES]
        draws = pd.DataFrame(self.imr_draws.reshape(self.n_draws, -1), columns=cols)
        draws.insert(0, "draw", np.arange(self.n_draws))
        draws.to_csv(out / "imr_draws.csv", index=False, float_format="%.5g")
        meta = {k: v for k, v in self.meta.items() if k not in ("race_columns", "state_columns")}
        (out / "calibration.json").write_text(json.dumps(meta, indent=2, default=_json_default) + "\n",
                                              encoding="utf-8")
        return out

    @classmethod
    def load(cls, folder) -> CalibratedTargets:
        """Read a fit folder (a path or an ``importlib.resources`` traversable)."""
        folder_s = str(folder)

        def read_csv(name):
            with folder.joinpath(name).open("r", encoding="utf-8") as fh:
                return pd.read_csv(fh, keep_default_na=False, na_values=[""])

        try:
            meta = json.loads(folder.joinpath("calibration.json").read_text(encoding="utf-8"))
            cells = read_csv("cells.csv")
            races = read_csv("races.csv")
            states = read_csv("states.csv")
            draws = read_csv("imr_draws.csv")
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise InputError(f"not a readable calibration folder ({exc}); expected "
                             f"{', '.join(FIT_FILES)}", file=folder_s) from None
        try:
            idx_s = cells["state"].map(S_INDEX).to_numpy()
            idx_r = cells["race"].map(R_INDEX).to_numpy()
            grid = {}
            for col in ("imr", "imr_lo", "imr_hi", "ga_shift"):
                g = np.full((N_S, N_R), np.nan)
                g[idx_s, idx_r] = cells[col].to_numpy(float)
                grid[col] = g
            cols = [f"{s}.{r}" for s in STATES for r in RACES]
            d = draws[cols].to_numpy(float).reshape(len(draws), N_S, N_R)
            races = races.set_index("race").loc[list(RACES)]
            share = races[["share_neonatal", "share_suid", "share_other_postneonatal"]].to_numpy(float)
        except (KeyError, ValueError) as exc:
            raise InputError(f"calibration folder is incomplete or malformed ({exc})",
                             file=folder_s) from None
        if any(np.isnan(v).any() for v in grid.values()) or np.isnan(d).any() or (d <= 0).any():
            raise InputError("calibration has missing or non-positive cells", file=folder_s)
        meta["race_columns"] = {c: races[c].to_numpy() for c in races.columns
                                if not c.startswith("share_")}
        meta["state_columns"] = {c: states[c].to_numpy() for c in states.columns if c != "state"}
        return cls(grid["imr"], grid["imr_lo"], grid["imr_hi"], d, share, grid["ga_shift"], cells,
                   meta, path=folder_s)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _packaged_default():
    from importlib import resources

    return resources.files("imsim.data").joinpath("calibration").joinpath("default")


def load_calibration(name_or_path: str | os.PathLike | None = None) -> CalibratedTargets | None:
    """Find and load a calibration.

    ``None`` or ``"default"``: ``./calibration/default/`` when the working directory has one,
    else the copy packaged with imsim (``imsim/data/calibration/default``). ``"none"`` or
    ``"direct"``: ``None`` (the caller uses the direct fit). A name: ``./calibration/<name>/``.
    Otherwise a folder path. A missing or malformed folder raises :class:`InputError`; a fit made
    from other packaged data loads with a warning (``.stale`` is True).
    """
    if name_or_path is not None and str(name_or_path).lower() in ("none", "direct"):
        return None
    if name_or_path is None or str(name_or_path) == "default":
        local = Path("calibration") / "default"
        if (local / "calibration.json").is_file():
            cal = CalibratedTargets.load(local)
        else:
            pkg = _packaged_default()
            if not pkg.joinpath("calibration.json").is_file():
                return None
            cal = CalibratedTargets.load(pkg)
            cal.path = "packaged:imsim/data/calibration/default"
    else:
        p = Path(name_or_path)
        if not (p / "calibration.json").is_file():
            alt = Path("calibration") / str(name_or_path)
            if (alt / "calibration.json").is_file():
                p = alt
            else:
                raise InputError("no calibration here (expected a folder with calibration.json "
                                 "written by 'imsim calibrate')", file=str(name_or_path))
        cal = CalibratedTargets.load(p)
    if cal.stale:
        warnings.warn(f"calibration {cal.path} was fitted to other data (data hash "
                      f"{cal.meta.get('data_hash')}); refit with 'imsim calibrate'", stacklevel=2)
    return cal


# =============================================================================================
# Calibrate: fit, report, write
# =============================================================================================

def build_targets(obs: Observations, settings: dict | None = None, name: str = "default",
                  rate_fit: RateFit | None = None) -> tuple[CalibratedTargets, dict]:
    """Fit both stages to ``obs``; return the targets and fit diagnostics."""
    from .baseline import get_baseline
    from .data import data_hash

    st = {**DEFAULT_SETTINGS, **(settings or {})}
    t0 = time.perf_counter()
    rd = rate_data(obs)
    rf = rate_fit or fit_rates(rd, sigma_alpha=st["sigma_alpha"], sigma_eps=st["sigma_eps"],
                               sigma_eps_by_race=st["sigma_eps_by_race"], draws=st["draws"],
                               seed=st["seed"])
    t_rates = time.perf_counter() - t0
    baseline = get_baseline()
    births = obs.births
    point = rf.point
    race_imr = (point * births).sum(axis=0) / births.sum(axis=0)
    ga_shift, ga_info = fit_ga_shift(baseline, obs, births)
    share, c_info = cause_shares(baseline, obs, race_imr)
    obs_val = np.full((N_S, N_R), np.nan)
    obs_lo = np.full((N_S, N_R), np.nan)
    obs_hi = np.full((N_S, N_R), np.nan)
    tier = np.full((N_S, N_R), np.nan)
    for r in obs.cell.itertuples():
        i, j = S_INDEX[r.state], R_INDEX[r.race]
        obs_val[i, j], obs_lo[i, j], obs_hi[i, j], tier[i, j] = r.value, r.obs_lo, r.obs_hi, r.source_tier
    ss, rr = np.meshgrid(np.arange(N_S), np.arange(N_R), indexing="ij")
    ss, rr = ss.ravel(), rr.ravel()
    cells = pd.DataFrame({
        "state": np.asarray(STATES)[ss], "race": np.asarray(RACES)[rr],
        "births": births[ss, rr].astype(np.int64),
        "observed": obs_val[ss, rr], "observed_lo": obs_lo[ss, rr], "observed_hi": obs_hi[ss, rr],
        "source_tier": tier[ss, rr], "pooled": np.isnan(obs_val[ss, rr]),
        "imr": point[ss, rr], "imr_lo": rf.lo[ss, rr], "imr_hi": rf.hi[ss, rr],
        "log_sd": rf.sd_eta[ss, rr], "ga_shift": ga_shift[ss, rr],
        "preterm": ga_info["cell_preterm"][ss, rr],
    })
    tg = ga_info["targets"]
    meta = {
        "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "imsim_version": _version(),
        "data_hash": data_hash(),
        "targets_hash": obs.targets_hash,
        "targets_file": obs.targets_file,
        "user_rows": obs.user_rows,
        "settings": st,
        "period": f"{BASE_PERIOD[0]}-{BASE_PERIOD[1]}",
        "sigma_alpha": rf.sigma_alpha,
        "sigma_eps": dict(zip(RACES, map(float, rf.sigma_eps))),
        "log_marginal_likelihood": rf.log_ml,
        "em_iterations": rf.iterations,
        "closure_factor": obs.closure,
        "neonatal_share_target": c_info.get("neonatal_target"),
        "preterm_targets": {"race": tg["race"], "all": tg["all"], "state": tg["state"]},
        "suid_targets": {k: v[0] for k, v in c_info["suid_targets"].items()},
        "notes": obs.notes,
        "rate_fit_seconds": round(t_rates, 2),
        "race_columns": {"mu": rf.mu, "ga_shift_race": ga_info["delta_race"],
                         "imr_point": race_imr,
                         "preterm_target": [tg["race"].get(r, np.nan) for r in RACES]},
        "state_columns": {"alpha": rf.alpha, "ga_shift_state": ga_info["gamma_state"],
                          "preterm_target": [tg["state"].get(s, np.nan) for s in STATES]},
    }
    cal = CalibratedTargets(point, rf.lo, rf.hi, rf.draws, share, ga_shift, cells, meta)
    return cal, {"rate_fit": rf, "ga": ga_info, "cause": c_info}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("imsim")
    except Exception:  # noqa: BLE001 - not installed
        return "unknown"


def modelled_counts(cal: CalibratedTargets, effects: dict | None = None, baseline=None,
                    year_births: int | None = None, draw: int | None = None):
    """Expected counts ``[255, N_OUT]`` of the pooled cells (or one year's births) under ``cal``."""
    from .baseline import get_baseline
    from .engines import expected
    from .evidence import EvidenceLibrary
    from .fit import direct_fit
    from .model import build_tables

    baseline = baseline or get_baseline()
    effects = effects or EvidenceLibrary.load().point()
    fit = direct_fit(baseline, effects, targets=cal, draw=draw)
    cells = baseline.pooled_cells()
    if year_births is not None:
        cells.births = baseline.births[int(year_births)].ravel().astype(np.int64)
    params = baseline.params(cells, effects, fit)
    return cells, expected(build_tables(params))


def fit_report(cal: CalibratedTargets, obs: Observations, counts=None) -> pd.DataFrame:
    """One row per target (see docs/calibration.md); ``modelled`` from the expected engine."""
    from .kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS

    if counts is None:
        _, counts = modelled_counts(cal)
    births = counts[:, OUT_BIRTHS:OUT_BIRTHS + N_BANDS].sum(axis=1).reshape(N_S, N_R)
    dc = counts[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].reshape(N_S, N_R, 3, N_BANDS)
    deaths = dc.sum(axis=(2, 3))
    preterm_b = counts[:, OUT_BIRTHS:OUT_BIRTHS + 4].sum(axis=1).reshape(N_S, N_R)

    def rate(num, den, k=1000.0):
        return k * num / np.maximum(den, 1e-12)

    rows = []

    def add(target, state, race, period, observed, lo, hi, modelled, tier, pooled, note="",
            extra=None):
        within = (np.nan if observed is None or observed != observed
                  else bool(lo <= modelled <= hi))
        row = {"target": target, "state": state, "race": race, "period": period,
               "observed": observed, "observed_lo": lo, "observed_hi": hi, "modelled": modelled,
               "within_interval": within, "rel_error": (modelled / observed - 1.0)
               if observed == observed and observed else np.nan,
               "source_tier": tier, "pooled": pooled, "note": note}
        row.update(extra or {})
        rows.append(row)

    period = f"{BASE_PERIOD[0]}-{BASE_PERIOD[1]}"
    cells = cal.cells.set_index(["state", "race"])
    cobs = obs.cell.set_index(["state", "race"])
    for si, s in enumerate(STATES):
        for ri, r in enumerate(RACES):
            c = cells.loc[(s, r)]
            m = rate(deaths[si, ri], births[si, ri])
            extra = {"posterior_lo": c.imr_lo, "posterior_hi": c.imr_hi, "births": births[si, ri]}
            if (s, r) in cobs.index:
                o = cobs.loc[(s, r)]
                extra.update(poisson_lo=o.poisson_lo, poisson_hi=o.poisson_hi,
                             within_poisson_interval=bool(o.poisson_lo <= m <= o.poisson_hi))
                add("imr", s, r, period, o.value, o.obs_lo, o.obs_hi, m, o.source_tier, False,
                    "" if o.source_tier < 3 else "tier 3: interval widened by +-0.4/1000 source "
                    "uncertainty", extra)
            else:
                add("imr", s, r, period, np.nan, np.nan, np.nan, m, np.nan, True,
                    "no published value (suppressed/unreliable or not retrieved): estimate from "
                    "partial pooling and the state total", extra)
    sobs = obs.state.set_index("state")
    for si, s in enumerate(STATES):
        m = rate(deaths[si].sum(), births[si].sum())
        if s in sobs.index:
            o = sobs.loc[s]
            add("imr", s, ALL, period, o.value, o.obs_lo, o.obs_hi, m, o.source_tier, False)
    robs = obs.race.set_index("race")
    for ri, r in enumerate(list(RACES) + [ALL]):
        m = rate(deaths.sum() if r == ALL else deaths[:, ri].sum(),
                 births.sum() if r == ALL else births[:, ri].sum())
        if r in robs.index:
            o = robs.loc[r]
            add("imr", ALL, r, period, o.value, o.obs_lo, o.obs_hi, m, o.source_tier, False,
                f"national; fitted to {o.fit_value:.4g} (closure x{obs.closure:.4f})"
                if r != ALL else "national")
    # preterm
    tg = preterm_targets(obs)
    pt = obs.preterm
    for o in pt[(pt["state"] == ALL) & (pt["period"].astype(str) == "2014-2015")].itertuples():
        if o.race == ALL:
            m = rate(preterm_b.sum(), births.sum(), 100.0)
        else:
            ri = R_INDEX[o.race]
            m = rate(preterm_b[:, ri].sum(), births[:, ri].sum(), 100.0)
        add("preterm_rate", ALL, o.race, "2014-2015", o.value, o.lo, o.hi, m, o.source_tier, False,
            "2013-2015 fit; obstetric estimate 2014-2015 (2013 not comparable)")
    for s, lst in tg["state_rows"].items():
        si = S_INDEX[s]
        m = rate(preterm_b[si].sum(), births[si].sum(), 100.0)
        for adj, o in lst:
            add("preterm_rate", s, ALL, str(o.period), o.value, o.lo, o.hi, m, o.source_tier, False,
                f"out of period; fitted to the trend-adjusted 2014-2015 value "
                f"{100 * tg['state'][s]:.2f}", {"fitted_target": 100 * tg["state"][s]})
    for ri, r in enumerate(RACES):
        ptr = 100 * np.mean(cal.meta["race_columns"]["preterm_target"][ri]) \
            if "race_columns" in cal.meta else np.nan
        if r not in tg["race"]:
            m = rate(preterm_b[:, ri].sum(), births[:, ri].sum(), 100.0)
            add("preterm_rate", ALL, r, "2014-2015", np.nan, np.nan, np.nan, m, np.nan, True,
                "no published rate: common value of the groups without one, set so that the "
                "national rate matches", {"fitted_target": ptr})
    # SUID
    su = suid_targets(obs)
    for r, (v, lo, hi, note) in su.items():
        if r == ALL:
            m = rate(dc[:, :, 1].sum(), births.sum())
        else:
            ri = R_INDEX[r]
            m = rate(dc[:, ri, 1].sum(), births[:, ri].sum())
        add("suid_rate", ALL, r, "2013-2015", v, lo, hi, m, 1.0, False, note)
    # NMR / PNMR
    for o in obs.nmr_pnmr.itertuples():
        if o.state != ALL:
            continue
        c = [0] if o.target == "nmr" else [1, 2]
        if o.race == ALL:
            m = rate(dc[:, :, c].sum(), births.sum())
        else:
            ri = R_INDEX[o.race]
            m = rate(dc[:, ri][:, c].sum(), births[:, ri].sum())
        add(o.target, ALL, o.race, str(o.period), o.value, o.lo, o.hi, m, o.source_tier, False,
            "modelled = 2013-2015" + ("" if "2015" in str(o.period) else
                                     f"; observed is {o.period} (out of period)"))
    # GA death shares (band by order within race, as in targets.csv)
    gs = obs.ga_share
    for race, g in gs.groupby("race", sort=False):
        if race == ALL:
            d_band = dc.sum(axis=(0, 1, 2))
        else:
            d_band = dc[:, R_INDEX[race]].sum(axis=(0, 1))
        share = d_band / d_band.sum()
        n = float(g["deaths"].sum())
        for b, o in enumerate(g.itertuples()):
            if b >= N_BANDS:
                break
            se = math.sqrt(o.value * (1 - o.value) / max(n, 1.0))
            add("ga_death_share", ALL, race, str(o.period), o.value, max(o.value - Z95 * se, 0.0),
                o.value + Z95 * se, share[b], o.source_tier, False,
                "not fitted directly (follows the packaged cohort structure); multinomial interval",
                {"ga_band": GA_BANDS[b]})
    df = pd.DataFrame(rows)
    first = ["target", "state", "race", "ga_band", "period", "observed", "observed_lo",
             "observed_hi", "modelled", "within_interval", "source_tier", "pooled"]
    for c in first:
        if c not in df.columns:
            df[c] = np.nan
    return df[first + [c for c in df.columns if c not in first]]


def fit_quality(report: pd.DataFrame) -> dict:
    """The figures the issue asks for, from a fit report."""
    cellr = report[(report["target"] == "imr") & (report["state"] != ALL) & (report["race"] != ALL)
                   & report["observed"].notna()]
    nat = report[(report["target"] == "imr") & (report["state"] == ALL) & (report["race"] != ALL)]
    pt = report[(report["target"] == "preterm_rate") & (report["state"] == ALL)
                & report["observed"].notna() & (report["race"] != ALL)]
    su = report[(report["target"] == "suid_rate") & (report["race"] != ALL)]
    st = report[(report["target"] == "imr") & (report["state"] != ALL) & (report["race"] == ALL)]
    outside = cellr[~cellr["within_interval"].astype(bool)]
    return {
        "cells_observed": int(len(cellr)),
        "cells_within_interval": float(cellr["within_interval"].astype(bool).mean()),
        "cells_within_poisson_interval": float(cellr["within_poisson_interval"].astype(bool).mean()),
        "cells_outside": [f"{r.state} {r.race}: observed {r.observed:.2f} "
                          f"[{r.observed_lo:.2f}, {r.observed_hi:.2f}], modelled {r.modelled:.2f}"
                          for r in outside.itertuples()],
        "states_within_interval": float(st["within_interval"].astype(bool).mean()),
        "states_max_abs_rel_error": float(st["rel_error"].abs().max()),
        "national_race_max_abs_rel_error": float(nat["rel_error"].abs().max()),
        "national_race_rel_error": dict(zip(nat["race"], nat["rel_error"].round(5))),
        "preterm_race_max_abs_rel_error": float(pt["rel_error"].abs().max()),
        "suid_race_max_abs_rel_error": float(su["rel_error"].abs().max()),
        "suid_race_rel_error": dict(zip(su["race"], su["rel_error"].round(5))),
    }


def plot_fit_report(report: pd.DataFrame, path) -> None:
    """Observed vs modelled with 95% intervals (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5), gridspec_kw={"width_ratios": [2.2, 1, 1]})
    ax = axes[0]
    colors = dict(zip(RACES, ("#4c72b0", "#c44e52", "#55a868", "#8172b2", "#ccb974")))
    cellr = report[(report["target"] == "imr") & (report["state"] != ALL) & (report["race"] != ALL)]
    for r in RACES:
        d = cellr[(cellr["race"] == r) & cellr["observed"].notna()]
        ax.errorbar(d["observed"], d["modelled"],
                    xerr=[d["observed"] - d["observed_lo"], d["observed_hi"] - d["observed"]],
                    yerr=[d["modelled"] - d["posterior_lo"], d["posterior_hi"] - d["modelled"]],
                    fmt="o", ms=3, lw=0.6, alpha=0.75, color=colors[r], label=r)
        u = cellr[(cellr["race"] == r) & cellr["observed"].isna()]
        if len(u):
            ax.plot(np.full(len(u), 1.2), u["modelled"], "x", color=colors[r], ms=4, alpha=0.8)
    lim = [1, 25]
    ax.plot(lim, lim, "k-", lw=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1, 25)
    ax.set_ylim(1, 25)
    ax.set_xlabel("observed IMR 2013-2015 (95% interval of the observation)")
    ax.set_ylabel("calibrated IMR (95% posterior interval)")
    ax.set_title("State x race IMR per 1,000 (x at left: no published value)")
    ax.legend(fontsize=8)
    ax = axes[1]
    nat = report[(report["target"] == "imr") & (report["state"] == ALL)]
    y = np.arange(len(nat))
    ax.errorbar(nat["observed"], y, xerr=[nat["observed"] - nat["observed_lo"],
                                          nat["observed_hi"] - nat["observed"]],
                fmt="o", color="k", label="observed")
    ax.plot(nat["modelled"], y, "D", color="#c44e52", label="modelled", ms=5, alpha=0.8)
    ax.set_yticks(y, nat["race"])
    ax.set_title("National IMR by race")
    ax.legend(fontsize=8)
    ax = axes[2]
    oth = report[report["target"].isin(["preterm_rate", "suid_rate", "nmr", "pnmr"])
                 & (report["state"] == ALL) & report["observed"].notna()]
    y = np.arange(len(oth))
    rel = oth["modelled"] / oth["observed"]
    ax.errorbar(np.ones(len(oth)), y, xerr=[1 - oth["observed_lo"] / oth["observed"],
                                            oth["observed_hi"] / oth["observed"] - 1],
                fmt="|", color="k", label="observed interval")
    ax.plot(rel, y, "D", color="#c44e52", ms=5, label="modelled / observed")
    ax.set_yticks(y, [f"{t} {r} {p}" for t, r, p in zip(oth["target"], oth["race"], oth["period"])],
                  fontsize=7)
    ax.axvline(1, color="k", lw=0.5)
    ax.set_title("Preterm, SUID, NMR/PNMR (ratio)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def calibrate(targets_file: str | os.PathLike | None = None,
              out: str | os.PathLike | None = "calibration/default", *,
              settings: dict | None = None, backtest: bool = True, package_copy: bool = False,
              log=None) -> tuple[CalibratedTargets, dict]:
    """Fit, report and (if ``out``) write a calibration folder atomically.

    Everything is written into a temporary folder beside ``out`` and moved into place at the end,
    so a failure (bad targets file: :class:`InputError`) leaves nothing behind. Returns the
    targets and a summary (fit quality, timings, back-test metrics).
    """
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    name = Path(out).name if out else "calibration"
    obs = load_observations(targets_file, settings)
    log(f"targets: {len(obs.cell)} state x race IMRs, {len(obs.state)} state totals, "
        f"{len(obs.race)} national race IMRs" + (f"; {obs.user_rows} rows from {targets_file}"
                                                 if targets_file else ""))
    cal, diag = build_targets(obs, settings, name=name)
    log(f"rate model: sigma_alpha {cal.meta['sigma_alpha']:.3f}, sigma_eps "
        + ", ".join(f"{k} {v:.3f}" for k, v in cal.meta["sigma_eps"].items())
        + f" ({cal.meta['rate_fit_seconds']:.1f} s)")
    report = fit_report(cal, obs)
    quality = fit_quality(report)
    cal.meta["fit_quality"] = quality
    summary = {"fit_quality": quality}
    bt = None
    if backtest:
        from .backtest import backtest as run_backtest

        bt = run_backtest(cal, obs=obs)
        cal.meta["backtest"] = bt.metrics
        summary["backtest"] = bt.metrics
    cal.meta["fit_seconds"] = round(time.perf_counter() - t0, 2)
    summary["seconds"] = cal.meta["fit_seconds"]
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            cal.save(tmp)
            report.to_csv(tmp / "fit_report.csv", index=False, float_format="%.6g")
            plot_fit_report(report, tmp / "fit_report.png")
            if bt is not None:
                bt.save(tmp)
            _replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        cal.path = str(out)
        if package_copy:
            dst = Path(__file__).parent / "data" / "calibration" / out.name
            dst.mkdir(parents=True, exist_ok=True)
            for f in FIT_FILES:
                shutil.copy2(out / f, dst / f)
            log(f"copied the fit files to {dst}")
    return cal, summary


def _replace_dir(tmp: Path, out: Path) -> None:
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / "x")
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old / "x", out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


# =============================================================================================
# Command line (registered by imsim.cli)
# =============================================================================================

CALIBRATE_EPILOG = """\
examples:
  imsim calibrate                                       refit the default (calibration/default)
  imsim data import-wonder export.txt --out my_targets.csv
  imsim calibrate --targets my_targets.csv --out calibration/my_state
  imsim run scenarios/baseline.yaml --calibration calibration/my_state

--targets: a CSV written by 'imsim data import-wonder' (columns state, race, year_start,
year_end, measure, deaths, births, rate, flag). Measure 'imr' rows for 2013-2015 (or the three
single years, pooled) replace the packaged IMR of the cells they cover (state x race, state ALL,
national race); 'suppressed'/'missing' rows drop the packaged value of that cell; single-year
2013-2017 state rows replace the back-test observations; 'births' rows for 2013-2015 replace the
births the fit weights a cell by. Other rows are ignored (listed in calibration.json 'notes').

Writes calibration.json, cells.csv, races.csv, states.csv, imr_draws.csv (what a run loads),
fit_report.csv/png and backtest.csv/png. Nothing is written if anything fails.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``imsim calibrate`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "calibrate", help="fit the baseline to observed 2013-2015 rates (with uncertainty)",
        description="Fit the baseline to the observed 2013-2015 targets: IMR by state x race "
                    "(partial pooling: national race x state effect, so small and suppressed "
                    "cells get shrunk estimates with honest intervals), state and national "
                    "totals, preterm rates, the neonatal/postneonatal split and SUID by race. "
                    "Writes the fit with K posterior draws per cell, a fit report and a back-test "
                    "(2016-2017).",
        epilog=CALIBRATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", metavar="FILE",
                   help="your own targets CSV from 'imsim data import-wonder' (see below)")
    p.add_argument("--out", metavar="DIR", default="calibration/default",
                   help="calibration folder to write (replaced if it exists; default: "
                        "calibration/default)")
    p.add_argument("--draws", type=int, default=DEFAULT_SETTINGS["draws"],
                   help="posterior draws per cell (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SETTINGS["seed"],
                   help="seed of the posterior draws (default: %(default)s)")
    p.add_argument("--no-backtest", action="store_true", help="skip the 2016-2017 back-test")
    p.add_argument("--package-copy", action="store_true",
                   help=argparse.SUPPRESS)  # maintainers: also copy into imsim/data/calibration/
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_calibrate)
    return p


def cmd_calibrate(args) -> int:
    """Run ``imsim calibrate``; returns the exit code (InputError propagates: exit 2)."""
    if args.draws < 2:
        raise InputError(f"--draws must be at least 2, got {args.draws}")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    cal, summary = calibrate(args.targets, args.out,
                             settings={"draws": int(args.draws), "seed": int(args.seed)},
                             backtest=not args.no_backtest, package_copy=args.package_copy,
                             log=log)
    q = summary["fit_quality"]
    log(f"state x race cells with an observed IMR inside the observation's 95% interval: "
        f"{q['cells_within_interval']:.1%} of {q['cells_observed']} "
        f"(Poisson-only intervals: {q['cells_within_poisson_interval']:.1%})")
    for c in q["cells_outside"]:
        log(f"  outside: {c}")
    log(f"national IMR by race: max |rel. error| {q['national_race_max_abs_rel_error']:.2%}; "
        f"preterm by race {q['preterm_race_max_abs_rel_error']:.2%}; SUID by race "
        f"{q['suid_race_max_abs_rel_error']:.2%}")
    if "backtest" in summary:
        m = summary["backtest"]["all"]
        log(f"back-test 2016-2017 ({m['states']} state-years): MAE {m['mae']:.3f}, RMSE "
            f"{m['rmse']:.3f} per 1,000, 95% coverage {m['coverage_95']:.0%}")
    log(f"wrote {args.out}/ in {summary['seconds']:.1f} s")
    return 0


def main(argv=None) -> int:  # pragma: no cover - convenience until cli.py registers it
    parser = argparse.ArgumentParser(prog="imsim")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    from .backtest import add_backtest_parser

    add_backtest_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
