"""Statistics on tidy tables: effect sizes with bootstrap intervals, means with intervals, Pareto fronts.

The one owner of the toolkit's statistics: the figures of :mod:`steering.plots` only draw what
these functions compute, and the experiments import them instead of keeping their own copies.

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"layer": 0, "metric": "m", "prompt": ["a", "b", "a", "b"],
    ...                   "coeff": [0, 0, 4, 4], "value": [0.0, 2.0, 2.0, 4.0]})
    >>> effect_sizes(t, n_boot=100)[["coeff", "n", "effect"]].round(3).values.tolist()
    [[0.0, 2.0, 0.0], [4.0, 2.0, 1.414]]
    >>> mean_ci([1.0, 2.0, 3.0], n_boot=100)[0]
    2.0
"""

import math
from typing import Any, Callable, Sequence

import numpy as np

from .errors import InvalidArgumentError
from .nulls import NULL_KINDS, NullKind
from .validate import as_int, as_real, integer, shown

__all__ = ["cohens_d", "bootstrap_interval", "effect_sizes", "permutation_p_value", "benjamini_hochberg", "mean_ci",
           "group_mean_ci", "pareto_front", "MAX_BOOT"]

#: The most bootstrap resamples accepted (each resample holds one row of every resampled array).
MAX_BOOT = 1_000_000


def cohens_d(steered: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Cohen's d along the last axis (pooled SD); 0 when both are constant and equal, NaN when constant and unequal.

    ``d = (mean(steered) − mean(base)) / pooled SD``, the SDs with Bessel's correction.

    Args:
        steered: Values with steering, samples along the last axis.
        base: Values without steering, samples along the last axis (same leading shape).

    Returns:
        An array of d values, the shape of the inputs without their last axis.

    Example:
        >>> import numpy as np
        >>> float(cohens_d(np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])))  # 2 / sqrt((4 + 1) / 2)
        1.2649110640673518
        >>> float(cohens_d(np.ones(3), np.ones(3))), float(cohens_d(2 * np.ones(3), np.ones(3)))
        (0.0, nan)
    """
    diff = steered.mean(-1) - base.mean(-1)
    n1, n2 = steered.shape[-1], base.shape[-1]
    var = ((n1 - 1) * steered.var(-1, ddof=1) + (n2 - 1) * base.var(-1, ddof=1)) / max(n1 + n2 - 2, 1)
    sd = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(sd > 0, diff / np.where(sd > 0, sd, 1.0), np.where(diff == 0, 0.0, np.nan))
    return d


def bootstrap_interval(
    statistic: Callable[..., np.ndarray],
    samples: Sequence[np.ndarray],
    *,
    n_boot: int,
    ci: float,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic`` over paired resamples of ``samples``.

    Each resample draws ``k`` indices with replacement (``k`` = the length of the samples) and
    takes them from every sample alike, so paired values stay together. Resamples whose statistic
    is not finite are dropped.

    Args:
        statistic: Maps the resampled arrays (each ``[n_boot, k]``) to ``n_boot`` values, reducing
            the last axis (e.g. :func:`cohens_d`, or ``lambda x: x.mean(-1)``).
        samples: One or more 1-D arrays of the same length ``k``.
        n_boot: Number of resamples.
        ci: Confidence level in (0, 1).
        rng: The random generator (shared across calls, it keeps a whole table reproducible).

    Returns:
        ``(low, high)``; ``(nan, nan)`` when no resample gave a finite statistic.

    Example:
        >>> import numpy as np
        >>> x = np.arange(10.0)
        >>> low, high = bootstrap_interval(lambda s: s.mean(-1), [x], n_boot=500, ci=0.9,
        ...                                rng=np.random.default_rng(0))
        >>> bool(low < x.mean() < high)
        True
    """
    k = len(samples[0])
    idx = rng.integers(0, k, size=(n_boot, k))
    boot = statistic(*(s[idx] for s in samples))
    boot = boot[np.isfinite(boot)]
    if not boot.size:
        return math.nan, math.nan
    lo, hi = (float(x) for x in np.quantile(boot, [(1 - ci) / 2, 1 - (1 - ci) / 2]))
    return lo, hi


def permutation_p_value(observed: float, null: Any) -> float:
    """Two-sided permutation p-value of ``observed`` among the ``null`` statistics, with the +1 correction.

    ``p = (1 + #{i : |T_i| ≥ |T_obs|}) / (N + 1)`` over the ``N`` finite null statistics ``T_i``:
    the real vector counts as one member of its own null, so ``p`` lies in ``[1 / (N + 1), 1]``
    and is never 0. NaN when ``observed`` is not finite or no null statistic is.

    Example:
        >>> permutation_p_value(3.0, [0.5, -1.0, 2.0, -4.0])  # only -4.0 is as extreme: (1 + 1) / 5
        0.4
        >>> permutation_p_value(0.0, [0.1, 0.2])
        1.0
    """
    x = np.asarray(null, dtype=float)
    x = x[np.isfinite(x)]
    if not math.isfinite(observed) or not x.size:
        return math.nan
    return float((1 + np.count_nonzero(np.abs(x) >= abs(observed))) / (x.size + 1))


def benjamini_hochberg(p_values: Any) -> np.ndarray:
    """Benjamini–Hochberg q-values (FDR-adjusted p-values); NaN p-values stay NaN and are not counted.

    With the ``m`` finite p-values sorted, ``p_(1) ≤ … ≤ p_(m)``:
    ``q_(i) = min(1, min_{j ≥ i} p_(j) · m / j)``. Rejecting every hypothesis with ``q ≤ α``
    controls the false discovery rate at ``α`` (independent or positively dependent tests).

    Example:
        >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.20]).round(4).tolist()
        [0.04, 0.0533, 0.0533, 0.2]
    """
    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m:
        order = finite[np.argsort(p[finite], kind="stable")]
        ranked = p[order] * m / np.arange(1, m + 1)
        q[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return q


def _mean_shift(rows: Any, base: Any, keys: list[str]) -> Any:
    """Mean over prompts of ``value − base`` (the same layer's, metric's and prompt's unsteered value), per ``keys``."""
    joined = rows.merge(base, on=["layer", "metric", "prompt"], how="inner")
    joined["shift"] = joined["value"] - joined["base"]
    return joined.groupby(keys)["shift"].mean()


def _with_p_values(effects: Any, table: Any, null: str, alpha: float) -> Any:
    """``effects`` with ``null_kind``, ``n_null``, ``p_value``, ``q_value`` and ``significant`` against ``null``."""
    kinds = sorted(set(table["null_kind"]) - {"real"})
    if null not in kinds:
        raise InvalidArgumentError(f"null={null!r}; allowed: a null kind in the table ({kinds}). "
                                   "Fix: run st.sweep(..., nulls=N) with N ≥ 1, or pass null='random'.")
    real = table[table["null_kind"] == "real"]
    base = real[real["coeff"] == 0][["layer", "metric", "prompt", "value"]].rename(columns={"value": "base"})
    observed = _mean_shift(real, base, ["layer", "metric", "coeff"])
    null_stats = _mean_shift(table[table["null_kind"] == null], base, ["layer", "metric", "coeff", "null_index"])
    grouped = {key: part.to_numpy() for key, part in null_stats.groupby(level=["layer", "metric", "coeff"])}
    p_values, n_null = [], []
    for row in effects.itertuples():
        key = (row.layer, row.metric, row.coeff)
        stats = grouped.get(key, np.empty(0))
        n_null.append(int(np.isfinite(stats).sum()))
        p_values.append(permutation_p_value(float(observed.get(key, math.nan)), stats) if row.coeff != 0 else math.nan)
    out = effects.assign(null_kind=null, n_null=n_null, p_value=p_values)
    out["q_value"] = math.nan
    for _, part in out.groupby("metric"):  # one family per metric: its layer × coefficient grid
        out.loc[part.index, "q_value"] = benjamini_hochberg(part["p_value"].to_numpy())
    out["significant"] = out["q_value"].le(alpha)
    return out


def effect_sizes(table: Any, *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0, null: NullKind = "random",
                 alpha: float = 0.05) -> Any:
    """Per layer × coefficient × metric: Cohen's d of steered vs unsteered values across prompts.

    ``d = (mean_steered − mean_unsteered) / pooled SD``, with the unsteered values taken
    from the same layer's ``coeff = 0`` rows. The confidence interval is a percentile
    bootstrap that resamples prompts (paired: a resampled prompt brings both its values).
    With fewer than 2 prompts d is undefined (NaN).

    A table from ``st.sweep(..., nulls=N)`` (with a ``null_kind`` column) also gets a permutation
    test per steered setting: the statistic ``T`` is the mean over prompts of steered − unsteered
    value; ``p_value = (1 + #{null vectors with |T_null| ≥ |T_real|}) / (N + 1)`` against the
    ``null`` kind at the same layer and coefficient (:func:`permutation_p_value`), ``q_value`` its
    Benjamini–Hochberg adjustment across the metric's layer × coefficient grid
    (:func:`benjamini_hochberg`), ``significant = q_value ≤ alpha``.

    Args:
        table: The table from :func:`sweep` (columns ``layer``, ``coeff``, ``prompt``,
            ``metric``, ``value``; with nulls also ``null_kind``, ``null_index``).
        n_boot: Bootstrap resamples.
        ci: Confidence level.
        seed: Bootstrap seed.
        null: Which controls the p-value is against: ``"random"`` (norm-matched random vectors)
            or ``"shuffled"`` (swapped labels; one ActAdd pair has the single member ``−v``, so its
            p-value is 0.5 or 1). Ignored for a table without nulls.
        alpha: The false discovery rate of ``significant``.

    Returns:
        A tidy ``pandas.DataFrame``, one row per layer × coefficient × metric (coefficient 0
        included, d = 0), columns ``layer``, ``coeff``, ``metric``, ``n``, ``mean_steered``,
        ``mean_unsteered``, ``effect``, ``ci_low``, ``ci_high``; with nulls also ``null_kind``,
        ``n_null``, ``p_value``, ``q_value`` (NaN at coefficient 0) and ``significant``.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"layer": 0, "hook": "h", "metric": "m", "prompt": ["a", "b", "a", "b"],
        ...                   "coeff": [0, 0, 1, 1], "value": [0.0, 2.0, 2.0, 4.0]})
        >>> row = effect_sizes(t, n_boot=200).iloc[1]
        >>> round(float(row["effect"]), 6)  # (3 − 1) / sqrt(2)
        1.414214
    """
    import pandas as pd

    needed = {"layer", "coeff", "prompt", "metric", "value"}
    missing = needed - set(getattr(table, "columns", []))
    if missing:
        raise InvalidArgumentError(
            f"effect_sizes needs a table with columns {sorted(needed)}; missing {sorted(missing)}. "
            "Fix: pass the output of st.sweep(...)."
        )
    n, level = as_int(n_boot), as_real(ci)
    if n is None or not 1 <= n <= MAX_BOOT or level is None or not 0 < level < 1:
        raise InvalidArgumentError(f"n_boot={shown(n_boot)}, ci={shown(ci)}; allowed: an int ≥ 1 and a level in (0, 1) "
                                   f"(n_boot at most {MAX_BOOT:,}). Fix: pass e.g. n_boot=1000, ci=0.95.")
    n_boot, ci = n, level
    rng = np.random.default_rng(integer("seed", seed, 0, example=0, what="a bootstrap seed"))
    nulls = "null_kind" in table.columns
    if nulls and (null not in NULL_KINDS or as_real(alpha) is None or not 0 < float(alpha) < 1):
        raise InvalidArgumentError(f"null={shown(null)}, alpha={shown(alpha)}; allowed: one of {list(NULL_KINDS)} and a "
                                   "rate in (0, 1). Fix: pass e.g. null='random', alpha=0.05.")
    rows = []
    for (layer, metric), group in (table[table["null_kind"] == "real"] if nulls else table).groupby(["layer", "metric"], sort=True):
        base = group[group["coeff"] == 0].set_index("prompt")["value"]
        if base.empty:
            raise InvalidArgumentError(
                f"layer {layer}, metric {metric!r} has no coeff = 0 rows; allowed: tables with the unsteered baseline. "
                "Fix: include 0 in coeffs (st.sweep adds it)."
            )
        for coeff, part in group.groupby("coeff", sort=True):
            values = part.set_index("prompt")["value"]
            common = [p for p in values.index if p in base.index]
            s = values.loc[common].to_numpy(dtype=float)
            b = base.loc[common].to_numpy(dtype=float)
            k = len(common)
            d = float(cohens_d(s, b)) if k >= 2 else math.nan
            lo, hi = (bootstrap_interval(cohens_d, [s, b], n_boot=n_boot, ci=ci, rng=rng) if k >= 2
                      else (math.nan, math.nan))
            rows.append({"layer": layer, "coeff": float(coeff), "metric": metric, "n": k,
                         "mean_steered": float(s.mean()) if k else math.nan,
                         "mean_unsteered": float(b.mean()) if k else math.nan,
                         "effect": d, "ci_low": lo, "ci_high": hi})
    return _with_p_values(pd.DataFrame(rows), table, null, float(alpha)) if nulls else pd.DataFrame(rows)


def _mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-1)


def mean_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap 95% interval of ``values``.

    Args:
        values: The per-item values (e.g. one 0/1 hit per completion).
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed (a fresh generator per call, so each group's interval is reproducible alone).

    Returns:
        ``(mean, ci_low, ci_high)``; all NaN for no values, a NaN interval when a value is not finite.

    Example:
        >>> mean, low, high = mean_ci([0.0, 1.0, 1.0, 1.0])
        >>> mean, bool(low <= mean <= high)
        (0.75, True)
        >>> mean_ci([])
        (nan, nan, nan)
    """
    n_boot = integer("n_boot", n_boot, 1, MAX_BOOT, example=2000)
    rng = np.random.default_rng(integer("seed", seed, 0, example=0, what="a bootstrap seed"))
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    if not np.isfinite(x).all():
        return float(x.mean()), math.nan, math.nan
    lo, hi = bootstrap_interval(_mean, [x], n_boot=n_boot, ci=0.95, rng=rng)
    return float(x.mean()), lo, hi


def group_mean_ci(rows: Any, value: str, by: list[str]) -> Any:
    """One row per group: the mean of per-item ``value``, its bootstrap 95% interval and ``n``.

    Args:
        rows: Per-item records: a list of dicts or a ``pandas.DataFrame``.
        value: The column to summarise.
        by: The grouping columns (groups in order of first appearance; NaN keys kept).

    Returns:
        A ``pandas.DataFrame`` with the ``by`` columns, then ``mean``, ``ci_low``, ``ci_high``, ``n``
        (intervals from :func:`mean_ci`).

    Example:
        >>> rows = [{"layer": 1, "hit": 1.0}, {"layer": 1, "hit": 0.0}, {"layer": 2, "hit": 1.0}]
        >>> group_mean_ci(rows, "hit", ["layer"])[["layer", "mean", "n"]].values.tolist()
        [[1.0, 0.5, 2.0], [2.0, 1.0, 1.0]]
    """
    import pandas as pd

    df = pd.DataFrame(rows)
    missing = [c for c in [value, *by] if c not in df.columns]
    if missing:
        raise InvalidArgumentError(
            f"group_mean_ci: column(s) {missing} not in the rows (they have {list(df.columns)}). "
            "Fix: pass the name of the value column and of the grouping columns."
        )
    out = []
    for key, part in df.groupby(by, sort=False, dropna=False):
        m, lo, hi = mean_ci(part[value].tolist())
        out.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "mean": m, "ci_low": lo,
                    "ci_high": hi, "n": len(part)})
    return pd.DataFrame(out)


def pareto_front(df: Any, x: str, y: str) -> Any:
    """Which rows are on the Pareto front that minimises ``x`` and maximises ``y``.

    A row is on the front when no other row has ``x`` ≤ and ``y`` ≥ its own with at least one
    strict; identical rows are all on it. Rows with a missing ``x`` or ``y`` are never on it.

    Args:
        df: A ``pandas.DataFrame``.
        x: The column to minimise (a cost, e.g. off-target KL).
        y: The column to maximise (an effect).

    Returns:
        A boolean ``pandas.Series`` aligned with ``df.index``.

    Example:
        >>> import pandas as pd
        >>> d = pd.DataFrame({"kl": [0.1, 0.2, 0.3, 0.5], "effect": [0.5, 0.4, 1.0, 0.9]})
        >>> pareto_front(d, "kl", "effect").tolist()
        [True, False, True, False]
    """
    import pandas as pd

    columns = list(getattr(df, "columns", []))
    missing = [c for c in (x, y) if c not in columns]
    if missing:
        raise InvalidArgumentError(
            f"pareto_front: column(s) {missing} not in the table (it has {columns}). "
            "Fix: pass the names of two numeric columns of df as x and y."
        )
    xs = pd.to_numeric(df[x], errors="coerce").to_numpy(dtype=float)
    ys = pd.to_numeric(df[y], errors="coerce").to_numpy(dtype=float)
    valid = ~(np.isnan(xs) | np.isnan(ys))
    xv, yv = xs[valid], ys[valid]
    no_worse = (xv[None, :] <= xv[:, None]) & (yv[None, :] >= yv[:, None])  # [i, j]: j at least as good as i
    better = (xv[None, :] < xv[:, None]) | (yv[None, :] > yv[:, None])
    dominated = (no_worse & better).any(axis=1)
    on_front = np.zeros(len(df), dtype=bool)
    on_front[np.flatnonzero(valid)] = ~dominated
    return pd.Series(on_front, index=df.index)
