"""Chat prompts (steering.chat): the tokenizer's own template, one BOS, the assistant turn's start, clear refusals."""

import pytest
import torch

import steering as st
from steering.chat import TINY_TEMPLATE, chat_messages, chat_prompt, chat_prompts, response_start
from steering.errors import InvalidArgumentError
from steering.testing import tiny_model
from steering.tokens import tokenize_prompt

PROMPTS = ["hello", "how are you today", "x"]


@pytest.fixture
def chat_tiny(tiny, monkeypatch):
    """The shared tiny model with a small chat template for the test's duration."""
    monkeypatch.setattr(tiny.tokenizer, "chat_template", TINY_TEMPLATE, raising=False)
    return tiny


def by_hand(model, prompt, max_new_tokens, system=None):
    """Greedy decoding of the template's own tokens (tokenizer without extra special tokens), no cache."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = model.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tokens = torch.tensor([model.tokenizer(text, add_special_tokens=False).input_ids])
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(tokens)[0, -1].argmax())
            if nxt == model.tokenizer.eos_token_id:
                break
            new.append(nxt)
            tokens = torch.cat([tokens, torch.tensor([[nxt]])], dim=1)
    return model.tokenizer.decode(new, skip_special_tokens=True)


def test_chat_prompt_is_the_tokenizers_template_with_the_generation_prompt(chat_tiny):
    tok = chat_tiny.tokenizer
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                {"role": "user", "content": "again"}]
    assert chat_prompt(chat_tiny, messages) == tok.apply_chat_template(messages, tokenize=False,
                                                                       add_generation_prompt=True)
    assert chat_prompt(chat_tiny, "hi") == "<s>u:hi|a:"
    assert chat_prompt(chat_tiny, "hi", system="be brief") == "<s>s:be brief|u:hi|a:"


def test_the_templates_bos_is_the_only_bos(chat_tiny):
    ids = tokenize_prompt(chat_tiny, chat_prompt(chat_tiny, "hi")).tolist()
    assert ids == chat_tiny.tokenizer(chat_prompt(chat_tiny, "hi"), add_special_tokens=False).input_ids
    assert ids.count(chat_tiny.tokenizer.bos_token_id) == 1 and ids[0] == chat_tiny.tokenizer.bos_token_id


def test_response_start_is_the_assistant_headers_first_token(chat_tiny):
    for prompt in PROMPTS:
        ids = tokenize_prompt(chat_tiny, chat_prompt(chat_tiny, prompt))
        start = response_start(chat_tiny, prompt)
        assert chat_tiny.tokenizer.decode(ids[start:]) == "a:"
    texts, starts = chat_prompts(chat_tiny, PROMPTS, system="s")
    assert texts[0] == "<s>s:s|u:hello|a:" and starts == [response_start(chat_tiny, p, "s") for p in PROMPTS]


@pytest.mark.parametrize("system", [None, "be kind"])
def test_chat_generation_equals_decoding_the_template_by_hand(chat_tiny, system, no_hooks):
    kw = dict(max_new_tokens=6, do_sample=False, chat=True, system=system)
    batched = st.generate(chat_tiny, PROMPTS, None, **kw)
    one_by_one = [st.generate(chat_tiny, p, None, **kw)[0] for p in PROMPTS]
    expected = [by_hand(chat_tiny, p, 6, system) for p in PROMPTS]
    assert batched == one_by_one == expected
    assert batched != st.generate(chat_tiny, PROMPTS, None, max_new_tokens=6, do_sample=False)
    no_hooks(chat_tiny)


@pytest.mark.parametrize("prompt, match", [
    ([], r"prompt=\[\] has no messages; allowed: at least one message\. Fix:"),
    (5, r"prompt=5 is a int; allowed: a string \(one user turn\) or a list of \{'role', 'content'\} messages\. Fix:"),
    ([{"role": "bot", "content": "x"}], r"message\[0\] has role='bot'; allowed: 'system', 'user', 'assistant'\. Fix:"),
    ([{"role": "user", "content": ""}], r"message\[0\] has content=''; allowed: a non-empty string\. Fix:"),
    ([{"role": "user"}], r"message\[0\]=\{'role': 'user'\}; allowed: a mapping with exactly the keys"),
    (["hi"], r"message\[0\]='hi'; allowed: a mapping"),
])
def test_malformed_messages_are_refused_with_the_fix(prompt, match, untyped):
    with pytest.raises(InvalidArgumentError, match=match):
        chat_messages(prompt)


def test_system_twice_is_refused():
    with pytest.raises(InvalidArgumentError, match=r"system= was given and the messages already hold a system"):
        chat_messages([{"role": "system", "content": "a"}, {"role": "user", "content": "b"}], system="c")


def test_a_model_without_a_chat_template_is_refused_by_name():
    model = tiny_model()  # its own tokenizer: no template
    with pytest.raises(InvalidArgumentError, match=r"has no chat template \(a base model\).*Fix: pass chat=False"):
        chat_prompt(model, "hi")
    with pytest.raises(InvalidArgumentError, match=r"no chat template"):
        st.generate(model, "hi", None, chat=True, max_new_tokens=2)


def test_system_without_chat_is_refused(tiny):
    with pytest.raises(InvalidArgumentError, match=r"system='x' is a chat template's system prompt, but chat=False"):
        st.generate(tiny, "hi", None, system="x", max_new_tokens=2)


@pytest.mark.slow
def test_smollm_chat_generation_equals_the_template_by_hand(smollm):
    prompts = ["What is the capital of France?", "Name a fruit."]
    kw = dict(max_new_tokens=8, do_sample=False, chat=True)
    batched = st.generate(smollm, prompts, None, **kw)
    assert batched == [st.generate(smollm, p, None, **kw)[0] for p in prompts]
    assert batched == [by_hand(smollm, p, 8) for p in prompts]
    ids = tokenize_prompt(smollm, chat_prompt(smollm, prompts[0])).tolist()
    assert ids[:2] != [1, 1] and ids[0] == 1  # <|im_start|> once: the template's own


@pytest.mark.slow
def test_gemma_base_model_has_no_chat_template(gemma):
    with pytest.raises(InvalidArgumentError, match=r"no chat template"):
        chat_prompt(gemma, "hi")


# ---------------------------------------------------------------- bad input at every entry point: a SteeringError
# that names the fix, and no hook left behind
NO_TEMPLATE = r"has no chat template \(a base model\); allowed: .*Fix: pass chat=False"


@pytest.mark.parametrize("entry", ["chat_prompt", "response_start", "chat_prompts", "generate", "generate with system",
                                   "generate positions=response", "generate with a condition"])
def test_a_missing_template_is_refused_with_the_fix_at_every_entry(tiny, entry, no_hooks):
    from steering.conditions import condition_from_prompts

    vec = st.mean_diff(tiny, ["a good day"], ["a bad day"], layer=1, token="mean")
    kw = dict(max_new_tokens=2, chat=True)
    calls = {
        "chat_prompt": lambda: chat_prompt(tiny, "hi"),
        "response_start": lambda: response_start(tiny, "hi"),
        "chat_prompts": lambda: chat_prompts(tiny, ["hi", "yo"]),
        "generate": lambda: st.generate(tiny, "hi", None, **kw),
        "generate with system": lambda: st.generate(tiny, "hi", vec, 2.0, system="be brief", **kw),
        "generate positions=response": lambda: st.generate(tiny, "hi", vec, 2.0, positions="response", **kw),
        "generate with a condition": lambda: st.generate(
            tiny, ["hi", "yo"], vec, 2.0, condition=condition_from_prompts(tiny, ["hi"], ["yo"], layer=1), **kw),
    }
    with pytest.raises(InvalidArgumentError, match=NO_TEMPLATE) as info:
        calls[entry]()
    assert isinstance(info.value, st.SteeringError)
    no_hooks(tiny)


BAD_MESSAGES = [
    ([], r"prompt=\[\] has no messages; allowed: at least one message\. Fix: pass \[\{'role': 'user'"),
    ([{"role": "bot", "content": "x"}],
     r"message\[0\] has role='bot'; allowed: 'system', 'user', 'assistant'\. Fix: use"),
    ([{"role": "user", "content": "x"}, {"role": "User", "content": "y"}],
     r"message\[1\] has role='User'; allowed: .*Fix:"),
    ([{"role": "user", "content": "x", "name": "y"}], r"message\[0\]=.*allowed: a mapping with exactly the keys 'role' "
                                                      r"and 'content'\. Fix:"),
    ([{"role": "user", "content": None}], r"message\[0\] has content=None; allowed: a non-empty string\. Fix:"),
]


@pytest.mark.parametrize("entry", ["chat_prompt", "response_start", "chat_prompts"])
@pytest.mark.parametrize("messages, match", BAD_MESSAGES, ids=["empty", "unknown role", "capitalised role",
                                                               "extra key", "no content"])
def test_bad_message_lists_are_refused_with_the_fix_at_every_entry(chat_tiny, entry, messages, match, untyped,
                                                                   no_hooks):
    calls = {"chat_prompt": lambda: chat_prompt(chat_tiny, messages),
             "response_start": lambda: response_start(chat_tiny, messages),
             "chat_prompts": lambda: chat_prompts(chat_tiny, ["fine", messages])}
    with pytest.raises(InvalidArgumentError, match=match):
        calls[entry]()
    no_hooks(chat_tiny)


@pytest.mark.parametrize("system, match", [
    ("", r"system=''; allowed: a non-empty string or None\. Fix:"),
    (5, r"system=5; allowed: a non-empty string or None\. Fix:"),
])
def test_a_bad_system_prompt_is_refused_before_generating(chat_tiny, system, match, untyped, no_hooks):
    vec = st.mean_diff(chat_tiny, ["a good day"], ["a bad day"], layer=1, token="mean")
    with pytest.raises(InvalidArgumentError, match=match):
        st.generate(chat_tiny, ["hi", "yo"], vec, 2.0, chat=True, system=system, positions="response", max_new_tokens=2)
    no_hooks(chat_tiny)


def test_generate_takes_conversations_and_prefills(chat_tiny, no_hooks):
    """A message list is one prompt: a multi-turn conversation, or an answer to continue (prefill)."""
    convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "ab"}]
    prefill = [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "c"}]
    kw = dict(max_new_tokens=4, do_sample=False)
    got = st.generate(chat_tiny, [convo, prefill, "ab"], None, chat=True, **kw)
    want = [st.generate(chat_tiny, t, None, **kw)[0] for t in ["<s>u:hi|a:yo|u:ab|a:", "<s>u:ab|a:c", "<s>u:ab|a:"]]
    assert got == want
    assert st.generate(chat_tiny, convo, None, chat=True, **kw) == got[:1]  # one message list is one prompt
    vec = st.actadd(chat_tiny, "love", "hate", layer=1).direction("sum")
    steered = st.generate(chat_tiny, [prefill], vec, coeff=40.0, chat=True, positions="response", **kw)
    assert steered != got[1:2]  # the prefill's assistant turn is the response: it is steered
    no_hooks(chat_tiny)


def test_condition_reads_the_last_user_message(chat_tiny, no_hooks):
    from steering.conditions import condition_from_prompts

    cond = condition_from_prompts(chat_tiny, ["abab", "abba", "baab"], ["xyzw", "wzyx", "zwxy"], layer=1)
    vec = st.actadd(chat_tiny, "love", "hate", layer=1)
    convo = [{"role": "user", "content": "xyzw"}, {"role": "assistant", "content": "ok"},
             {"role": "user", "content": "abab"}]
    kw = dict(max_new_tokens=3, do_sample=False, chat=True)
    with_cond = st.generate(chat_tiny, [convo], vec, coeff=6.0, condition=cond, **kw)
    assert cond.predict(["abab"]) == [True]
    assert with_cond == st.generate(chat_tiny, [convo], vec, coeff=6.0, **kw)  # steered like without the condition
    no_hooks(chat_tiny)
