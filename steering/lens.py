"""Reading vectors and their effects as vocabulary tokens: the logit lens and the result type.

:func:`logit_lens` projects a steering vector through the model's final norm and
unembedding ("what would this vector say if it were the last residual?").
:func:`lens_profile` does it for vectors taken at many layers and reports the rank of
chosen target tokens per layer, so you see where the plain lens can be trusted.
Both (and :func:`steering.logprob_shift`) return :class:`TokenScores`.

Why the plain lens is often noise: the residual stream is only "in the unembedding's
basis" near the last layers, and many models put a huge norm on the first position(s)
after BOS ("massive activations"). An ActAdd difference at such a position is
dominated by a few giant dimensions that mean nothing to the unembedding, so its
readout is noise even when the vector steers well. The effect lens
(:func:`steering.logprob_shift`) asks the model instead and is readable wherever
steering works.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> lens = st.logit_lens(model, st.actadd(model, "love", "hate", layer=0), k=3)
    >>> len(lens.promoted), len(lens.suppressed)
    (3, 3)
"""

import html
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from .errors import InvalidArgumentError, warn_user
from .validate import as_int, describe, shown, top_k
from .vectors import SteeringVector, vector_list

__all__ = ["TokenScores", "logit_lens", "lens_profile", "lens_readout", "token_label", "ranked_rows", "target_ids",
           "TABLE_COLUMNS"]

TABLE_COLUMNS = ["source", "layer", "hook", "readout", "direction", "rank", "token", "token_id", "score", "coeff"]


def token_label(tokenizer: Any, token_id: int) -> str:
    """The decoded string of one token id (spaces kept; use ``repr`` to see them).

    Example:
        >>> from steering.testing import tiny_tokenizer
        >>> token_label(tiny_tokenizer(), 5)
        'b'
    """
    return tokenizer.decode([int(token_id)])


@dataclass
class TokenScores:
    """Tokens ranked by a score (a logit-lens readout or a log-prob shift), best first.

    Attributes:
        table: Tidy ``pandas.DataFrame``, one row per readout × direction × rank, columns
            ``source`` (``"logit_lens"`` / ``"logprob_shift"``), ``layer``, ``hook``,
            ``readout`` (``"sum"``, ``"mean"``, ``"pos 1 ' wedding'"``, ``"effect"``),
            ``direction`` (``"promoted"`` / ``"suppressed"``), ``rank`` (1 = strongest),
            ``token``, ``token_id``, ``score``, ``coeff`` (NaN for the lens). Pass it to
            :func:`steering.token_scores_figure`.

    ``promoted`` / ``suppressed`` read the first readout of the table (the only one
    unless several positions or layers were asked for); :meth:`select` picks another.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"source": "logit_lens", "layer": 0, "hook": "h", "readout": "sum",
        ...                   "direction": ["promoted", "suppressed"], "rank": 1, "token": [" a", " b"],
        ...                   "token_id": [1, 2], "score": [2.5, -1.0], "coeff": float("nan")})
        >>> TokenScores(t).promoted
        [(' a', 2.5)]
    """

    table: Any

    def _first(self) -> Any:
        if len(self.table) == 0:
            return self.table
        first = self.table.iloc[0]
        keep = (self.table["layer"] == first["layer"]) & (self.table["readout"] == first["readout"])
        return self.table[keep]

    def _pairs(self, direction: str) -> list[tuple[str, float]]:
        part = self._first()
        part = part[part["direction"] == direction].sort_values("rank")
        return [(str(t), float(s)) for t, s in zip(part["token"], part["score"])]

    @property
    def promoted(self) -> list[tuple[str, float]]:
        """``(token, score)`` pairs with the highest scores, best first."""
        return self._pairs("promoted")

    @property
    def suppressed(self) -> list[tuple[str, float]]:
        """``(token, score)`` pairs with the lowest scores, most negative first."""
        return self._pairs("suppressed")

    @property
    def readouts(self) -> list[tuple[int, str]]:
        """The ``(layer, readout)`` groups the table holds, in order."""
        seen = dict.fromkeys(zip(self.table["layer"].tolist(), self.table["readout"].tolist()))
        return list(seen)

    def select(self, layer: Optional[int] = None, readout: Optional[str] = None) -> "TokenScores":
        """The scores of one layer and/or readout.

        Example:
            >>> import pandas as pd
            >>> t = pd.DataFrame({"source": "logit_lens", "layer": [0, 1], "hook": "h", "readout": "sum",
            ...                   "direction": "promoted", "rank": 1, "token": [" a", " b"], "token_id": [1, 2],
            ...                   "score": [2.0, 3.0], "coeff": float("nan")})
            >>> TokenScores(t).select(layer=1).promoted
            [(' b', 3.0)]
        """
        keep = self.table["layer"] == self.table["layer"]
        if layer is not None:
            keep &= self.table["layer"] == layer
        if readout is not None:
            keep &= self.table["readout"] == readout
        if not bool(keep.any()):
            raise InvalidArgumentError(
                f"no scores for layer={layer!r}, readout={readout!r}; allowed: one of {self.readouts}. "
                "Fix: pick a (layer, readout) pair the table holds."
            )
        return TokenScores(self.table[keep].reset_index(drop=True))

    def __repr__(self) -> str:
        def fmt(pairs: list[tuple[str, float]]) -> str:
            return ", ".join(f"{t!r} {s:+.2f}" for t, s in pairs[:8])

        groups = self.readouts
        head = f"TokenScores({len(groups)} readout{'s' if len(groups) != 1 else ''}"
        if groups:
            head += f"; first: layer {groups[0][0]}, {groups[0][1]}"
        return f"{head})\n  promoted:   {fmt(self.promoted)}\n  suppressed: {fmt(self.suppressed)}"

    def _repr_html_(self) -> str:
        def cells(pairs: list[tuple[str, float]]) -> str:
            return "".join(f"<td><code>{html.escape(repr(t))}</code> {s:+.2f}</td>" for t, s in pairs[:10])

        return (
            f"<div><b>{html.escape(repr(self).splitlines()[0])}</b><table>"
            f"<tr><th>promoted</th>{cells(self.promoted)}</tr>"
            f"<tr><th>suppressed</th>{cells(self.suppressed)}</tr></table></div>"
        )


def ranked_rows(scores: Float[Tensor, " d_vocab"], k: int, tokenizer: Any, **common: Any) -> list[dict]:
    """Table rows of the ``k`` highest and ``k`` lowest scores (``common`` adds columns to each row).

    Example:
        >>> import torch
        >>> from steering.testing import tiny_tokenizer
        >>> rows = ranked_rows(torch.tensor([0.0, 2.0, -1.0]), 1, tiny_tokenizer(), layer=0)
        >>> [(r["direction"], r["token_id"], r["score"]) for r in rows]
        [('promoted', 1, 2.0), ('suppressed', 2, -1.0)]
    """
    rows = []
    for direction, values, ids in (
        ("promoted", *torch.topk(scores, k)),
        ("suppressed", *torch.topk(-scores, k)),
    ):
        for rank, (value, tid) in enumerate(zip(values.tolist(), ids.tolist()), start=1):
            score = value if direction == "promoted" else -value
            rows.append({**common, "direction": direction, "rank": rank, "token": token_label(tokenizer, tid),
                         "token_id": int(tid), "score": float(score)})
    return rows


def lens_readout(model: Any, residual: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_vocab"]:
    """Logits a residual-stream vector would give if it were the last layer's output.

    Applies the model's final norm and unembedding (logits before any soft-capping the
    HF model applies afterwards; ranks are unaffected).

    Example:
        >>> import torch
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> tuple(lens_readout(model, torch.ones(2, model.cfg.d_model)).shape)
        (2, 100)
    """
    param = next(model.original_model.parameters())
    x = residual.to(device=param.device, dtype=param.dtype)
    flat = x.reshape(1, -1, x.shape[-1])
    with torch.no_grad():
        logits = model.unembed(model.ln_final(flat))
    return logits.reshape(*residual.shape[:-1], logits.shape[-1]).float()


def _readouts(vector: SteeringVector, position: Any, tokenizer: Any) -> list[tuple[str, Tensor]]:
    """(label, [d_model] tensor) pairs for the requested readout(s) of ``vector``."""
    t = vector.tensor.float()
    if vector.is_direction:
        return [("direction", t)]
    pos_tokens = vector.tokens.get("pos", [])

    def one(p: Any) -> tuple[str, Tensor]:
        if p in ("sum", "mean"):
            return p, t.sum(0) if p == "sum" else t.mean(0)
        index = None if isinstance(p, str) else as_int(p)
        if index is None or not -t.shape[0] <= index < t.shape[0]:
            raise InvalidArgumentError(
                f"position={shown(p)}; allowed: 'sum', 'mean', 'each', an int in 0..{t.shape[0] - 1} or a list of those "
                f"(the vector has {t.shape[0]} positions). Fix: pass e.g. position='sum' or position=1."
            )
        p = index % t.shape[0]
        tok = pos_tokens[p] if p < len(pos_tokens) else ""
        return f"pos {p} {tok!r}", t[p]

    if position == "each":
        return [one(p) for p in range(t.shape[0]) if float(t[p].norm()) > 0]
    if isinstance(position, (list, tuple)):
        if not position:
            raise InvalidArgumentError("position=[] is empty; allowed: a non-empty list. Fix: pass e.g. [1, 'sum'].")
        return [one(p) for p in position]
    return [one(position)]


def logit_lens(
    model: Any,
    vector: Union[SteeringVector, Sequence[SteeringVector]],
    k: int = 10,
    *,
    position: Any = "sum",
) -> TokenScores:
    """Project a steering vector through the final norm and unembedding; rank the tokens.

    The plain ("what does this vector say?") readout of Turner et al.'s vectors. It is
    readable only where the residual stream speaks the unembedding's language — see
    :func:`lens_profile` and the module notes; :func:`steering.logprob_shift` measures
    what the vector *does* instead.

    Args:
        model: The bridge the vector belongs to.
        vector: A :class:`SteeringVector`, or a list of them (e.g. from
            :func:`steering.actadd_layers`) to compare the readout across layers.
        k: Tokens kept per direction (promoted and suppressed).
        position: For per-position ActAdd vectors: ``"sum"`` (default; all positions
            summed), ``"mean"``, an int position, ``"each"`` (every non-zero position
            separately), or a list of those. Ignored for single directions.

    Returns:
        :class:`TokenScores` with ``source="logit_lens"``; ``score`` is the logit.

    Raises:
        InvalidArgumentError: bad ``k`` or ``position``, or an empty list of vectors.
        VectorMismatchError: a vector belongs to another model.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vecs = st.actadd_layers(model, "love", "hate", layers="all")
        >>> lens = st.logit_lens(model, vecs, k=5, position=["sum", 1])
        >>> lens.readouts
        [(0, 'sum'), (0, "pos 1 'l'"), (1, 'sum'), (1, "pos 1 'l'")]
    """
    import pandas as pd

    vectors = [vector] if isinstance(vector, SteeringVector) else list(vector) if isinstance(vector, (list, tuple)) else None
    if not vectors or not all(isinstance(v, SteeringVector) for v in vectors):
        raise InvalidArgumentError(
            f"vector={vector!r}; allowed: a SteeringVector or a non-empty list of them. "
            "Fix: pass st.actadd(model, pos, neg, layer) or st.actadd_layers(...)."
        )
    k = top_k(k, int(model.cfg.d_vocab))
    rows: list[dict] = []
    for vec in vectors:
        vec.check_compatible(model)
        readouts = _readouts(vec, position, model.tokenizer)
        logits = lens_readout(model, torch.stack([t for _, t in readouts]))
        for (label, _), scores in zip(readouts, logits):
            rows += ranked_rows(scores, k, model.tokenizer, source="logit_lens", layer=vec.layer if vec.layer is not None
                              else -1, hook=vec.hook_name, readout=label, coeff=float("nan"))
    return TokenScores(pd.DataFrame(rows, columns=TABLE_COLUMNS))


def target_ids(model: Any, targets: Sequence[Any]) -> list[tuple[str, int]]:
    """Resolve target tokens (strings or ids) to ``(label, id)``; multi-token strings use their first token.

    Example:
        >>> from steering.testing import tiny_model
        >>> target_ids(tiny_model(), ["b", 7])
        [('b', 5), ('d', 7)]
    """
    if isinstance(targets, str) or not isinstance(targets, (list, tuple)) or not targets:
        raise InvalidArgumentError(
            f"targets={targets!r}; allowed: a non-empty list of token strings (e.g. [' wedding', ' bride']) or ids. "
            "Fix: wrap a single target in a list."
        )
    out = []
    vocab = int(model.cfg.d_vocab)
    for t in targets:
        tid = None if isinstance(t, str) else as_int(t)
        if tid is not None:
            if not 0 <= tid < vocab:
                raise InvalidArgumentError(f"target id {tid} is outside the vocabulary 0..{vocab - 1}; allowed: ids in "
                                           f"0..{vocab - 1} or token strings. Fix: pass e.g. [' wedding'].")
            out.append((token_label(model.tokenizer, tid), tid))
            continue
        if not isinstance(t, str) or not t:
            raise InvalidArgumentError(f"target {shown(t)} is {describe(t)}; allowed: a non-empty string or a token id "
                                       "(an int). Fix: pass e.g. [' wedding'].")
        ids = model.tokenizer.encode(t, add_special_tokens=False)
        if not ids:
            raise InvalidArgumentError(f"target {t!r} encodes to no tokens; pass a string with visible text.")
        if len(ids) > 1:
            warn_user(f"target {t!r} is {len(ids)} tokens; its first token {token_label(model.tokenizer, ids[0])!r} is used.")
        out.append((t, int(ids[0])))
    return out


def lens_profile(
    model: Any, vectors: Sequence[SteeringVector], targets: Sequence[Any], *, position: Any = "sum", top: int = 5
) -> Any:
    """Per-layer readability of the plain logit lens: the rank of target tokens at each layer.

    Rank 1 means the target is the vector's top token among the whole vocabulary; ranks
    in the thousands mean the readout at that layer is noise for this topic. Plot it with
    :func:`steering.lens_rank_figure`.

    Args:
        model: The bridge.
        vectors: Vectors at several layers (e.g. ``st.actadd_layers(model, pos, neg, "all")``).
        targets: Token strings (``" wedding"``; a multi-token string uses its first token,
            with a warning) or token ids.
        position: The readout of each vector, as in :func:`logit_lens` (one, not a list).
        top: How many top tokens to list per layer in ``top_tokens``.

    Returns:
        A tidy ``pandas.DataFrame``, one row per layer × target, columns ``layer``,
        ``hook``, ``readout``, ``target``, ``target_id``, ``rank`` (1 = best of the
        vocabulary), ``score`` (its logit), ``top_tokens`` (the layer's top ``top``
        tokens, ``repr``-joined).

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vecs = st.actadd_layers(model, "love", "hate", layers="all")
        >>> table = st.lens_profile(model, vecs, targets=["l", "h"])
        >>> list(table["layer"]), bool(table["rank"].between(1, model.cfg.d_vocab).all())
        ([0, 0, 1, 1], True)
    """
    import pandas as pd

    vectors = vector_list(vectors, "vectors")
    if isinstance(position, (list, tuple)) or position == "each":
        raise InvalidArgumentError(
            f"position={position!r}; lens_profile takes one readout: 'sum', 'mean' or an int. Fix: pass one of those."
        )
    ids = target_ids(model, targets)
    top = top_k(top, int(model.cfg.d_vocab), "top")
    rows = []
    for vec in vectors:
        if not isinstance(vec, SteeringVector):
            raise InvalidArgumentError(f"vectors holds {type(vec).__name__}; allowed: SteeringVector objects.")
        vec.check_compatible(model)
        (label, tensor), = _readouts(vec, position, model.tokenizer)
        scores = lens_readout(model, tensor)
        order = torch.argsort(scores, descending=True)
        ranks = torch.empty_like(order)
        ranks[order] = torch.arange(1, order.numel() + 1)
        top_tokens = ", ".join(repr(token_label(model.tokenizer, int(t))) for t in order[:top])
        for name, tid in ids:
            rows.append({"layer": vec.layer if vec.layer is not None else -1, "hook": vec.hook_name, "readout": label,
                         "target": name, "target_id": tid, "rank": int(ranks[tid]), "score": float(scores[tid]),
                         "top_tokens": top_tokens})
    return pd.DataFrame(rows)
