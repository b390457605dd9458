"""Chat prompts: a user turn (or a list of messages) in the model's own chat template.

* :func:`chat_prompt` — the text the model's tokenizer template makes of a prompt, with the
  assistant's generation prompt at the end (``add_generation_prompt=True``).
* :func:`chat_messages` — the checked message list (roles ``system`` / ``user`` / ``assistant``).
* :func:`response_start` — the token index where the assistant's turn begins (the generation
  prompt's first token): the start of ``positions="response"`` (:mod:`steering.placement`).
* :func:`chat_text` — the formatted text and its response start, where a final assistant message
  is the assistant's answer so far (the text ends inside that turn): what direction extraction
  reads for paired chat examples (``token="response"`` in :mod:`steering.directions`).

The template usually writes the BOS text itself; :func:`steering.tokens.tokenize_prompt` then adds
no second BOS, so ``st.generate(..., chat=True)`` feeds the model exactly the template's tokens.

Example:
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> model.tokenizer.chat_template = TINY_TEMPLATE
    >>> chat_prompt(model, "hi")
    '<s>u:hi|a:'
    >>> response_start(model, "hi")   # <s> u : h i | -> the header "a:" starts at token 6
    6
"""

from typing import Any, Mapping, Optional, Protocol, Sequence, Union, runtime_checkable

from .errors import InvalidArgumentError
from .tokens import tokenize_prompt

__all__ = ["chat_prompt", "chat_messages", "chat_prompts", "chat_text", "chat_texts", "response_start", "PairSource", "source_pairs", "chat_inputs", "user_text", "ChatInput", "ROLES", "TINY_TEMPLATE"]

#: A prompt for a chat model: one user turn as text, or a list of ``{"role", "content"}`` messages.
ChatInput = Union[str, Sequence[Mapping[str, str]]]


@runtime_checkable
class PairSource(Protocol):
    """Anything that gives paired positive and negative inputs, e.g. a
    :class:`steering.datasets.ContrastiveDataset`: what the extraction functions accept in place of two lists."""

    name: str

    def pairs(self, chat: bool = False) -> tuple[list, list]:
        """The positive and the negative inputs, one pair per item (message lists with ``chat=True``)."""


#: The roles a message may have.
ROLES = ("system", "user", "assistant")
#: A minimal Jinja chat template for the character-level tiny models (tests and examples):
#: ``<s>`` then ``r:content|`` per message (``r`` the role's first letter), then ``a:`` for the answer.
TINY_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'][0] + ':' + m['content'] + '|' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'a:' }}{% endif %}"
)


def chat_messages(prompt: ChatInput, system: Optional[str] = None) -> list[dict[str, str]]:
    """The checked message list of ``prompt`` (a string is one user turn), ``system`` first if given.

    Raises:
        InvalidArgumentError: not a string or list of messages, an empty list, a message that is not
            a ``{"role", "content"}`` mapping, an unknown role, a non-string or empty content, or
            ``system=`` together with a system message.

    Example:
        >>> chat_messages("hi", system="be brief")
        [{'role': 'system', 'content': 'be brief'}, {'role': 'user', 'content': 'hi'}]
    """
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, Sequence) and not isinstance(prompt, (bytes, bytearray)):
        messages = [_message(i, m) for i, m in enumerate(prompt)]
    else:
        raise InvalidArgumentError(
            f"prompt={prompt!r} is a {type(prompt).__name__}; allowed: a string (one user turn) or a list of "
            "{'role', 'content'} messages. Fix: pass e.g. 'Tell me a story' or [{'role': 'user', 'content': '...'}]."
        )
    if not messages:
        raise InvalidArgumentError(
            "prompt=[] has no messages; allowed: at least one message. Fix: pass [{'role': 'user', 'content': '...'}]."
        )
    if system is not None:
        if not isinstance(system, str) or not system:
            raise InvalidArgumentError(
                f"system={system!r}; allowed: a non-empty string or None. Fix: pass the system prompt text, or drop it."
            )
        if any(m["role"] == "system" for m in messages):
            raise InvalidArgumentError(
                "system= was given and the messages already hold a system message; allowed: one of the two. "
                "Fix: drop system= or the system message."
            )
        messages = [{"role": "system", "content": system}] + messages
    return messages


def _message(i: int, message: Any) -> dict[str, str]:
    if not isinstance(message, Mapping) or set(message) != {"role", "content"}:
        raise InvalidArgumentError(
            f"message[{i}]={message!r}; allowed: a mapping with exactly the keys 'role' and 'content'. "
            "Fix: pass {'role': 'user', 'content': '...'}."
        )
    role, content = message["role"], message["content"]
    if role not in ROLES:
        raise InvalidArgumentError(
            f"message[{i}] has role={role!r}; allowed: {', '.join(map(repr, ROLES))}. Fix: use one of those roles."
        )
    if not isinstance(content, str) or not content:
        raise InvalidArgumentError(
            f"message[{i}] has content={content!r}; allowed: a non-empty string. Fix: give the {role} turn its text."
        )
    return {"role": role, "content": content}


def _template(model: Any) -> Any:
    tok = model.tokenizer
    if not getattr(tok, "chat_template", None):
        raise InvalidArgumentError(
            f"the tokenizer of {model.cfg.model_name!r} has no chat template (a base model); allowed: chat "
            "prompts only for a chat model whose tokenizer has one. Fix: pass chat=False and plain prompts, use a chat "
            "model (e.g. st.load_model('smollm2-135m')), or set tokenizer.chat_template."
        )
    return tok


def chat_prompt(model: Any, prompt: ChatInput, system: Optional[str] = None) -> str:
    """``prompt`` in the model's chat template, ending with the assistant's generation prompt.

    Args:
        model: A ``TransformerBridge`` whose tokenizer has a chat template.
        prompt: One user turn (a string) or a list of ``{"role", "content"}`` messages.
        system: A system prompt put first (``None``: the template's own default, if any).

    Returns:
        ``tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``.

    Raises:
        InvalidArgumentError: the tokenizer has no chat template, or the messages are malformed
            (see :func:`chat_messages`).

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> model.tokenizer.chat_template = TINY_TEMPLATE
        >>> chat_prompt(model, [{"role": "user", "content": "hi"}], system="be nice")
        '<s>s:be nice|u:hi|a:'
    """
    messages = chat_messages(prompt, system)
    return _template(model).apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def response_start(model: Any, prompt: ChatInput, system: Optional[str] = None) -> int:
    """The index of the first token of the assistant's turn in ``tokenize_prompt(chat_prompt(...))``.

    It is where the template's generation prompt (the assistant header) begins: the length of the
    tokens the two renderings (without and with ``add_generation_prompt``) share.

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> model.tokenizer.chat_template = TINY_TEMPLATE
        >>> response_start(model, "hey")
        7
    """
    messages = chat_messages(prompt, system)
    tok = _template(model)
    full = tokenize_prompt(model, tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    head = tokenize_prompt(model, tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
    n = min(int(full.numel()), int(head.numel()))
    same = (full[:n] == head[:n]).tolist() + [False]
    return same.index(False)


def chat_prompts(model: Any, prompts: Sequence[ChatInput], system: Optional[str] = None
                 ) -> tuple[list[str], list[int]]:
    """Each prompt in the chat template, and the index of its assistant turn's first token.

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> model.tokenizer.chat_template = TINY_TEMPLATE
        >>> chat_prompts(model, ["a", "bc"])
        (['<s>u:a|a:', '<s>u:bc|a:'], [5, 6])
    """
    return [chat_prompt(model, p, system) for p in prompts], [response_start(model, p, system) for p in prompts]


def chat_text(model: Any, prompt: ChatInput, system: Optional[str] = None) -> tuple[str, int]:
    """``prompt`` in the chat template and the index of its assistant turn's first token.

    A prompt whose last message is from the assistant is read as the assistant's answer so far: the
    text is the template up to the generation prompt, then that answer, with no end-of-turn after it
    (as the model would have written it). Any other prompt ends with the generation prompt, as
    :func:`chat_prompt`. The index is :func:`response_start` of the turns before the answer: the
    assistant header's first token, so the answer tokens and the header are the "response".

    Raises:
        InvalidArgumentError: as :func:`chat_messages`; also an assistant answer with no turn before it.

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> model.tokenizer.chat_template = TINY_TEMPLATE
        >>> chat_text(model, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
        ('<s>u:hi|a:yo', 6)
        >>> chat_text(model, "hi")
        ('<s>u:hi|a:', 6)
    """
    messages = chat_messages(prompt, system)
    if messages[-1]["role"] != "assistant":
        return chat_prompt(model, messages), response_start(model, messages)
    if len(messages) == 1:
        raise InvalidArgumentError(
            f"prompt={prompt!r} is only an assistant answer; allowed: an answer after at least one user (or system) "
            "turn. Fix: put the question first, e.g. [{'role': 'user', 'content': '...'}, {'role': 'assistant', ...}]."
        )
    head = messages[:-1]
    return chat_prompt(model, head) + messages[-1]["content"], response_start(model, head)


def chat_inputs(prompts: Any, name: str = "prompts") -> list:
    """``prompts`` as a list of chat prompts: one string, or one message list, counts as one prompt.

    The messages themselves are checked later, by :func:`chat_messages`.

    Raises:
        InvalidArgumentError: not a string, a message list or a non-empty list of them.

    Example:
        >>> chat_inputs("hi"), chat_inputs([{"role": "user", "content": "hi"}])
        (['hi'], [[{'role': 'user', 'content': 'hi'}]])
    """
    one = isinstance(prompts, str) or (isinstance(prompts, Sequence) and len(prompts) > 0
                                        and all(isinstance(m, Mapping) for m in prompts))
    items = [prompts] if one else prompts
    if isinstance(items, (str, bytes, bytearray, Mapping)) or not isinstance(items, Sequence) or not items:
        raise InvalidArgumentError(
            f"{name}={prompts!r}; allowed: a non-empty list of chat prompts (each a string or a list of "
            "{'role', 'content'} messages). Fix: pass e.g. ['Tell me about your day']."
        )
    return list(items)


def user_text(prompt: ChatInput) -> str:
    """What a condition reads of a chat prompt: the string itself, or the last user message's content.

    Example:
        >>> user_text([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
        'hi'
    """
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in chat_messages(prompt) if m["role"] == "user"]
    if not users:
        raise InvalidArgumentError(
            f"prompt={prompt!r} has no user message; allowed: a message list with at least one user turn when a "
            "condition decides on it. Fix: add the user's message."
        )
    return users[-1]


def chat_texts(model: Any, prompts: Any, system: Optional[str] = None, *, name: str = "prompts"
               ) -> tuple[list[str], list[int]]:
    """:func:`chat_text` of each prompt of a list (one string, or one message list, counts as one prompt).

    Raises:
        InvalidArgumentError: ``prompts`` is not a string, a message list or a non-empty list of them (the
            message names ``name[i]``), or as :func:`chat_text`.

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> model.tokenizer.chat_template = TINY_TEMPLATE
        >>> chat_texts(model, ["a", [{"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]])
        (['<s>u:a|a:', '<s>u:b|a:c'], [5, 5])
    """
    items = chat_inputs(prompts, name)
    texts, starts = [], []
    for i, item in enumerate(items):
        try:
            text, start = chat_text(model, item, system)
        except InvalidArgumentError as error:
            raise InvalidArgumentError(f"{name}[{i}]: {error}") from None
        texts.append(text)
        starts.append(start)
    return texts, starts


def source_pairs(first: Any, second: Any, chat: bool, names: tuple[str, str] = ("pos_prompts", "neg_prompts")
                 ) -> tuple[Any, Any]:
    """``(first, second)`` unchanged, or the pairs of ``first`` when it is a :class:`PairSource` (``second`` None).

    Raises:
        InvalidArgumentError: a pair source together with a second list.

    Example:
        >>> source_pairs(["good"], ["bad"], False)
        (['good'], ['bad'])
    """
    if not isinstance(first, PairSource):
        return first, second
    if second is not None:
        raise InvalidArgumentError(
            f"{names[0]} is the dataset {first.name!r} and {names[1]}={second!r:.60}; allowed: {names[1]}=None with a "
            f"dataset (it holds both sides). Fix: pass the dataset and None, e.g. mean_diff(model, dataset, None, layer)."
        )
    return first.pairs(chat=chat)
