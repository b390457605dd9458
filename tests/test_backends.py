"""steering.backends: backend= is an argument; the environment only supplies the default of "auto"."""

import pytest
import torch

import steering as st
from steering._fast import decoder_layers, twin_for
from steering.backends import check_backend, hf_module, resolve
from steering.errors import InvalidArgumentError
from steering.vectors import SteeringVector


@pytest.fixture
def vecs(tiny):
    pre = st.actadd(tiny, "love", "hate", layer=1)
    mid = st.actadd(tiny, "love", "hate", layer=1, hook="resid_mid")
    return pre, mid


def test_auto_picks_the_twin_where_it_can_serve(tiny, vecs):
    pre, mid = vecs
    assert resolve(tiny, [pre]).kind == "twin" and resolve(tiny, [pre]).module is twin_for(tiny)
    assert resolve(tiny, []).kind == "twin"
    assert resolve(tiny, [pre, mid]).kind == "bridge"  # resid_mid exists only on the bridge
    assert resolve(tiny, [pre], "bridge").module is hf_module(tiny)


def test_forcing_the_twin_for_what_it_cannot_serve_says_why(tiny, vecs):
    with pytest.raises(InvalidArgumentError, match=r"backend='twin' cannot serve this call: the vector at "
                                                   r"blocks\.1\.hook_resid_mid is not at a decoder layer's input"):
        resolve(tiny, [vecs[1]], "twin")


def test_unknown_backend_is_refused(tiny, untyped):
    with pytest.raises(InvalidArgumentError, match=r"backend='fast'; allowed: 'auto', 'bridge', 'twin'\. Fix:"):
        check_backend("fast")
    with pytest.raises(InvalidArgumentError, match=r"backend='gpu'"):
        st.generate(tiny, "ab", None, max_new_tokens=2, backend="gpu")


def test_environment_default_takes_effect_when_changed(tiny, vecs, monkeypatch):
    """The variable is read at each call: changing it after the model was used changes the next call."""
    pre = vecs[0]
    assert resolve(tiny, [pre]).kind == "twin"
    monkeypatch.setenv("STEERING_BACKEND", "bridge")
    assert resolve(tiny, [pre]).kind == "bridge"
    assert resolve(tiny, [pre], "twin").kind == "twin"  # an explicit argument beats the default
    monkeypatch.delenv("STEERING_BACKEND")
    monkeypatch.setenv("STEERING_FAST", "0")
    assert resolve(tiny, [pre]).kind == "bridge"
    monkeypatch.setenv("STEERING_FAST", "1")
    assert resolve(tiny, [pre]).kind == "twin"


def _calls(model, vec):
    """Count forward calls of the bridge's hook point and of the twin's decoder layer at the vector's layer."""
    counts = {"bridge": 0, "twin": 0}
    point = model.hook_dict[vec.hook_name]

    def on_bridge(x, hook):
        counts["bridge"] += 1

    handle = point.add_hook(on_bridge, dir="fwd")
    twin_handle = decoder_layers(twin_for(model))[vec.layer].register_forward_pre_hook(
        lambda m, a: counts.__setitem__("twin", counts["twin"] + 1))
    return counts, lambda: (handle.hook.remove(), point.fwd_hooks.remove(handle), twin_handle.remove())


@pytest.mark.parametrize("backend", ["bridge", "twin"])
def test_generation_runs_where_asked_and_both_give_the_same_text(tiny, vecs, backend, no_hooks):
    pre = vecs[0]
    counts, remove = _calls(tiny, pre)
    try:
        text = st.generate(tiny, ["hello", "abcd"], pre, 3.0, max_new_tokens=6, do_sample=False, backend=backend)
    finally:
        remove()
    assert counts[backend] > 0 and counts["twin" if backend == "bridge" else "bridge"] == 0
    assert text == st.generate(tiny, ["hello", "abcd"], pre, 3.0, max_new_tokens=6, do_sample=False,
                               backend="bridge" if backend == "twin" else "twin")
    no_hooks(tiny)


def test_target_hooks_are_removable(tiny, vecs, no_hooks):
    for kind in ("bridge", "twin"):
        target = resolve(tiny, [vecs[0]], kind)
        remove = target.add_hook(vecs[0], lambda resid: resid * 0)
        with torch.no_grad():
            zeroed = target.module(input_ids=tiny.to_tokens("abc")).logits
        remove()
        with torch.no_grad():
            plain = target.module(input_ids=tiny.to_tokens("abc")).logits
        assert not torch.allclose(zeroed, plain)
    no_hooks(tiny)


def test_a_model_without_a_twin_falls_back_to_the_bridge(tiny, monkeypatch):
    monkeypatch.setattr("steering.backends._fast.twin_for", lambda model: None)
    vec = SteeringVector(torch.ones(64), hook_name="blocks.0.hook_resid_pre")
    assert resolve(tiny, [vec]).kind == "bridge"
    with pytest.raises(InvalidArgumentError, match=r"no plain Hugging Face twin can be built for LlamaForCausalLM"):
        resolve(tiny, [vec], "twin")
