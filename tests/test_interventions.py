"""Intervention specs for TransformerLens 4's vLLM / Inspect backends: shapes, values, and the same edit as steer()."""

import pytest
import torch

import steering as st
from steering.tokens import tokenize_prompt


def resid(model, vec, prompt, coeff=None):
    tokens = tokenize_prompt(model, prompt).unsqueeze(0)
    with torch.no_grad():
        if coeff is None:
            _, cache = model.run_with_cache(tokens, names_filter=[vec.hook_name])
        else:
            with st.steer(model, vec, coeff):
                _, cache = model.run_with_cache(tokens, names_filter=[vec.hook_name])
    return cache[vec.hook_name]


def _transformer_lens_affine():
    """TransformerLens's own affine application (the Inspect/HF provider's ``_apply_affine``).

    Its module imports inspect_ai at load time, so the two pure functions are compiled
    straight from TransformerLens's source file instead.
    """
    import ast
    import importlib.util
    from pathlib import Path
    from typing import Any, Mapping

    root = Path(importlib.util.find_spec("transformer_lens").submodule_search_locations[0])
    source = (root / "model_bridge/sources/inspect/transformers_provider.py").read_text()
    tree = ast.parse(source)
    keep = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("_affine_op", "_apply_affine")]
    assert len(keep) == 2, "TransformerLens moved its affine helpers"
    namespace = {"torch": torch, "Any": Any, "Mapping": Mapping}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(root), "exec"), namespace)
    return namespace["_apply_affine"]


def apply_with_transformer_lens(spec, tensor):
    return _transformer_lens_affine()(tensor, {**spec, "value": torch.tensor(spec["value"])})


@pytest.mark.parametrize("backend, pos, neg", [("vllm", "a", "b"), ("inspect", "I love you", "I hate it")])
def test_spec_makes_the_same_edit_as_steer(any_tiny, backend, pos, neg):
    model = any_tiny
    vec = st.actadd(model, pos, neg, layer=1)
    specs = st.interventions.vllm_interventions(vec, 3.0, backend=backend)
    (name, spec), = specs.items()
    assert name == vec.hook_name and spec["op"] == "add"
    prompt = "the cat sat on the mat today"
    edited = apply_with_transformer_lens(spec, resid(model, vec, prompt))
    torch.testing.assert_close(edited, resid(model, vec, prompt, coeff=3.0), atol=1e-5, rtol=1e-5)


def test_vllm_values_are_one_row_at_the_differing_position(any_tiny):
    vec = st.actadd(any_tiny, "a", "b", layer=0)
    spec = st.interventions.vllm_interventions(vec, -2.0)["blocks.0.hook_resid_pre"]
    assert spec["pos"] == [1]  # BOS (position 0) is zero and left out
    assert torch.tensor(spec["value"]).shape == (any_tiny.cfg.d_model,)
    torch.testing.assert_close(torch.tensor(spec["value"]), -2.0 * vec.tensor[1])


def test_vllm_refuses_a_vector_that_differs_at_several_positions(any_tiny):
    vec = st.actadd(any_tiny, "I love you", "I hate it", layer=0)
    with pytest.raises(st.errors.InvalidArgumentError, match="backend='inspect'"):
        st.interventions.vllm_interventions(vec, 1.0)
    spec = st.interventions.vllm_interventions(vec, 1.0, backend="inspect")["blocks.0.hook_resid_pre"]
    assert torch.tensor(spec["value"]).shape == (len(spec["pos"]), any_tiny.cfg.d_model)


def test_direction_spans_every_position_and_several_vectors_give_several_hooks(any_tiny):
    a = st.actadd(any_tiny, "a", "b", layer=0).direction()
    b = st.actadd(any_tiny, "a", "b", layer=1, hook="resid_post")
    specs = st.interventions.vllm_interventions([a, b], 2.0, as_list=False)
    assert set(specs) == {"blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"}
    assert "pos" not in specs["blocks.0.hook_resid_pre"]
    torch.testing.assert_close(specs["blocks.0.hook_resid_pre"]["value"], 2.0 * a.tensor)
    prompt = "hello there my friend"
    edited = apply_with_transformer_lens({**specs["blocks.0.hook_resid_pre"],
                                          "value": specs["blocks.0.hook_resid_pre"]["value"].tolist()},
                                         resid(any_tiny, a, prompt))
    torch.testing.assert_close(edited, resid(any_tiny, a, prompt, coeff=2.0), atol=1e-5, rtol=1e-5)


def test_bad_arguments(any_tiny, untyped):
    vec = st.actadd(any_tiny, "a", "b", layer=0)
    with pytest.raises(st.errors.InvalidArgumentError, match="backend='sglang'"):
        st.interventions.vllm_interventions(vec, backend="sglang")
    with pytest.raises(st.errors.InvalidCoefficientError):
        st.interventions.vllm_interventions(vec, float("nan"))
    with pytest.raises(st.errors.InvalidArgumentError, match="two vectors at"):
        st.interventions.vllm_interventions([vec, vec])
    assert st.interventions.vllm_interventions(vec, 0.0) == {}  # c = 0 adds nothing
