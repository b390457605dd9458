"""Linear-probe directions (steering.probes): the fit, the vector and its meta, use as a condition, refusals."""

import pytest
import torch

import steering as st
from steering.conditions import Condition
from steering.errors import InvalidArgumentError
from steering.probes import fit_logistic, probe_direction
from test_conditions import FOOD, SPORT


def test_logistic_fit_separates_two_clusters():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 3, generator=g) + 2, torch.randn(20, 3, generator=g) - 2])
    y = torch.cat([torch.ones(20), torch.zeros(20)])
    w, b = fit_logistic(x, y)
    assert float(((x.double() @ w + b > 0).double() == y.double()).double().mean()) == 1.0


def test_probe_vector_is_a_condition_and_a_steering_vector(tiny, no_hooks):
    pos, neg = ["I love it", "so good", "great day", "nice one"], ["I hate it", "so bad", "awful day", "vile one"]
    vec = probe_direction(tiny, pos, neg, layer=1, heldout=0.25)
    assert vec.method == "probe" and vec.hook_name == "blocks.1.hook_resid_pre" and vec.is_direction
    assert vec.meta["n_heldout"] == 2 and vec.meta["token"] == "mean"
    assert vec.meta["train_accuracy"] == 1.0 and vec.meta["heldout_accuracy"] is not None
    cond = Condition.from_vector(vec, tiny)
    assert cond.threshold == vec.meta["threshold"]
    assert st.generate(tiny, "ab", vec, 2.0, max_new_tokens=3, do_sample=False, condition=cond)
    no_hooks(tiny)


@pytest.mark.parametrize("kwargs, match", [
    (dict(l2=0.0), r"l2"),
    (dict(heldout=0.9), r"heldout=0.9; allowed: a share in \[0, 0.5\]"),
])
def test_bad_options_are_refused(tiny, kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        probe_direction(tiny, ["a", "b"], ["c", "d"], layer=1, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("model_name, layer", [("smollm", 10), ("gemma", 14)])
def test_probe_topic_accuracy_on_real_models(request, model_name, layer):
    model = request.getfixturevalue(model_name)
    vec = probe_direction(model, FOOD, SPORT, layer=layer, heldout=0.5)
    assert vec.meta["heldout_accuracy"] >= 0.85, vec.meta


def test_probe_chat_reads_the_formatted_texts(tiny, monkeypatch, no_hooks):
    from steering.chat import TINY_TEMPLATE

    monkeypatch.setattr(tiny.tokenizer, "chat_template", TINY_TEMPLATE, raising=False)
    pos, neg = ["nice", "good", "kind"], ["bad", "vile", "mean"]
    chat = st.probe_direction(tiny, pos, neg, layer=1, heldout=0.0, chat=True)
    by_hand = st.probe_direction(tiny, [f"<s>u:{t}|a:" for t in pos], [f"<s>u:{t}|a:" for t in neg], layer=1,
                                 heldout=0.0)
    assert torch.allclose(chat.tensor, by_hand.tensor) and chat.prompts == by_hand.prompts
    with pytest.raises(st.errors.InvalidArgumentError, match="system= only with chat=True"):
        st.probe_direction(tiny, pos, neg, layer=1, system="hi")
    no_hooks(tiny)
