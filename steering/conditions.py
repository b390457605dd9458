"""Conditional steering: decide per prompt, from the model's own activations, whether to steer it.

A :class:`Condition` is a linear test of a prompt's residual at ``blocks.{layer}.hook_resid_pre``
(averaged over its tokens, BOS excluded, or at its last token): ``score = x · d̂ − threshold``, true
when the score is > 0. The mean over tokens is the default: on SmolLM2 (layer 10) it tells held-out
topics apart much better than the last token, which is often punctuation or a template token
(accuracy 0.90 vs 0.55); on Gemma-3-270M (layer 14) the two tie (0.95). Figures in ``docs/chat.md``.

* :func:`condition_from_prompts` — ``d̂`` is the mean difference of the residuals of prompts that
  match and prompts that do not; the threshold is the one with the best balanced accuracy on them.
* :meth:`Condition.from_vector` — any direction (e.g. :func:`steering.probes.probe_direction`,
  whose calibrated threshold is in its ``meta``).
* ``a & b``, ``a | b``, ``~a`` combine conditions (the score of ``&`` is the smaller score, of ``|``
  the larger, of ``~`` the negation).

``st.generate(..., condition=c)`` and ``st.steer(..., condition=c)`` steer only the rows whose
prompt satisfies ``c``: the placement mask of the other rows is emptied (:class:`Gate`), which
leaves them exactly unsteered, and the steered rows get exactly the unconditional addition.

Example:
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> cond = condition_from_prompts(model, ["pizza", "pasta"], ["chess", "tennis"], layer=1)
    >>> cond.predict(["pizza", "chess"])
    [True, False]
    >>> (~cond).predict(["pizza", "chess"])
    [False, True]
"""

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from .activations import prompt_features
from .errors import InvalidArgumentError, SteeringError, VectorMismatchError
from .hooks import hook_name, parse_hook_name
from .placement import Span
from .validate import text_list
from .vectors import SteeringVector

__all__ = ["Condition", "condition_from_prompts", "best_threshold", "Gate", "ConditionKind", "ConditionToken"]

#: A leaf test (``"linear"``) or a combination of conditions.
ConditionKind = Literal["linear", "and", "or", "not"]
#: Which residual of a prompt a condition reads: the mean over its tokens (BOS excluded) or the last one.
ConditionToken = Literal["mean", "last"]
_TOKENS = ("mean", "last")


def best_threshold(
    matching: Float[Tensor, " n_matching"], other: Float[Tensor, " n_other"]
) -> tuple[float, float]:
    """The threshold on scores with the best balanced accuracy (``score > t`` means matching) and that accuracy.

    Candidates are the midpoints between neighbouring distinct scores; ties go to the candidate
    in the middle of the tied ones.

    Example:
        >>> best_threshold(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0]))
        (1.5, 1.0)
    """
    values = torch.cat([matching, other]).double().unique(sorted=True)
    cands = torch.cat([values[:1] - 1.0, (values[1:] + values[:-1]) / 2, values[-1:] + 1.0])  # [cand]
    tpr = (matching.double()[None, :] > cands[:, None]).double().mean(dim=1)
    tnr = (other.double()[None, :] <= cands[:, None]).double().mean(dim=1)
    balanced = (tpr + tnr) / 2
    best = torch.nonzero(balanced == balanced.max()).flatten()
    pick = int(best[len(best) // 2])
    return float(cands[pick]), float(balanced[pick])


@dataclass(frozen=True, eq=False)
class Condition:
    """A yes/no test of prompts, read from the model's residual stream (see the module notes).

    Attributes:
        kind: ``"linear"`` (``x · direction − threshold > 0``) or ``"and"`` / ``"or"`` / ``"not"`` of ``parts``.
        parts: The combined conditions (empty for ``"linear"``).
        direction: The unit ``[d_model]`` direction (``"linear"``).
        threshold: The score where the decision flips (``"linear"``).
        hook_name: Where the residual is read (``"linear"``).
        token: ``"mean"`` (over the prompt's tokens, BOS excluded) or ``"last"`` (``"linear"``).
        model: The bridge it was made on (its scores and predictions run there).
        meta: How it was made (training accuracy, method, …).

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> c = Condition.from_vector(SteeringVector(torch.ones(64), hook_name="blocks.1.hook_resid_pre"), model, 0.0)
        >>> c.hook_names, c.layer
        (['blocks.1.hook_resid_pre'], 1)
    """

    kind: ConditionKind
    parts: tuple = ()
    direction: Optional[Tensor] = field(default=None, repr=False)
    threshold: float = 0.0
    hook_name: Optional[str] = None
    token: ConditionToken = "mean"
    model: Any = field(default=None, repr=False)
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_vector(cls, vector: SteeringVector, model: Any, threshold: Optional[float] = None,
                    token: Optional[ConditionToken] = None) -> "Condition":
        """The condition ``x · v̂ > threshold`` at the vector's hook (``threshold=None``: ``vector.meta["threshold"]``;
        ``token=None``: ``vector.meta["token"]``, else ``"mean"``).

        Raises:
            InvalidArgumentError: the vector is not a ``[d_model]`` direction at a ``resid_pre`` hook, or
                no threshold is given nor recorded in its ``meta``.
            VectorMismatchError: the vector is not from ``model``.

        Example:
            >>> from steering.testing import tiny_model
            >>> model = tiny_model()
            >>> v = SteeringVector(torch.ones(64), hook_name="blocks.0.hook_resid_pre", meta={"threshold": 0.5})
            >>> Condition.from_vector(v, model).threshold
            0.5
        """
        vector.check_compatible(model)
        layer, kind = parse_hook_name(vector.hook_name)
        if not vector.is_direction or kind != "resid_pre" or float(vector.norm()) == 0.0:
            raise InvalidArgumentError(
                f"a condition needs a non-zero [d_model] direction at a blocks.<layer>.hook_resid_pre hook; the vector at "
                f"{vector.hook_name} has shape {tuple(vector.tensor.shape)}. Fix: use a mean_diff or probe_direction "
                "vector at resid_pre."
            )
        if threshold is None:
            threshold = vector.meta.get("threshold")
        if threshold is None:
            raise InvalidArgumentError(
                "threshold=None and the vector's meta has no 'threshold'; allowed: a number. Fix: pass threshold=<score "
                "where the decision flips> (st.probe_direction records a calibrated one)."
            )
        token = _check_token(token if token is not None else vector.meta.get("token", "mean"))
        d = vector.tensor.detach().float().cpu()
        return cls("linear", direction=d / torch.linalg.vector_norm(d), threshold=float(threshold),
                   hook_name=vector.hook_name, token=token, model=model, meta=dict(vector.meta))

    # ------------------------------------------------------------------ combining
    def __and__(self, other: "Condition") -> "Condition":
        return self._combine("and", other)

    def __or__(self, other: "Condition") -> "Condition":
        return self._combine("or", other)

    def __invert__(self) -> "Condition":
        return Condition("not", (self,), model=self.model)

    def _combine(self, kind: ConditionKind, other: Any) -> "Condition":
        if not isinstance(other, Condition):
            symbol = "&" if kind == "and" else "|"
            raise InvalidArgumentError(
                f"condition {symbol} {other!r:.60}: a {type(other).__name__}; allowed: two Conditions. Fix: combine "
                "with another st.condition_from_prompts(...) or Condition.from_vector(...)."
            )
        for part in other.leaves():
            self._check_same(part.model)
        return Condition(kind, (self, other), model=self.model)

    def leaves(self) -> list["Condition"]:
        """The ``"linear"`` conditions this one is made of."""
        return [self] if self.kind == "linear" else [leaf for part in self.parts for leaf in part.leaves()]

    @property
    def hook_names(self) -> list[str]:
        """The hooks whose residuals the condition reads (distinct, shallowest first)."""
        return sorted({leaf.hook_name for leaf in self.leaves()}, key=lambda n: (parse_hook_name(n)[0], n))

    @property
    def reads(self) -> list[tuple[str, ConditionToken]]:
        """The ``(hook_name, token)`` features the condition needs (distinct)."""
        return sorted({(leaf.hook_name, leaf.token) for leaf in self.leaves()})

    @property
    def layer(self) -> int:
        """The deepest layer the condition reads (steering must sit at or after it inside a steer block)."""
        return max(int(parse_hook_name(n)[0]) for n in self.hook_names)

    # ------------------------------------------------------------------ deciding
    def margins(self, feats: dict[tuple, Float[Tensor, "batch d_model"]]) -> Float[Tensor, " batch"]:
        """Scores from features already read (``feats[(hook_name, token)]``); > 0 means true."""
        if self.kind == "linear":
            x = feats[(self.hook_name, self.token)].float()
            return x @ self.direction.to(x.device) - self.threshold
        scores = torch.stack([part.margins(feats) for part in self.parts])
        if self.kind == "and":
            return scores.min(dim=0).values
        if self.kind == "or":
            return scores.max(dim=0).values
        return -scores[0]

    def check_model(self, model: Any) -> None:
        """Raise :class:`~steering.errors.VectorMismatchError` unless every part was made on a model like ``model``."""
        for leaf in self.leaves():
            leaf._check_same(model)

    def _check_same(self, model: Any) -> None:
        mine, theirs = self.model.cfg, model.cfg
        if int(mine.d_model) != int(theirs.d_model) or mine.model_name != theirs.model_name:
            raise VectorMismatchError(
                f"the condition was made on {mine.model_name!r} (d_model={mine.d_model}) but is used with "
                f"{theirs.model_name!r} (d_model={theirs.d_model}); allowed: the model it was made on. Fix: rebuild it "
                "with st.condition_from_prompts on this model."
            )

    def scores(self, prompts: Sequence[str], model: Optional[Any] = None) -> list[float]:
        """Each prompt's score (> 0: the condition holds), read on ``model`` (default: the one it was made on)."""
        model = self.model if model is None else model
        self.check_model(model)
        texts = text_list("prompts", prompts)
        feats = {}
        for token in sorted({t for _, t in self.reads}):
            names = [n for n, t in self.reads if t == token]
            feats.update({(n, token): f for n, f in prompt_features(model, texts, names, token).items()})
        return self.margins(feats).tolist()

    def predict(self, prompts: Sequence[str], model: Optional[Any] = None) -> list[bool]:
        """Whether each prompt satisfies the condition."""
        return [s > 0 for s in self.scores(prompts, model)]


def condition_from_prompts(
    model: Any, matching: Sequence[str], other: Sequence[str], layer: int, *, token: ConditionToken = "mean",
    batch_size: int = 32,
) -> Condition:
    """A condition that tells prompts like ``matching`` from prompts like ``other``.

    The direction is the mean difference of the prompts' residuals at ``blocks.{layer}.hook_resid_pre``
    (``token="mean"``: averaged over each prompt's tokens, BOS excluded; ``"last"``: its last token);
    the threshold is the one with the best balanced accuracy on these prompts
    (``meta["train_balanced_accuracy"]``).

    Raises:
        InvalidArgumentError: an empty or non-string prompt list, or the two classes read the same.
        LayerOutOfRangeError: ``layer`` is not a layer of the model.

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> c = condition_from_prompts(model, ["I love it", "so good"], ["I hate it", "so bad"], layer=1)
        >>> c.meta["train_balanced_accuracy"], c.direction.shape
        (1.0, torch.Size([64]))
    """
    pos = text_list("matching", matching)
    neg = text_list("other", other)
    name = hook_name(model, layer, "resid_pre")
    token = _check_token(token)
    feats = prompt_features(model, pos + neg, [name], token, batch_size)[name].float()  # [prompt, d_model]
    diff = feats[: len(pos)].mean(dim=0) - feats[len(pos):].mean(dim=0)
    norm = torch.linalg.vector_norm(diff)
    if not float(norm) > 0:
        raise InvalidArgumentError(
            "the matching and other prompts have the same mean residual; allowed: two classes that differ. "
            "Fix: give prompts that differ in what the condition should detect."
        )
    d = (diff / norm).cpu()
    proj = feats.cpu() @ d
    threshold, acc = best_threshold(proj[: len(pos)], proj[len(pos):])
    meta = {"method": "mean_diff", "train_balanced_accuracy": acc, "n_matching": len(pos), "n_other": len(neg)}
    return Condition("linear", direction=d, threshold=threshold, hook_name=name, token=token, model=model, meta=meta)


def _check_token(token: Any) -> ConditionToken:
    if token not in _TOKENS:
        raise InvalidArgumentError(
            f"token={token!r}; allowed: 'mean' (the prompt's tokens, BOS excluded) or 'last'. Fix: pass token='mean'."
        )
    return token


class Gate:
    """A condition's per-row decision for the steering hooks: rows where it is false are not steered.

    Built with a ``decision`` already made (``st.generate`` judges each prompt before it runs) or with
    a ``condition`` that decides on each full forward pass (a steer block: each row's real tokens at
    the condition's hooks, read by :meth:`read`; decode steps keep that decision).

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> gate = Gate(condition_from_prompts(model, ["ab"], ["cd"], layer=0))
        >>> gate.read("blocks.0.hook_resid_pre", torch.zeros(2, 3, 64), Span.whole(2, 3))
        >>> gate.allowed(2).tolist()
        [False, False]
        >>> Gate(decision=torch.tensor([True, False])).allowed(2).tolist()
        [True, False]
    """

    def __init__(self, condition: Optional[Condition] = None, decision: Optional[Bool[Tensor, " batch"]] = None) -> None:
        self.condition = condition
        self.feats: dict[str, Tensor] = {}
        self.decision = decision

    def read(self, name: str, resid: Float[Tensor, "batch seq d_model"], span: Span) -> None:
        """Record each row's features at ``name`` (its mean over real tokens after the first, or its last real
        token's residual) on a full pass; decide once every feature the condition needs is read."""
        if span.start != 0 or self.condition is None:
            return
        batch, seq = int(resid.shape[0]), int(resid.shape[1])
        index = torch.arange(seq)[None, :] - span.first_real.cpu()[:, None]  # [batch, seq] from each row's start
        real = index >= 0 if span.real_mask is None else (index >= 0) & span.real_mask.cpu().bool()
        last = seq - 1 - torch.argmax(torch.flip(real.long(), dims=[1]), dim=1)
        x = resid.detach().float()
        for read_name, token in self.condition.reads:
            if read_name != name:
                continue
            if token == "last":
                self.feats[(name, token)] = x[torch.arange(batch), last.to(x.device)]
            else:
                w = (real & (index >= 1)).to(x.device, x.dtype)  # [batch, seq], BOS excluded
                self.feats[(name, token)] = (x * w[..., None]).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)[:, None]
        if set(self.feats) == set(self.condition.reads):
            self.decision = (self.condition.margins(self.feats) > 0).cpu()
            self.feats = {}

    def allowed(self, batch: int) -> Bool[Tensor, " batch"]:
        """Which rows of a ``batch``-row forward call may be steered."""
        if self.decision is None or int(self.decision.shape[0]) != batch:
            raise SteeringError(
                f"the condition has no decision for this forward batch of {batch} rows (it decides on a full forward "
                "pass, before the steered layer); allowed: a forward pass over whole prompts first. Fix: run the "
                "prompts through the model in the block (model(tokens), model.generate, st.generate)."
            )
        return self.decision.bool()
