"""Contrastive datasets: paired texts that show a behaviour and its opposite, and an A/B behaviour score.

A dataset is a JSON Lines file (UTF-8): one JSON object per line, blank lines skipped. A file holds
one kind of item only:

* contrastive — ``{"prompt": str, "positive": str, "negative": str}``: a prompt and two responses,
  ``positive`` showing the behaviour and ``negative`` its opposite;
* A/B — ``{"question": str, "matching": str, "not_matching": str}``: a question and two answers,
  ``matching`` showing the behaviour.

A line may also carry an ``"id"`` (a non-empty string, unique in the file); without one the item's
id is ``"{name}:{line number}"``, which survives :meth:`ContrastiveDataset.split`. Other keys are
refused, values must be non-empty strings (surrounding whitespace is dropped), an item's two
responses must differ and no item may repeat another: each refusal is a
:class:`~steering.errors.DatasetError` naming the file and line. Built in (:data:`BUILTIN_DATASETS`,
in ``steering/data/``): ``"sentiment"`` and ``"formality"`` (90 contrastive items each), ``"weddings_ab"``
(70 A/B items). An A/B item is shown as ``question\\n(A) …\\n(B) …``, the matching answer under (A) for
even item indices and (B) for odd ones (against letter bias); :func:`ab_score` reads the next token
after the answer opener ``(``.

Example:
    >>> ds = parse_dataset('{"prompt": "Hi!", "positive": "Hello, friend!", "negative": "Go away."}', "demo")
    >>> ds.kind, len(ds), ds.items[0].id
    ('contrastive', 1, 'demo:1')
    >>> ds.pairs()
    (['Hi! Hello, friend!'], ['Hi! Go away.'])
"""

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from .apply import steer
from .chat import chat_prompt
from .engine import forward_logprobs
from .errors import DatasetError, InvalidArgumentError
from .files import check_readable_file, file_errors
from .placement import Positions
from .stats import mean_ci
from .tokens import tokenize_prompt
from .validate import as_int, as_real, coeff_list, count, flag, shown
from .vectors import SteeringVector

__all__ = ["ContrastiveItem", "ABItem", "ContrastiveDataset", "DatasetKind", "Letter", "BUILTIN_DATASETS", "DATA_DIR",
           "load_dataset", "parse_dataset", "ab_prompts", "answer_letter_ids", "ab_score", "ab_summary"]

#: The two kinds of dataset: contrastive items or A/B items.
DatasetKind = Literal["contrastive", "ab"]
#: An A/B answer letter.
Letter = Literal["A", "B"]
#: The built-in datasets: name -> what it holds (the files are ``DATA_DIR / f"{name}.jsonl"``).
BUILTIN_DATASETS = {
    "sentiment": "contrastive, 90 items: a warm reply (positive) vs a hostile one to the same everyday message",
    "formality": "contrastive, 90 items: a formal reply (positive) vs a casual one with the same content",
    "weddings_ab": "A/B, 70 items: everyday questions; the matching answer brings up weddings or marriage",
}
#: Where the built-in dataset files are.
DATA_DIR = Path(__file__).resolve().parent / "data"

_KEYS = {"contrastive": ("prompt", "positive", "negative"), "ab": ("question", "matching", "not_matching")}
_ALLOWED = ("one JSON object per line with exactly the keys prompt, positive, negative (contrastive) or question, "
            "matching, not_matching (A/B), plus an optional id; non-empty string values")
_EXAMPLE = '{"prompt": "How was your day?", "positive": "Lovely, thanks!", "negative": "Awful, leave me alone."}'
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


@dataclass(frozen=True)
class ContrastiveItem:
    """A prompt and two responses: ``positive`` shows the behaviour, ``negative`` its opposite.

    Example:
        >>> ContrastiveItem("How are you?", "Great, thanks!", "Leave me alone.").prompt
        'How are you?'
    """

    prompt: str
    positive: str
    negative: str
    id: str = ""


@dataclass(frozen=True)
class ABItem:
    """A question and two answers: ``matching`` shows the behaviour, ``not_matching`` does not.

    Example:
        >>> item = ABItem("Plans tonight?", "A friend's wedding.", "Reading a book.")
        >>> print(item.with_options(1)[0])
        Plans tonight?
        (A) Reading a book.
        (B) A friend's wedding.
    """

    question: str
    matching: str
    not_matching: str
    id: str = ""

    def with_options(self, index: int) -> tuple[str, Letter]:
        """The question with both answers as ``(A) …`` / ``(B) …`` lines, and the matching letter.

        The matching answer is (A) for an even ``index`` (the item's place in its dataset), (B) for an odd one.

        Example:
            >>> ABItem("Q?", "yes", "no").with_options(0)
            ('Q?\\n(A) yes\\n(B) no', 'A')
        """
        letter: Letter = "A" if index % 2 == 0 else "B"
        first, second = (self.matching, self.not_matching) if letter == "A" else (self.not_matching, self.matching)
        return f"{self.question.strip()}\n(A) {first.strip()}\n(B) {second.strip()}", letter


@dataclass(frozen=True)
class ContrastiveDataset:
    """A named dataset of one kind of item (see the module notes for the file format).

    ``name`` is a built-in name or the file's stem; ``kind`` is ``"contrastive"`` (items are :class:`ContrastiveItem`)
    or ``"ab"`` (:class:`ABItem`); ``items`` is a tuple in file order; ``source`` the file path, for messages.

    Example:
        >>> ds = ContrastiveDataset("demo", "ab", [ABItem("Q?", "yes", "no"), ABItem("R?", "sure", "nope")])
        >>> len(ds), [item.question for item in ds]
        (2, ['Q?', 'R?'])
    """

    name: str
    kind: DatasetKind
    items: Sequence  # a tuple once built
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        cls = ContrastiveItem if self.kind == "contrastive" else ABItem
        if self.kind not in _KEYS or not self.items or not all(isinstance(i, cls) for i in self.items):
            raise DatasetError(f"dataset {self.name!r}: kind={shown(self.kind)} with {len(self.items)} item(s) of type(s) "
                               f"{sorted({type(i).__name__ for i in self.items})}; allowed: kind 'contrastive' with "
                               "ContrastiveItem items or 'ab' with ABItem items, at least one. Fix: use load_dataset.")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Any:
        return iter(self.items)

    def pairs(self, chat: bool = False) -> tuple[list, list]:
        """The positive and the negative inputs for direction extraction, one pair per item.

        Contrastive items give ``prompt + " " + response`` (``chat=False``) or the messages
        ``[{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]``
        (``chat=True``: the caller formats them; the final assistant message is the answer so far).
        A/B items give the question with both options (:meth:`ABItem.with_options`) and the answer
        opener with a letter: positive the matching letter, negative the other. ``chat=False``:
        ``"…\\nAnswer: (A"``; ``chat=True``: the user message and the assistant message ``"(A"``.

        Example:
            >>> ds = ContrastiveDataset("demo", "ab", [ABItem("Q?", "yes", "no")])
            >>> ds.pairs()
            (['Q?\\n(A) yes\\n(B) no\\nAnswer: (A'], ['Q?\\n(A) yes\\n(B) no\\nAnswer: (B'])
            >>> ds.pairs(chat=True)[1][0][1]
            {'role': 'assistant', 'content': '(B'}
        """
        chat = flag("chat", chat)
        pos: list = []
        neg: list = []
        for index, item in enumerate(self.items):
            if self.kind == "contrastive":
                user, answers, lead = item.prompt, (item.positive, item.negative), item.prompt.rstrip() + " "
            else:
                user, letter = item.with_options(index)
                answers, lead = (f"({letter}", "(B" if letter == "A" else "(A"), user + "\nAnswer: "
            for out, answer in zip((pos, neg), answers):
                out.append([{"role": "user", "content": user}, {"role": "assistant", "content": answer.strip()}]
                           if chat else lead + answer.strip())
        return pos, neg

    def split(self, heldout: float = 0.2, *, offset: int = 0) -> tuple["ContrastiveDataset", "ContrastiveDataset"]:
        """A deterministic ``(train, test)`` split: a ``heldout`` share of the items, evenly spread, goes to test.

        Item ``i`` is held out when ``floor((i + 1 + offset) · heldout) > floor((i + offset) · heldout)``:
        with ``heldout=0.2`` every 5th item (indices 4, 9, 14 …). ``offset`` 0 .. k−1 shifts which items
        are held out, so ``heldout=1/k`` with each offset gives the k disjoint folds of a cross-validation.

        Raises:
            InvalidArgumentError: ``heldout`` not in (0, 1), ``offset`` not an int ≥ 0, or a side would be empty.

        Example:
            >>> ds = ContrastiveDataset("d", "ab", [ABItem(f"Q{i}?", "yes", "no") for i in range(10)])
            >>> train, test = ds.split(0.2)
            >>> [item.question for item in test], len(train), test.name
            (['Q4?', 'Q9?'], 8, 'd/test')
        """
        share = as_real(heldout)
        shift = as_int(offset)
        if share is None or not 0 < share < 1 or shift is None or shift < 0:
            raise InvalidArgumentError(
                f"heldout={shown(heldout)}, offset={shown(offset)}; allowed: a share in (0, 1) and an int ≥ 0. "
                "Fix: pass e.g. heldout=0.2, offset=0."
            )
        held = [math.floor((i + 1 + shift) * share + 1e-9) > math.floor((i + shift) * share + 1e-9)
                for i in range(len(self.items))]
        test = tuple(item for item, h in zip(self.items, held) if h)
        train = tuple(item for item, h in zip(self.items, held) if not h)
        if not test or not train:
            raise InvalidArgumentError(
                f"heldout={share:g} holds out {len(test)} of the {len(self.items)} items of {self.name!r}; allowed: a "
                "split with items on both sides. Fix: pass a heldout share between 1/n and 1 - 1/n, or use more items."
            )
        return (ContrastiveDataset(f"{self.name}/train", self.kind, train, self.source),
                ContrastiveDataset(f"{self.name}/test", self.kind, test, self.source))


def _fail(where: str, number: int, problem: str, fix: str) -> DatasetError:
    return DatasetError(f"{where}, line {number}: {problem}; allowed: {_ALLOWED}. Fix: {fix}.")


def _no_repeated_keys(pairs: list) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key appears twice in one object: {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def _record(line: str, where: str, number: int) -> tuple[str, dict]:
    """The kind and the checked object of one line."""
    try:
        record = json.loads(line, object_pairs_hook=_no_repeated_keys)
    except (ValueError, RecursionError) as err:
        raise _fail(where, number, f"not valid JSON ({err})", f"write the line as one JSON object, e.g. {_EXAMPLE}") from None
    if not isinstance(record, dict):
        raise _fail(where, number, f"{shown(line.strip())} is {_JSON_TYPES.get(type(record), 'a value')}, not an "
                    "object", f"write the line as one JSON object, e.g. {_EXAMPLE}")
    keys = set(record) - {"id"}
    kind = next((k for k, names in _KEYS.items() if keys == set(names)), None)
    if kind is None:
        near = max(_KEYS, key=lambda k: len(keys & set(_KEYS[k])))
        missing, extra = [k for k in _KEYS[near] if k not in keys], sorted(keys - set(_KEYS[near]))
        found = "; ".join([f"missing key(s) {missing}"] * bool(missing) + [f"unknown key(s) {extra}"] * bool(extra))
        raise _fail(where, number, found, f"give exactly the keys {', '.join(_KEYS[near])} (and optionally id)")
    for key, value in record.items():
        if not isinstance(value, str) or not value.strip():
            what = "empty" if isinstance(value, str) else _JSON_TYPES.get(type(value), "not a string")
            raise _fail(where, number, f"{key}={shown(value)} is {what}", f"give {key} a non-empty string")
    return kind, record


def parse_dataset(text: Union[str, Iterable[str]], name: str = "dataset", *,
                  source: Optional[str] = None) -> ContrastiveDataset:
    """A dataset from JSON Lines text (a string, or its lines), checked line by line.

    Args:
        text: The whole text, or an iterable of lines (``"\\n"`` only separates lines in a string).
        name: The dataset's name; also the prefix of the ids of items without one.
        source: How messages name the text (default ``"<name>"``; :func:`load_dataset` passes the path).

    Raises:
        DatasetError: a line is not JSON, not an object, lacks a key or has an unknown one, has a non-string or
            empty value, the same text in both responses, another kind than the first item's, repeats an earlier
            item or id; or there is no item at all.

    Example:
        >>> parse_dataset(['{"question": "Q?", "matching": "a", "not_matching": "b", "id": "q1"}']).items
        (ABItem(question='Q?', matching='a', not_matching='b', id='q1'),)
        >>> parse_dataset('{"prompt": "Hi", "positive": "yo", "negative": "yo"}')
        Traceback (most recent call last):
        ...
        steering.errors.DatasetError: <dataset>, line 1: positive and negative are the same text ('yo'); allowed: ...
    """
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"name={shown(name)}; allowed: a non-empty string. Fix: pass e.g. name='mine'.")
    lines = text.split("\n") if isinstance(text, str) else list(text)
    where = source if source is not None else f"<{name}>"
    kind, first, items = None, 0, []
    seen: dict[tuple, int] = {}  # the item's values -> its line
    ids: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not isinstance(line, str):
            raise _fail(where, number, f"{shown(line)} is {type(line).__name__}, not text", "pass lines of text")
        if not line.strip():
            continue
        line_kind, record = _record(line.rstrip("\r"), where, number)
        if kind is None:
            kind, first = line_kind, number
        elif line_kind != kind:
            raise _fail(where, number, f"a {line_kind!r} item in a file whose first item (line {first}) is {kind!r}",
                        "keep one kind per file: move the other items to a file of their own")
        values = tuple(record[key].strip() for key in _KEYS[kind])
        if values[1] == values[2]:
            raise _fail(where, number, f"{_KEYS[kind][1]} and {_KEYS[kind][2]} are the same text ({shown(values[1])})",
                        "give two responses that differ in the behaviour")
        if values in seen:
            raise _fail(where, number, f"the item repeats line {seen[values]}", "drop one of the two lines")
        item_id = record["id"].strip() if "id" in record else f"{name}:{number}"
        if item_id in ids:
            raise _fail(where, number, f"id {item_id!r} is already used on line {ids[item_id]}", "give each item its own id")
        seen[values], ids[item_id] = number, number
        items.append((ContrastiveItem if kind == "contrastive" else ABItem)(*values, id=item_id))
    if kind is None:
        raise DatasetError(f"{where} holds no items ({len(lines)} line(s), none with text); allowed: {_ALLOWED}. "
                           f"Fix: add at least one item, e.g. {_EXAMPLE}.")
    return ContrastiveDataset(name, kind, tuple(items), where)


def load_dataset(name_or_path: Union[str, "os.PathLike[str]"]) -> ContrastiveDataset:
    """A built-in dataset by name (:data:`BUILTIN_DATASETS`; a name wins over a file of that name), or a .jsonl file.

    Raises:
        DatasetError: an unknown name, a file that is not UTF-8, or a malformed line (see :func:`parse_dataset`).
        FileAccessError: the file does not exist or cannot be read.

    Example:
        >>> ds = load_dataset("weddings_ab")
        >>> ds.kind, len(ds), ds.name
        ('ab', 70, 'weddings_ab')
        >>> load_dataset("weddings")
        Traceback (most recent call last):
        ...
        steering.errors.DatasetError: dataset 'weddings' is neither a built-in name nor an existing file; allowed: ...
    """
    builtin = isinstance(name_or_path, str) and name_or_path in BUILTIN_DATASETS
    if isinstance(name_or_path, str) and not builtin and not name_or_path.endswith(".jsonl") \
            and not os.path.exists(name_or_path):
        raise DatasetError(f"dataset {name_or_path!r} is neither a built-in name nor an existing file; allowed: "
                           f"{', '.join(map(repr, BUILTIN_DATASETS))} or a path to a .jsonl file. Fix: pass one of "
                           "the names, or the path of your file.")
    path = check_readable_file(DATA_DIR / f"{name_or_path}.jsonl" if builtin else name_or_path, "dataset file")
    with file_errors(path, "read", "dataset file"):
        raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text (byte {err.start} is {raw[err.start:err.start + 1]!r}); "
                           f"allowed: a UTF-8 JSON Lines file. Fix: save the file as UTF-8.") from None
    return parse_dataset(text, str(name_or_path) if builtin else path.stem, source=str(path))


def ab_prompts(model: Any, dataset: ContrastiveDataset, *, chat: bool = True,
               system: Optional[str] = None) -> tuple[list[str], list[Letter]]:
    """The text :func:`ab_score` feeds the model for each A/B item (ending with ``(``), and each matching letter.

    ``chat=True``: ``chat_prompt(model, question_with_options, system) + "("``; ``chat=False``: the question
    with its options, then ``"\\nAnswer: ("``.

    Raises:
        InvalidArgumentError: not an A/B dataset, ``system`` with ``chat=False``, or no chat template with ``chat=True``.

    Example:
        >>> from steering.testing import tiny_model
        >>> ds = ContrastiveDataset("d", "ab", [ABItem("Q?", "yes", "no"), ABItem("R?", "ok", "no")])
        >>> ab_prompts(tiny_model(), ds, chat=False)
        (['Q?\\n(A) yes\\n(B) no\\nAnswer: (', 'R?\\n(A) no\\n(B) ok\\nAnswer: ('], ['A', 'B'])
    """
    if not isinstance(dataset, ContrastiveDataset) or dataset.kind != "ab":
        raise InvalidArgumentError(f"dataset={shown(getattr(dataset, 'name', dataset))} is of kind "
                                   f"{getattr(dataset, 'kind', type(dataset).__name__)!r}; allowed: an A/B dataset (kind "
                                   "'ab'). Fix: pass an A/B dataset, e.g. load_dataset('weddings_ab').")
    if not flag("chat", chat) and system is not None:
        raise InvalidArgumentError(f"system={shown(system)} with chat=False; allowed: a system prompt only with "
                                   "chat=True. Fix: drop system= or pass chat=True.")
    shown_items = [item.with_options(index) for index, item in enumerate(dataset.items)]
    texts = [chat_prompt(model, q, system) + "(" if chat else f"{q}\nAnswer: (" for q, _ in shown_items]
    return texts, [letter for _, letter in shown_items]


def answer_letter_ids(model: Any, letter: Letter) -> list[int]:
    """The token ids that read as ``letter`` right after ``(``: the letter alone and with a leading space, if single tokens.

    Raises:
        InvalidArgumentError: ``letter`` is not ``"A"`` / ``"B"``, or the tokenizer has no single token for it.

    Example:
        >>> from steering.testing import tiny_model
        >>> answer_letter_ids(tiny_model(), "A")   # one character per token: " A" is two
        [30]
    """
    if letter not in ("A", "B"):
        raise InvalidArgumentError(f"letter={shown(letter)}; allowed: 'A' or 'B'. Fix: pass letter='A'.")
    tok = model.tokenizer
    ids: list[int] = []
    for text in (letter, " " + letter):
        enc = tok.encode(text, add_special_tokens=False)
        if len(enc) == 1 and tok.decode(enc).strip() == letter and int(enc[0]) not in ids:
            ids.append(int(enc[0]))
    if not ids:
        raise InvalidArgumentError(f"the tokenizer of {model.cfg.model_name!r} has no single token for {letter!r} or "
                                   f"' {letter}'; allowed: tokenizers with one. Fix: use another model.")
    return ids


def ab_score(model: Any, dataset: ContrastiveDataset, vector: Optional[SteeringVector] = None, coeff: Any = 0.0, *,
             chat: bool = True, system: Optional[str] = None, positions: Optional[Positions] = None,
             batch_size: int = 16) -> Any:
    """How much the model prefers each A/B item's matching answer, per item and steering coefficient.

    Each prompt (:func:`ab_prompts`) ends with the answer opener ``(``; batched forward passes
    (:func:`steering.engine.forward_logprobs`, last position) give the next-token log-probabilities,
    each letter's probability summed over its tokens (:func:`answer_letter_ids`). Coefficient 0 (and
    ``vector=None``) is the unsteered model exactly; others add ``coeff · vector`` during the passes
    (hooks removed afterwards, also on errors).

    Args:
        model: The bridge.
        dataset: An A/B dataset (kind ``"ab"``).
        vector: The steering vector (``None``: unsteered only).
        coeff: A coefficient or a list of distinct ones (0 is the unsteered baseline).
        chat: Put each question in the model's chat template (it needs one) or use plain text.
        system: A system prompt for the chat template (``chat=True`` only).
        positions: Where to add the vector (:func:`steering.steer`; ``None``: the vector's default).
        batch_size: Prompts per forward pass.

    Returns:
        A ``pandas.DataFrame``, one row per item × coefficient: ``item`` (index in the dataset), ``id``,
        ``coeff``, ``matching_letter``, ``p_matching`` (p(matching letter) / p(either letter)), ``logit_diff``
        (log p(matching letter) − log p(other letter)), ``p_letters`` (the mass on the two letters).

    Raises:
        InvalidArgumentError: not an A/B dataset, no chat template with ``chat=True``, repeated coefficients,
            a non-zero coefficient without a vector, or a bad ``batch_size`` / ``positions``.
        InvalidCoefficientError: a coefficient is not a finite number.
        VectorMismatchError: the vector does not fit the model.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> ds = ContrastiveDataset("d", "ab", [ABItem("Q?", "yes", "no"), ABItem("R?", "ok", "no")])
        >>> vec = st.mean_diff(model, *ds.pairs(), layer=1)
        >>> table = ab_score(model, ds, vec, [0, 4], chat=False)
        >>> table[["item", "coeff", "matching_letter"]].values.tolist()
        [[0, 0.0, 'A'], [1, 0.0, 'B'], [0, 4.0, 'A'], [1, 4.0, 'B']]
        >>> bool(table["p_matching"].between(0, 1).all()), st.active_hooks(model)
        (True, 0)
    """
    import pandas as pd

    texts, letters = ab_prompts(model, dataset, chat=chat, system=system)
    coeffs = coeff_list(coeff)
    if len(set(coeffs)) != len(coeffs) or (vector is None and any(c != 0 for c in coeffs)):
        problem = "repeats a value" if len(set(coeffs)) != len(coeffs) else "is non-zero without a vector"
        raise InvalidArgumentError(f"coeff={coeffs} {problem}; allowed: distinct coefficients, only 0 when "
                                   "vector=None. Fix: drop the repeats, or pass vector=... (or coeff=0).")
    batch_size = count("batch_size", batch_size, example=16)
    if vector is not None:
        steer(model, vector, coeffs, positions=positions)  # checks vector, coefficients and positions; attaches nothing
    ids = {letter: answer_letter_ids(model, letter) for letter in ("A", "B")}
    seqs = [tokenize_prompt(model, text) for text in texts]
    is_a = torch.tensor([letter == "A" for letter in letters])
    rows = []
    for c in coeffs:
        steered = vector is not None and c != 0
        out = forward_logprobs(model, seqs, vector if steered else None, [c] * len(seqs) if steered else None,
                               positions=positions, batch_size=batch_size, readout="last")
        logp: Float[Tensor, "item vocab"] = torch.stack([o[0] for o in out]).double()
        a, b = logp[:, ids["A"]].logsumexp(dim=-1), logp[:, ids["B"]].logsumexp(dim=-1)
        diff, mass = torch.where(is_a, a - b, b - a), a.exp() + b.exp()
        rows += [{"item": i, "id": item.id, "coeff": float(c), "matching_letter": letters[i],
                  "p_matching": float(torch.sigmoid(diff[i])), "logit_diff": float(diff[i]), "p_letters": float(mass[i])}
                 for i, item in enumerate(dataset.items)]
    return pd.DataFrame(rows)


def ab_summary(table: Any, n_boot: int = 1000, seed: int = 0) -> Any:
    """Per coefficient: the mean ``p_matching`` with a bootstrap 95% interval over items, and the share above 0.5.

    ``table`` is the table of :func:`ab_score`; ``n_boot`` and ``seed`` go to :func:`steering.stats.mean_ci`.

    Returns:
        A ``pandas.DataFrame``, one row per coefficient (ascending): ``coeff``, ``n`` (items), ``mean_p_matching``,
        ``ci_low``, ``ci_high``, ``share_matching`` (the share with ``p_matching > 0.5``), ``mean_logit_diff``,
        ``mean_p_letters``.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"coeff": [0.0, 0.0, 2.0, 2.0], "p_matching": [0.4, 0.6, 0.7, 0.9],
        ...                   "logit_diff": [-0.4, 0.4, 0.8, 2.2], "p_letters": [0.9, 0.8, 0.9, 0.9]})
        >>> ab_summary(t, n_boot=200)[["coeff", "n", "mean_p_matching", "share_matching"]].values.tolist()
        [[0.0, 2.0, 0.5, 0.5], [2.0, 2.0, 0.8, 1.0]]
    """
    import pandas as pd

    needed = ["coeff", "p_matching", "logit_diff", "p_letters"]
    missing = [c for c in needed if c not in getattr(table, "columns", [])]
    if missing:
        raise InvalidArgumentError(f"the table lacks the column(s) {missing}; allowed: a table with the columns {needed}"
                                   ". Fix: pass the output of ab_score(...).")
    rows = []
    for c, part in table.groupby("coeff", sort=True):
        p = part["p_matching"].to_numpy(dtype=float)
        mean, low, high = mean_ci(p.tolist(), n_boot=n_boot, seed=seed)
        rows.append({"coeff": float(c), "n": len(p), "mean_p_matching": mean, "ci_low": low, "ci_high": high,
                     "share_matching": float((p > 0.5).mean()), "mean_logit_diff": float(part["logit_diff"].mean()),
                     "mean_p_letters": float(part["p_letters"].mean())})
    return pd.DataFrame(rows)
