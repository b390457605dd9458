"""Threads and steer blocks: steering is per call (issue 17, categories 1 and 5).

A steered call in one thread never steers another thread's call on the same model, and
``st.generate`` inside a ``with st.steer(...)`` block composes with the block's steering.
"""

import threading

import pytest
import torch

import steering as st
from steering.apply import attached
from steering.backends import in_block, resolve
from steering.errors import InvalidArgumentError

PROMPTS = ["hello there", "abcdefgh"]
GREEDY = dict(max_new_tokens=8, do_sample=False)


@pytest.fixture
def wedding(tiny):
    return st.actadd(tiny, "love you", "", layer=1)


def _while_steered_elsewhere(block, work):
    """Run ``work()`` in this thread while another thread sits inside ``block()`` (a context manager)."""
    inside, done, errors = threading.Event(), threading.Event(), []

    def other():
        try:
            with block():
                inside.set()
                done.wait(60)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)
            inside.set()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert inside.wait(60)
        return work()
    finally:
        done.set()
        thread.join(60)
        assert not errors, errors


@pytest.mark.parametrize("backend", ["auto", "bridge"])
def test_a_steer_block_in_another_thread_does_not_steer_this_one(tiny, wedding, backend, no_hooks):
    plain = st.generate(tiny, PROMPTS, None, backend=backend, **GREEDY)
    tokens = tiny.to_tokens("hello there")
    with torch.no_grad():
        logits = tiny(tokens)

    def work():
        with torch.no_grad():
            return st.generate(tiny, PROMPTS, None, backend=backend, **GREEDY), tiny(tokens)

    texts, during = _while_steered_elsewhere(lambda: st.steer(tiny, wedding, 30.0), work)
    assert texts == plain
    assert torch.equal(during, logits)
    no_hooks(tiny)


def test_a_steered_call_in_another_thread_does_not_steer_this_one(tiny, wedding, no_hooks):
    """The engines' hooks on the twin (what st.generate attaches) stay in their own thread too."""
    plain = st.generate(tiny, PROMPTS, None, **GREEDY)
    target = resolve(tiny, [wedding])
    assert target.kind == "twin"
    texts = _while_steered_elsewhere(lambda: attached(target, wedding, 30.0), lambda: st.generate(tiny, PROMPTS, None,
                                                                                                 **GREEDY))
    assert texts == plain
    no_hooks(tiny)


def test_threads_with_different_vectors_each_get_their_own_text(tiny, wedding, no_hooks):
    other = st.actadd(tiny, "xyz", "", layer=0)
    expected = {
        "a": st.generate(tiny, PROMPTS, wedding, 8.0, **GREEDY),
        "b": st.generate(tiny, PROMPTS, other, 8.0, **GREEDY),
    }
    got, errors = {}, []

    def run(name, vec):
        try:
            for _ in range(3):
                got.setdefault(name, []).append(st.generate(tiny, PROMPTS, vec, 8.0, **GREEDY))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=run, args=("a", wedding)), threading.Thread(target=run, args=("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert got["a"] == [expected["a"]] * 3 and got["b"] == [expected["b"]] * 3
    no_hooks(tiny)


def test_generate_inside_a_steer_block_composes(tiny, wedding, no_hooks):
    steered = st.generate(tiny, PROMPTS, wedding, 6.0, **GREEDY)
    assert steered != st.generate(tiny, PROMPTS, None, **GREEDY)
    with st.steer(tiny, wedding, 6.0):
        assert in_block(tiny)
        inside = st.generate(tiny, PROMPTS, None, **GREEDY)  # the block's steering applies
        both = st.generate(tiny, PROMPTS, wedding, 6.0, **GREEDY)  # and adds to the call's own
    assert not in_block(tiny)
    assert inside == steered
    assert both == st.generate(tiny, PROMPTS, wedding, 12.0, **GREEDY)
    no_hooks(tiny)


def test_the_twin_cannot_be_forced_inside_a_steer_block(tiny, wedding):
    with st.steer(tiny, wedding, 6.0):
        with pytest.raises(InvalidArgumentError, match=r"backend='twin' cannot serve this call: the call is inside a "
                                                       r"steer\(\) block"):
            st.generate(tiny, PROMPTS, None, backend="twin", **GREEDY)
