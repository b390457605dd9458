"""Figures from tidy tables: traces, cell values, axes and the errors on malformed tables."""

import warnings

import pandas as pd
import pytest

import steering as st
import steering.plots as plots
import synthetic_tables as synth
from steering.plots import (
    effect_heatmap,
    frontier_figure,
    lens_rank_figure,
    norm_figure,
    norm_layers_figure,
    token_scores_figure,
    token_view_figure,
)

# ---------------------------------------------------------------------------------------------
# token_scores_figure


def test_token_scores_one_panel_per_group_sorted_best_at_top():
    fig = token_scores_figure(synth.token_scores(k=3))
    assert len(fig.data) == 4  # 2 groups × (promoted, suppressed)
    assert [t.name for t in fig.data] == ["promoted", "suppressed", "promoted", "suppressed"]
    assert [t.showlegend for t in fig.data] == [True, True, False, False]
    promoted, suppressed = fig.data[0], fig.data[1]
    assert promoted.orientation == "h"
    assert list(promoted.x) == [3.0, 2.0, 1.0]
    assert list(promoted.y) == ["+1 ' up1'", "+2 ' up2'", "+3 ' up3'"]
    assert list(suppressed.y) == ["−3 'down3\\n'", "−2 'down2\\n'", "−1 'down1\\n'"]  # repr shows the newline
    assert promoted.marker.color != suppressed.marker.color
    axis = fig.layout.yaxis
    assert axis.autorange == "reversed"
    assert list(axis.categoryarray) == list(promoted.y) + list(suppressed.y)  # most promoted first
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["layer 6 · sum", "layer 6 · pos 1 ' wedding'"]
    assert [c[1] for c in promoted.customdata] == [101, 102, 103]  # token ids in the hover


def test_token_scores_x_title_depends_on_source():
    lens = token_scores_figure(synth.token_scores("logit_lens", groups=((3, "sum"),)))
    shift = token_scores_figure(synth.token_scores("logprob_shift", groups=((3, "sum"),)))
    assert "logit" in lens.layout.xaxis.title.text
    assert "nats" in shift.layout.xaxis.title.text
    assert lens.layout.xaxis.title.text != shift.layout.xaxis.title.text


def test_token_scores_truncates_groups_with_a_warning():
    table = synth.token_scores(groups=[(layer, "sum") for layer in range(5)], k=2)
    with pytest.warns(st.SteeringWarning, match="5 .*groups; plotting the first 3"):
        fig = token_scores_figure(table, max_groups=3)
    assert len(fig.data) == 6
    assert [a.text for a in fig.layout.annotations] == ["layer 0 · sum", "layer 1 · sum", "layer 2 · sum"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(token_scores_figure(table, max_groups=5).data) == 10


def test_token_scores_splits_coefficients_of_a_shift_table():
    a = synth.token_scores("logprob_shift", groups=((4, "mean"),), k=1)
    b = a.assign(coeff=8.0, score=a["score"] * 2)
    fig = token_scores_figure(pd.concat([a, b], ignore_index=True))
    assert [a.text for a in fig.layout.annotations] == ["layer 4 · mean · c = 4", "layer 4 · mean · c = 8"]
    assert list(fig.data[2].x) == [2.0]


def test_token_scores_rejects_bad_tables():
    mixed = pd.concat([synth.token_scores("logit_lens"), synth.token_scores("logprob_shift")])
    with pytest.raises(st.errors.InvalidArgumentError, match=r"one source per table.*Fix: filter"):
        token_scores_figure(mixed)
    with pytest.raises(st.errors.InvalidArgumentError, match="direction must be"):
        token_scores_figure(synth.token_scores().assign(direction="up"))
    with pytest.raises(st.errors.InvalidArgumentError, match="max_groups must be a positive int, got 0"):
        token_scores_figure(synth.token_scores(), max_groups=0)


# ---------------------------------------------------------------------------------------------
# lens_rank_figure


def test_lens_rank_reversed_log_axis_and_readable_line():
    fig = lens_rank_figure(synth.lens_ranks())
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis.autorange == "reversed"
    lines, reference = fig.data[:2], fig.data[2]
    assert len(fig.data) == 3
    assert [t.name for t in lines] == ["' wedding'", "' love'"]
    assert list(lines[0].x) == [0, 1, 2, 3] and list(lines[0].y) == [5000, 300, 8, 1]
    assert lines[0].customdata[2][0] == "'a2', 'b2', 'c2', 'd2', 'e2'"  # the layer's top tokens on hover
    assert "customdata[0]" in lines[0].hovertemplate
    assert list(reference.y) == [10, 10] and list(reference.x) == [0, 3]
    assert "readable" in reference.name and "readable" in "".join(reference.text)


def test_lens_rank_one_line_per_readout_when_several():
    table = synth.lens_ranks()
    both = pd.concat([table, table.assign(readout="mean", rank=table["rank"] * 2)], ignore_index=True)
    names = [t.name for t in lens_rank_figure(both).data]
    assert names[:4] == ["' wedding' (sum)", "' love' (sum)", "' wedding' (mean)", "' love' (mean)"]


def test_lens_rank_rejects_rank_zero():
    with pytest.raises(st.errors.InvalidArgumentError, match="rank must be ≥ 1"):
        lens_rank_figure(synth.lens_ranks().assign(rank=0))


# ---------------------------------------------------------------------------------------------
# effect_heatmap


def test_effect_heatmap_cells_match_the_table():
    heat = effect_heatmap(synth.effects()).data[0]  # default: the first metric, "sentiment"
    assert list(heat.x) == ["-4", "0", "2", "10"]  # numeric order, not string order
    assert list(heat.y) == ["2", "4"]
    for i, layer in enumerate([2, 4]):
        for j, coeff in enumerate([-4.0, 0.0, 2.0, 10.0]):
            expected = synth.EFFECT.get((layer, coeff))
            assert heat.z[i][j] == expected, (layer, coeff)
    assert heat.z[0][0] is None  # layer 2 has no c = -4 cell
    assert heat.zmid == 0
    low, high, steered, unsteered, n = heat.customdata[1][3]  # layer 4, c = 10
    assert (low, high, n) == (pytest.approx(0.9), pytest.approx(1.5), 16)
    assert steered == pytest.approx(0.22) and unsteered == pytest.approx(0.1)


def test_effect_heatmap_other_metric_and_unknown_metric():
    heat = effect_heatmap(synth.effects(), metric="kl").data[0]
    assert heat.z[1][3] == pytest.approx(2 * synth.KL[(4, 10.0)])
    with pytest.raises(st.errors.InvalidArgumentError, match=r"'toxicity' is not in the table; available metrics: \['sentiment', 'kl'\]"):
        effect_heatmap(synth.effects(), metric="toxicity")


def test_effect_heatmap_rejects_duplicate_cells():
    table = synth.effects()
    with pytest.raises(st.errors.InvalidArgumentError, match="several rows for layer 2, coeff 0.0"):
        effect_heatmap(pd.concat([table, table.iloc[:1]]))


# ---------------------------------------------------------------------------------------------
# frontier_figure (pareto_front itself: tests/test_stats.py)


def test_frontier_marks_exactly_the_pareto_cells():
    fig = frontier_figure(synth.effects(), "sentiment", cost_metric="kl")
    points, front = fig.data
    # every cell with coeff != 0 (five), labelled for the hover
    assert sorted(points.text) == sorted(["L2 c2", "L2 c10", "L4 c-4", "L4 c2", "L4 c10"])
    by_label = dict(zip(points.text, zip(points.x, points.y)))
    assert by_label["L4 c10"] == (pytest.approx(0.9), pytest.approx(1.2))
    assert list(points.marker.color) == [2, 2, 4, 4, 4]
    # (kl, d): L2c2 (0.05, 0.5), L4c2 (0.1, 0.9), L2c10 (0.8, 1.6) are on the front; L4c-4 and L4c10 are not
    assert list(front.text) == ["L2 c2", "L4 c2", "L2 c10"]
    assert list(front.x) == pytest.approx([0.05, 0.1, 0.8])
    assert front.mode == "lines+markers" and front.marker.symbol != points.marker.symbol


def test_frontier_errors_name_the_available_metrics():
    with pytest.raises(st.errors.InvalidArgumentError, match=r"metric 'ppl' is not in the table; available metrics"):
        frontier_figure(synth.effects(), "sentiment", cost_metric="ppl")
    only_zero = synth.effects().query("coeff == 0")
    with pytest.raises(st.errors.InvalidArgumentError, match="no \\(layer, coeff ≠ 0\\) cell"):
        frontier_figure(only_zero, "sentiment")


# ---------------------------------------------------------------------------------------------
# norm_layers_figure


def test_norm_layers_lines_per_position():
    fig = norm_layers_figure(synth.norm_layers())
    assert [t.name for t in fig.data] == ["pos 0 '<bos>'", "residual pos 0", "pos 1 ' Love'", "residual pos 1"]
    assert [t.line.dash for t in fig.data] == [None, "dash", None, "dash"]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    assert list(fig.data[2].y) == [2.0, 4.0, 6.0] and list(fig.data[3].y) == [10.0, 20.0, 30.0]
    assert list(fig.data[2].customdata) == pytest.approx([0.2, 0.2, 0.2])
    assert fig.layout.yaxis.type == "log"
    assert norm_layers_figure(synth.norm_layers(), log_y=False).layout.yaxis.type == "linear"


def test_norm_layers_rejects_duplicates():
    table = synth.norm_layers()
    with pytest.raises(st.errors.InvalidArgumentError, match="several rows for layer 0, position 0"):
        norm_layers_figure(pd.concat([table, table.iloc[:1]]))


# ---------------------------------------------------------------------------------------------
# token_view_figure


def test_token_view_cells():
    heat = token_view_figure(synth.token_view(3)).data[0]
    assert list(heat.y) == ["steered c=4 #0", "unsteered c=4 #1", "steered c=4 #2"]
    assert list(heat.x) == [0, 1, 2]
    assert [list(r) for r in heat.z] == [[0.0, 0.1, 0.2], [-1.0, -1.1, None], [2.0, 2.1, 2.2]]
    assert list(heat.text[1]) == ["·t10", "·t11", ""]
    assert heat.texttemplate == "%{text}" and heat.zmid == 0
    assert heat.customdata[2][1] == ["' t21'", "steered"]
    assert token_view_figure(synth.token_view(3)).layout.yaxis.autorange == "reversed"


def test_token_view_truncates_rows_and_disambiguates_labels():
    with pytest.warns(st.SteeringWarning, match="5 completions; plotting the first 2"):
        heat = token_view_figure(synth.token_view(5), max_rows=2).data[0]
    assert len(heat.z) == 2
    same = synth.token_view(2).assign(label="prompt")
    assert list(token_view_figure(same).data[0].y) == ["prompt [0]", "prompt [1]"]


# ---------------------------------------------------------------------------------------------
# all figures: template, missing columns, wrong input types

FIGURES = {
    "token_scores_figure": (token_scores_figure, synth.token_scores, "source"),
    "lens_rank_figure": (lens_rank_figure, synth.lens_ranks, "top_tokens"),
    "effect_heatmap": (effect_heatmap, synth.effects, "ci_high"),
    "frontier_figure": (lambda t: frontier_figure(t, "sentiment"), synth.effects, "mean_steered"),
    "norm_layers_figure": (norm_layers_figure, synth.norm_layers, "resid_norm"),
    "token_view_figure": (token_view_figure, synth.token_view, "delta"),
    "norm_figure": (norm_figure, synth.norm_profile, "ratio"),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_figures_use_the_white_template(name):
    func, table, _ = FIGURES[name]
    fig = func(table())
    assert fig.layout.template.layout.paper_bgcolor == "white"
    assert fig.layout.title.text


@pytest.mark.parametrize("name", [n for n in FIGURES if n != "norm_figure"])
def test_missing_column_is_named_with_a_fix(name):
    func, table, column = FIGURES[name]
    with pytest.raises(st.errors.InvalidArgumentError, match=rf"missing \['{column}'\].*Fix: "):
        func(table().drop(columns=[column]))
    with pytest.raises(st.errors.InvalidArgumentError, match="needs a pandas DataFrame"):
        func([{"layer": 1}])
    with pytest.raises(st.errors.InvalidArgumentError, match="empty table"):
        func(table().iloc[:0])


def test_token_scores_accepts_an_object_carrying_the_table():
    class Result:
        table = synth.token_scores(groups=((1, "sum"),), k=2)

    assert [list(t.x) for t in token_scores_figure(Result()).data] == [[2.0, 1.0], [-1.0, -2.0]]


def test_the_package_re_exports_every_figure():
    names = ["norm_figure", "norm_layers_figure", "token_scores_figure", "lens_rank_figure", "effect_heatmap",
             "frontier_figure", "token_view_figure", "attribution_figure", "propagation_figure", "patching_figure",
             "position_effects_figure", "attention_figure"]
    assert sorted(plots.__all__) == sorted(names)
    for name in names:
        func = getattr(plots, name)
        assert func.__module__.startswith("steering.plots.") and func.__name__ == name
        assert func.__doc__ and ">>> " in func.__doc__
