"""steering.display: a vector's repr and notebook HTML."""

import torch

import steering as st
from steering.display import summary, vector_html, vector_repr


def test_repr_names_the_pair_hook_shape_and_norms(tiny):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    text = repr(vec)
    assert text == vector_repr(vec)
    assert text.startswith("SteeringVector(actadd 'love' − 'hate' @ blocks.1.hook_resid_pre, shape=5×64, norms=[0, ")
    assert "model='tiny-llama', dtype=float32, device=cpu)" in text
    long = st.SteeringVector(torch.ones(10, 4), hook_name="blocks.0.hook_resid_pre")
    assert "norms=[2, 2, 2, 2, 2, 2, 2, 2, …]" in repr(long)
    assert "norm=2" in repr(long.direction("mean"))


def test_html_escapes_and_lists_positions(tiny):
    vec = st.actadd(tiny, "<b>", "", layer=0)
    page = vector_html(vec)
    assert vec._repr_html_() == page
    assert "<b>" not in page.replace("<b>SteeringVector</b>", "")  # the prompt's markup is escaped
    assert "&lt;b&gt;" in page and page.count("<tr><td>") == vec.n_pos
    direction = vec.direction()
    assert "p+ token" not in vector_html(direction) and summary(direction) == summary(vec)
