"""Statistics on tidy tables (steering.stats): Cohen's d, effect sizes, bootstrap intervals, Pareto fronts."""

import math

import numpy as np
import pandas as pd
import pytest

import steering as st
from steering.stats import (benjamini_hochberg, bootstrap_interval, cohens_d, effect_sizes, group_mean_ci, mean_ci,
                            pareto_front, permutation_p_value)

# ---------------------------------------------------------------------------------------------
# Cohen's d and effect sizes


def test_cohens_d_by_hand():
    s, b = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])
    pooled = math.sqrt((2 * 4.0 + 2 * 1.0) / 4)  # sample variances 4 and 1
    assert float(cohens_d(s, b)) == pytest.approx((4 - 2) / pooled)
    assert float(cohens_d(np.ones(3), np.ones(3))) == 0.0
    assert math.isnan(float(cohens_d(np.ones(3) * 2, np.ones(3))))


def test_cohens_d_reduces_the_last_axis():
    s = np.array([[2.0, 4.0, 6.0], [1.0, 1.0, 1.0]])
    b = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    d = cohens_d(s, b)
    assert d.shape == (2,)
    assert d[0] == pytest.approx(float(cohens_d(s[0], b[0]))) and d[1] == 0.0


def test_effect_sizes_table_and_bootstrap():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 12)
    rows = [{"layer": 3, "metric": "m", "prompt": f"p{i}", "coeff": c, "value": base[i] + shift}
            for c, shift in ((0.0, 0.0), (2.0, 1.5)) for i in range(12)]
    eff = effect_sizes(pd.DataFrame(rows), n_boot=500)
    zero, two = eff.iloc[0], eff.iloc[1]
    assert zero.effect == 0.0 and two.n == 12
    assert two.effect == pytest.approx(1.5 / np.std(base, ddof=1), rel=1e-6)
    assert two.ci_low < two.effect < two.ci_high
    with pytest.raises(st.errors.InvalidArgumentError, match="no coeff = 0 rows"):
        effect_sizes(pd.DataFrame(rows[12:]))


def test_effect_sizes_columns_seed_and_undefined_cells():
    rows = [{"layer": 0, "metric": "m", "prompt": p, "coeff": c, "value": v}
            for p, c, v in (("a", 0, 0.0), ("b", 0, 2.0), ("a", 1, 2.0), ("b", 1, 4.0))]
    rows += [{"layer": 1, "metric": "m", "prompt": "a", "coeff": c, "value": float(c)} for c in (0, 1)]
    eff = effect_sizes(pd.DataFrame(rows), n_boot=200, seed=3)
    assert list(eff.columns) == ["layer", "coeff", "metric", "n", "mean_steered", "mean_unsteered", "effect",
                                 "ci_low", "ci_high"]
    one_prompt = eff[eff.layer == 1].iloc[1]
    assert one_prompt.n == 1 and math.isnan(one_prompt.effect) and math.isnan(one_prompt.ci_low)
    again = effect_sizes(pd.DataFrame(rows), n_boot=200, seed=3)
    pd.testing.assert_frame_equal(eff, again)  # the seed makes the intervals reproducible


@pytest.mark.parametrize("kwargs, match", [
    ({"n_boot": 0}, r"n_boot=0, ci=0.95; allowed: an int ≥ 1 and a level in \(0, 1\)"),
    ({"ci": 1.0}, r"n_boot=1000, ci=1.0; allowed"),
])
def test_effect_sizes_rejects_bad_settings(kwargs, match):
    table = pd.DataFrame({"layer": 0, "metric": "m", "prompt": ["a", "b"], "coeff": 0, "value": [1.0, 2.0]})
    with pytest.raises(st.errors.InvalidArgumentError, match=match):
        effect_sizes(table, **kwargs)


def test_effect_sizes_names_the_missing_columns():
    with pytest.raises(st.errors.InvalidArgumentError, match=r"missing \['coeff', 'metric', 'prompt', 'value'\].*st.sweep"):
        effect_sizes(pd.DataFrame({"layer": [0]}))


# ---------------------------------------------------------------------------------------------
# Bootstrap intervals and means per group


def test_bootstrap_interval_pairs_samples_and_drops_non_finite_resamples():
    x = np.arange(20.0)
    low, high = bootstrap_interval(lambda s, b: s.mean(-1) - b.mean(-1), [x, x], n_boot=300, ci=0.9,
                                   rng=np.random.default_rng(0))
    assert low == high == 0.0  # paired: every resample takes the same items from both
    nothing = bootstrap_interval(lambda s: np.full(s.shape[0], np.nan), [x], n_boot=10, ci=0.9,
                                 rng=np.random.default_rng(0))
    assert all(math.isnan(v) for v in nothing)


def test_mean_ci_brackets_the_mean_and_is_reproducible():
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    mean, low, high = mean_ci(values)
    assert mean == pytest.approx(0.625) and 0.0 <= low < mean < high <= 1.0
    assert mean_ci(values) == (mean, low, high)
    assert mean_ci([2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in mean_ci([]))
    nan_mean, nan_low, _ = mean_ci([1.0, math.nan])
    assert math.isnan(nan_mean) and math.isnan(nan_low)


def test_group_mean_ci_one_row_per_group_in_order():
    rows = [{"pair": "b", "coeff": 2.0, "hit": 1.0}, {"pair": "a", "coeff": 2.0, "hit": 0.0},
            {"pair": "b", "coeff": 2.0, "hit": 0.0}, {"pair": "a", "coeff": 4.0, "hit": 1.0}]
    out = group_mean_ci(rows, "hit", ["pair", "coeff"])
    assert list(out.columns) == ["pair", "coeff", "mean", "ci_low", "ci_high", "n"]
    assert out[["pair", "coeff"]].values.tolist() == [["b", 2.0], ["a", 2.0], ["a", 4.0]]
    assert out["mean"].tolist() == [0.5, 0.0, 1.0] and out["n"].tolist() == [2, 1, 1]
    first = out.iloc[0]
    assert (first.ci_low, first.ci_high) == mean_ci([1.0, 0.0])[1:]
    pd.testing.assert_frame_equal(group_mean_ci(pd.DataFrame(rows), "hit", ["pair", "coeff"]), out)
    with pytest.raises(st.errors.InvalidArgumentError, match=r"column\(s\) \['kl'\] not in the rows"):
        group_mean_ci(rows, "kl", ["pair"])


# ---------------------------------------------------------------------------------------------
# pareto_front


def test_pareto_front_hand_made_points():
    points = pd.DataFrame(
        {
            "cost": [0.1, 0.1, 0.2, 0.3, 0.3, 0.5, 0.05, math.nan, 0.4],
            "gain": [1.0, 0.8, 1.0, 2.0, 2.0, 1.5, 0.2, 9.0, 2.5],
        },
        index=list("abcdefghi"),
    )
    front = pareto_front(points, "cost", "gain")
    assert front.dtype == bool and list(front.index) == list(points.index)
    # b: same cost as a, lower gain; c: same gain as a, higher cost; f: d beats it; h: NaN cost
    # d and e are identical (neither strictly dominates the other); g is the cheapest; i has the top gain
    assert front[front].index.tolist() == ["a", "d", "e", "g", "i"]


def test_pareto_front_single_point_empty_and_missing_column():
    assert pareto_front(pd.DataFrame({"x": [1.0], "y": [2.0]}), "x", "y").tolist() == [True]
    assert pareto_front(pd.DataFrame({"x": [], "y": []}), "x", "y").tolist() == []
    with pytest.raises(st.errors.InvalidArgumentError, match=r"column\(s\) \['z'\] not in the table"):
        pareto_front(pd.DataFrame({"x": [1.0]}), "x", "z")


# ---------------------------------------------------------------------------------------------
# Null models (issue 18): permutation p-values and Benjamini–Hochberg


def test_benjamini_hochberg_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.20 (m = 4): p·m/rank = 0.04, 0.06, 0.0533, 0.2; running min from the top
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.20]) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2])
    # NaN is skipped (m = 3) and kept; q is capped at 1: 0.5·3/1 = 1.5 → min(1.5, 0.9, 0.9) = 0.9
    q = benjamini_hochberg([0.5, math.nan, 0.9, 0.6])
    assert math.isnan(q[1]) and q[[0, 2, 3]] == pytest.approx([0.9, 0.9, 0.9])
    assert benjamini_hochberg([0.8, 0.9]) == pytest.approx([0.9, 0.9])
    assert benjamini_hochberg([1.0]) == pytest.approx([1.0]) and benjamini_hochberg([]).size == 0
    # ties share a q-value: sorted 0.001, 0.02, 0.02, 0.5 → 0.004, 0.04, 0.0267, 0.5 → running min 0.0267 for both
    p = np.array([0.02, 0.02, 0.5, 0.001])
    q = benjamini_hochberg(p)
    assert q == pytest.approx([0.08 / 3, 0.08 / 3, 0.5, 0.004]) and (q >= p).all()


def test_permutation_p_value_by_hand():
    assert permutation_p_value(3.0, [0.5, -1.0, 2.0, -4.0]) == pytest.approx(2 / 5)  # |−4| ≥ 3
    assert permutation_p_value(-3.0, [0.5, -1.0, 2.0, 3.0]) == pytest.approx(2 / 5)  # ties count: |3| ≥ |−3|
    assert permutation_p_value(9.0, np.zeros(19)) == pytest.approx(1 / 20)  # the floor 1 / (N + 1)
    assert permutation_p_value(0.0, [0.0, 1.0]) == 1.0
    assert permutation_p_value(1.0, [math.nan, 0.5]) == pytest.approx(1 / 2)  # NaN nulls are not counted
    assert math.isnan(permutation_p_value(math.nan, [1.0])) and math.isnan(permutation_p_value(1.0, []))


def _null_table(real_shift, null_shifts):
    """A synthetic sweep table: one layer, 3 prompts, the real vector and its random controls at c = 1."""
    rows, prompts, base = [], ["a", "b", "c"], [0.0, 1.0, 2.0]
    for p, b in zip(prompts, base):
        rows.append({"layer": 0, "coeff": 0.0, "prompt": p, "metric": "m", "value": b, "null_kind": "real", "null_index": 0})
        rows.append({"layer": 0, "coeff": 1.0, "prompt": p, "metric": "m", "value": b + real_shift + 0.1 * b,
                     "null_kind": "real", "null_index": 0})
        for i, shift in enumerate(null_shifts):
            rows.append({"layer": 0, "coeff": 1.0, "prompt": p, "metric": "m", "value": b + shift, "null_kind": "random",
                         "null_index": i})
    return pd.DataFrame(rows)


def test_effect_sizes_with_nulls_by_hand():
    # real mean shift = 2 + 0.1 · mean(base) = 2.1; nulls' shifts ±3 beat it twice: p = (1 + 2) / 5
    out = effect_sizes(_null_table(2.0, [0.5, -3.0, 3.0, 1.0]), n_boot=50)
    steered = out[out.coeff == 1.0].iloc[0]
    assert steered.p_value == pytest.approx(3 / 5) and steered.q_value == pytest.approx(3 / 5)
    assert steered.null_kind == "random" and steered.n_null == 4 and not steered.significant
    assert list(out.columns[-5:]) == ["null_kind", "n_null", "p_value", "q_value", "significant"]
    strong = effect_sizes(_null_table(9.0, list(np.linspace(-1, 1, 39))), n_boot=50)
    assert strong.p_value.iloc[1] == pytest.approx(1 / 40) and bool(strong.significant.iloc[1])
    assert not effect_sizes(_null_table(9.0, list(np.linspace(-1, 1, 39))), n_boot=50, alpha=0.01).significant.any()


def test_effect_sizes_with_nulls_refuses_a_missing_kind_or_bad_alpha(untyped):
    with pytest.raises(st.errors.InvalidArgumentError, match="null='shuffled'; allowed: a null kind in the table"):
        effect_sizes(_null_table(2.0, [0.5]), n_boot=10, null="shuffled")
    with pytest.raises(st.errors.InvalidArgumentError, match="alpha=1.5"):
        effect_sizes(_null_table(2.0, [0.5]), n_boot=10, alpha=1.5)
