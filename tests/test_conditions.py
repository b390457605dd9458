"""Conditional steering (steering.conditions): thresholds, combining, per-row decisions that leave false rows
exactly unsteered and true rows exactly as unconditional steering, refusals, and detection on the real models."""

import pytest
import torch

import steering as st
from conftest import PROMPTS
from steering.conditions import Condition, Gate, best_threshold, condition_from_prompts
from steering.errors import InvalidArgumentError, VectorMismatchError
from steering.placement import Span
from steering.testing import tiny_model
from steering.tokens import fill_id, left_pad, tokenize_prompt
from steering.vectors import SteeringVector

FOOD = [
    "How do I bake sourdough bread at home?", "What is a good recipe for tomato soup?",
    "Which spices go well with roasted chicken?", "How long should I boil an egg?",
    "What can I cook with leftover rice?", "Is olive oil better than butter for frying?",
    "How do you make fresh pasta dough?", "What wine pairs with grilled salmon?",
    "Give me a quick vegetarian dinner idea.", "How do I caramelize onions properly?",
    "What makes a pizza crust crispy?", "How much sugar goes into a chocolate cake?",
    "Can I freeze homemade lasagna?", "What is the best way to cook steak medium rare?",
    "How do I make a creamy risotto?", "Which cheese melts best on a burger?",
    "What should I put in a fruit salad?", "How do I keep avocados from turning brown?",
    "What is the secret to fluffy pancakes?", "How do you season a cast iron pan for cooking?",
    "Suggest a healthy breakfast with oats.", "How spicy is a jalapeno pepper?",
    "What herbs go into a pesto sauce?", "How do I roast vegetables in the oven?",
    "What is a traditional Japanese ramen broth made of?", "How can I make my curry thicker?",
    "Which flour is best for cookies?", "How do I marinate tofu for stir fry?",
    "What dessert can I make with apples?", "How do I cook lentils without them going mushy?",
    "Tell me about French pastry and croissants.", "What goes into a classic Caesar salad?",
    "How do I make guacamole taste better?", "What is the difference between baking soda and baking powder in recipes?",
    "How long do I grill corn on the cob?", "Recommend a sauce for grilled shrimp.",
    "How do I make homemade ice cream without a machine?", "What soup is good for a cold winter evening?",
    "How do you fry dumplings so they stay juicy?", "Which fruits are sweetest in summer?",
]
SPORT = [
    "Who won the last football World Cup?", "How do I improve my tennis serve?",
    "What are the rules of offside in soccer?", "How many players are on a basketball team?",
    "What is a good training plan for a marathon?", "How does scoring work in cricket?",
    "Who is the fastest sprinter in history?", "How do I get better at swimming freestyle?",
    "What equipment do I need for ice hockey?", "How long is a professional boxing round?",
    "Which team has won the most NBA championships?", "How do I warm up before a football match?",
    "What is a hat trick in hockey?", "How do cyclists train for the Tour de France?",
    "What muscles does rowing work?", "How do you score a touchdown in American football?",
    "Who holds the record for most Olympic gold medals?", "How do I stop slicing my golf drive?",
    "What is the offside trap in defense?", "How heavy is a shot put ball?",
    "Tips for a beginner learning to ski downhill.", "How do penalty shootouts work in soccer?",
    "What is the best stance for a baseball batter?", "How many sets are in a volleyball match?",
    "How should a goalkeeper position for a free kick?", "What does a quarterback do on the field?",
    "How do I train my sprint speed for rugby?", "Which country dominates table tennis tournaments?",
    "How are points scored in a badminton rally?", "What is a personal best time for a 5k run?",
    "Explain the rules of a grand slam in tennis.", "How do referees decide a yellow card?",
    "What makes a good point guard in basketball?", "How long is an Olympic swimming pool?",
    "How do wrestlers cut weight before a match?", "Who won the Super Bowl last season?",
    "How do I practice dribbling a basketball?", "What is the scoring system in gymnastics?",
    "How fast do pitchers throw in major league baseball?", "What is the strategy in a relay race?",
]

MIXED = PROMPTS + ["What a lovely day", "zzz"]


@pytest.fixture
def cond(tiny):
    """A condition on the tiny model that holds for some of MIXED and not for others."""
    c = condition_from_prompts(tiny, ["I went up to my friend", "What a lovely day"], ["abcdefghijk", "zzz"], layer=1)
    decided = c.predict(MIXED)
    assert any(decided) and not all(decided)
    return c


def test_best_threshold_maximises_balanced_accuracy():
    assert best_threshold(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == (1.5, 1.0)
    t, acc = best_threshold(torch.tensor([1.0, 5.0, 6.0]), torch.tensor([0.0, 2.0]))
    assert acc == pytest.approx((2 / 3 + 1) / 2) and 2.0 <= t < 5.0


def test_conditions_combine_with_and_or_not(tiny, cond):
    other = condition_from_prompts(tiny, ["abcdefghijk", "Hello there, you"], ["zzz", "What a lovely day"], layer=0)
    a, b = cond.predict(MIXED), other.predict(MIXED)
    assert (cond & other).predict(MIXED) == [x and y for x, y in zip(a, b)]
    assert (cond | other).predict(MIXED) == [x or y for x, y in zip(a, b)]
    assert (~cond).predict(MIXED) == [not x for x in a]
    assert (cond & ~cond).predict(MIXED) == [False] * len(MIXED)
    assert sorted((cond & other).hook_names) == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]
    assert [s > 0 for s in cond.scores(MIXED)] == a


def test_last_token_conditions_and_conditions_from_vectors(tiny):
    c = condition_from_prompts(tiny, ["ab", "cd"], ["xy", "zw"], layer=1, token="last")
    vec = SteeringVector(c.direction * 3, hook_name=c.hook_name, model_name=tiny.cfg.model_name,
                         meta={"threshold": c.threshold, "token": "last"})
    again = Condition.from_vector(vec, tiny)
    assert again.scores(["ab", "zw"]) == pytest.approx(c.scores(["ab", "zw"]), abs=1e-5)
    with pytest.raises(InvalidArgumentError, match=r"threshold=None and the vector's meta has no 'threshold'"):
        Condition.from_vector(SteeringVector(torch.ones(64), hook_name="blocks.1.hook_resid_pre"), tiny)


@pytest.mark.parametrize("backend", ["auto", "bridge"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_steers_exactly_the_rows_whose_condition_holds(tiny, cond, backend, use_cache, no_hooks):
    vec = st.actadd(tiny, "I love you!", "I hate you", layer=1)
    kw = dict(max_new_tokens=6, do_sample=False, backend=backend, use_cache=use_cache)
    plain = st.generate(tiny, MIXED, None, **kw)
    steered = st.generate(tiny, MIXED, vec, 20.0, **kw)
    conditional = st.generate(tiny, MIXED, vec, 20.0, condition=cond, **kw)
    decided = cond.predict(MIXED)
    assert conditional == [s if d else p for d, s, p in zip(decided, steered, plain)]
    assert steered != plain
    per_coeff = st.generate(tiny, MIXED, vec, [0.0, 20.0], condition=cond, **kw)  # per-row coefficients too
    assert per_coeff == plain + conditional
    no_hooks(tiny)


def test_steer_block_leaves_false_rows_bitwise_unsteered(tiny, cond, no_hooks):
    d = st.actadd(tiny, "I love you!", "I hate you", layer=1).direction("mean")
    tokens, mask = left_pad([tokenize_prompt(tiny, p) for p in MIXED], fill_id(tiny))
    with torch.no_grad():
        plain = tiny(tokens, attention_mask=mask)
        with st.steer(tiny, d, 8.0):
            steered = tiny(tokens, attention_mask=mask)
        with st.steer(tiny, d, 8.0, condition=cond):
            conditional = tiny(tokens, attention_mask=mask)
    for row, decided in enumerate(cond.predict(MIXED)):
        assert torch.equal(conditional[row], steered[row] if decided else plain[row]), row
    no_hooks(tiny)


def test_gate_reads_the_mean_and_the_last_real_token_under_left_padding():
    c = Condition("linear", direction=torch.tensor([1.0, 0.0]), threshold=0.0, hook_name="blocks.0.hook_resid_pre",
                  token="mean", model=None)
    gate = Gate(c)
    resid = torch.tensor([[[9.0, 0], [-9.0, 0], [1.0, 0]], [[5.0, 0], [-3.0, 0], [1.0, 0]]])
    gate.read("blocks.0.hook_resid_pre", resid, Span.from_mask(torch.tensor([[0, 1, 1], [1, 1, 1]])))
    assert gate.allowed(2).tolist() == [True, False]  # row 0: mean of [1]; row 1: mean of [-3, 1]
    with pytest.raises(st.SteeringError, match=r"no decision for this forward batch of 3 rows"):
        gate.allowed(3)


def test_a_condition_from_another_model_is_refused(tiny, tiny_gpt2, cond):
    vec = st.actadd(tiny_gpt2, "a", "b", layer=1)
    with pytest.raises(VectorMismatchError, match=r"the condition was made on 'tiny-llama'.*Fix: rebuild it"):
        st.generate(tiny_gpt2, "hi", vec, 2.0, condition=cond, max_new_tokens=2)
    with pytest.raises(VectorMismatchError, match=r"the condition was made on"):
        st.steer(tiny_gpt2, vec, 2.0, condition=cond)
    wide = tiny_model(d_model=32)
    with pytest.raises(VectorMismatchError, match=r"d_model=64\) but is used with 'tiny-llama' \(d_model=32\)"):
        cond.predict(["ab"], model=wide)


def test_a_steer_block_refuses_a_condition_read_after_the_steered_layer(tiny, cond):
    early = st.actadd(tiny, "a", "b", layer=0)
    with pytest.raises(InvalidArgumentError, match=r"the condition reads layer 1 but the vector at blocks.0"):
        st.steer(tiny, early, 2.0, condition=cond)


@pytest.mark.slow
@pytest.mark.parametrize("model_name, layer", [("smollm", 10), ("gemma", 14)])
def test_topic_detection_on_held_out_prompts(request, model_name, layer):
    """Fit on every other prompt, test on the rest: food vs sport (measured: SmolLM2 1.0, Gemma 0.975)."""
    model = request.getfixturevalue(model_name)
    c = condition_from_prompts(model, FOOD[::2], SPORT[::2], layer=layer)
    food, sport = c.predict(FOOD[1::2]), c.predict(SPORT[1::2])
    accuracy = (sum(food) + sum(not x for x in sport)) / (len(food) + len(sport))
    assert accuracy >= 0.85, accuracy


@pytest.mark.slow
def test_conditional_chat_generation_on_smollm(smollm):
    c = condition_from_prompts(smollm, FOOD[::2], SPORT[::2], layer=10)
    vec = st.actadd(smollm, "Love", "Hate", layer=6).direction("sum")
    prompts = [FOOD[1], SPORT[1], FOOD[3]]
    kw = dict(max_new_tokens=8, do_sample=False, chat=True, positions="response")
    plain = st.generate(smollm, prompts, None, chat=True, max_new_tokens=8, do_sample=False)
    steered = st.generate(smollm, prompts, vec, 6.0, **kw)
    conditional = st.generate(smollm, prompts, vec, 6.0, condition=c, **kw)
    assert c.predict(prompts) == [True, False, True]
    assert conditional == [steered[0], plain[1], steered[2]]


# ---------------------------------------------------------------- a condition belongs to its model: refused elsewhere,
# whatever the entry point and however it was combined, with the fix named and no hook left
FOREIGN = r"the condition was made on 'tiny-llama' \(d_model=64\) but is used with 'tiny-gpt2' \(d_model=64\); " \
          r"allowed: the model it was made on\. Fix: rebuild it with st\.condition_from_prompts on this model\."


@pytest.mark.parametrize("entry", ["generate", "generate unsteered", "generate per-row coeffs", "steer", "predict",
                                   "scores"])
@pytest.mark.parametrize("form", ["leaf", "not", "and", "or"])
def test_a_condition_from_another_model_is_refused_at_every_entry(tiny, tiny_gpt2, cond, entry, form, no_hooks):
    used = {"leaf": cond, "not": ~cond, "and": cond & ~cond, "or": (~cond) | cond}[form]
    vec = st.actadd(tiny_gpt2, "a", "b", layer=1)
    calls = {
        "generate": lambda: st.generate(tiny_gpt2, ["hi", "yo"], vec, 2.0, condition=used, max_new_tokens=2),
        "generate unsteered": lambda: st.generate(tiny_gpt2, "hi", None, condition=used, max_new_tokens=2),
        "generate per-row coeffs": lambda: st.generate(tiny_gpt2, "hi", vec, [0.0, 2.0], condition=used,
                                                       max_new_tokens=2),
        "steer": lambda: st.steer(tiny_gpt2, vec, 2.0, condition=used),
        "predict": lambda: used.predict(["hi"], model=tiny_gpt2),
        "scores": lambda: used.scores(["hi"], model=tiny_gpt2),
    }
    with pytest.raises(VectorMismatchError, match=FOREIGN) as info:
        calls[entry]()
    assert isinstance(info.value, st.SteeringError)
    no_hooks(tiny_gpt2)
    no_hooks(tiny)


@pytest.mark.parametrize("combine", ["and", "or"])
def test_conditions_from_two_models_do_not_combine(tiny, tiny_gpt2, cond, combine):
    other = condition_from_prompts(tiny_gpt2, ["ab", "cd"], ["xy", "zw"], layer=1)
    op = (lambda a, b: a & b) if combine == "and" else (lambda a, b: a | b)
    for a, b in [(cond, other), (other, cond), (cond, ~other), (~cond, other & other)]:
        with pytest.raises(VectorMismatchError, match=r"the condition was made on .*Fix: rebuild it"):
            op(a, b)


def test_a_vector_from_another_model_is_no_condition_there(tiny, tiny_gpt2):
    vec = SteeringVector(torch.ones(64), hook_name="blocks.1.hook_resid_pre", model_name=tiny.cfg.model_name,
                         meta={"threshold": 0.0})
    with pytest.raises(VectorMismatchError, match=r"comes from model 'tiny-llama' but is applied to 'tiny-gpt2'.*Fix:"):
        Condition.from_vector(vec, tiny_gpt2)


@pytest.mark.parametrize("entry", ["generate", "steer"])
def test_a_condition_that_is_not_a_condition_is_refused_with_the_fix(tiny, entry, untyped, no_hooks):
    vec = st.actadd(tiny, "a", "b", layer=1)
    with pytest.raises(InvalidArgumentError, match=r"condition='food'; allowed: a steering\.conditions\.Condition or "
                                                   r"None\. Fix: build one with st\.condition_from_prompts"):
        if entry == "generate":
            st.generate(tiny, "hi", vec, 2.0, condition="food", max_new_tokens=2)
        else:
            st.steer(tiny, vec, 2.0, condition="food")
    no_hooks(tiny)


@pytest.mark.parametrize("other", [5, "food", None])
def test_combining_with_a_non_condition_is_a_clear_error(tiny, other):
    cond = condition_from_prompts(tiny, ["ab", "cd"], ["xy", "zw"], layer=1)
    for combine in (lambda: cond & other, lambda: cond | other):
        with pytest.raises(st.errors.InvalidArgumentError, match="allowed: two Conditions"):
            combine()


def test_conditions_benchmark_smoke_run(monkeypatch, capsys, tmp_path):
    """benchmarks/bench_conditions.py runs end to end on a tiny model: rejected rows exactly unsteered."""
    import json
    import runpy
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["bench_conditions.py", "--smoke", "--json", str(out)])
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    runpy.run_path(str(root / "benchmarks" / "bench_conditions.py"), run_name="__main__")
    assert "hooks left attached: 0" in capsys.readouterr().out
    (res,) = json.loads(out.read_text())
    assert res["off_bitwise_unsteered"] == res["rows_off"] > 0 and res["kl_off_conditional_max"] == 0.0
    assert res["kl_on"] == res["kl_on_unconditional"] and res["hooks_left"] == 0
