"""Linear-probe directions: a logistic regression on residuals, usable as a vector and as a condition.

:func:`probe_direction` reads each text's residual at ``blocks.{layer}.hook_resid_pre`` (mean over
its tokens, BOS excluded, or its last token), standardises the features, and fits an L2-regularised
logistic regression in torch (L-BFGS). A share of the texts is held out to measure accuracy. The
result is a :class:`~steering.vectors.SteeringVector` along the probe's weights (in residual
units: scaled to the class means' difference along it) whose ``meta`` holds the held-out accuracy
and the calibrated threshold, so ``Condition.from_vector(vec, model)`` turns it into a condition.

Example:
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = probe_direction(model, ["I love it", "so good", "great"], ["I hate it", "so bad", "awful"], layer=1)
    >>> vec.method, tuple(vec.tensor.shape), sorted(vec.meta)[:3]
    ('probe', (64,), ['heldout_accuracy', 'l2', 'n_heldout'])
"""

from typing import Any, Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from .activations import prompt_features, weight_mode
from .chat import ChatInput, PairSource, chat_texts, source_pairs
from .conditions import ConditionToken
from .errors import InvalidArgumentError
from .hooks import hook_name
from .validate import finite_number, flag, text_list
from .vectors import SteeringVector

__all__ = ["probe_direction", "fit_logistic"]


def fit_logistic(
    x: Float[Tensor, "n d"], y: Float[Tensor, " n"], l2: float = 1e-2, steps: int = 100
) -> tuple[Float[Tensor, " d"], float]:
    """Weights and bias of an L2-regularised logistic regression on ``x`` (labels ``y`` in {0, 1}), by L-BFGS.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [3.0], [4.0]])
        >>> w, b = fit_logistic(x, torch.tensor([0.0, 0.0, 1.0, 1.0]))
        >>> bool(w[0] > 0), round(-b / float(w[0]), 1)   # the boundary sits between the classes
        (True, 2.0)
    """
    x, y = x.double(), y.double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), float(b.detach())


def probe_direction(
    model: Any,
    positive_texts: Union[Sequence[ChatInput], PairSource],
    negative_texts: Optional[Sequence[ChatInput]],
    layer: int,
    *,
    token: ConditionToken = "mean",
    l2: float = 1e-2,
    heldout: float = 0.25,
    batch_size: int = 32,
    chat: bool = False,
    system: Optional[str] = None,
) -> SteeringVector:
    """A logistic-regression probe separating ``positive_texts`` from ``negative_texts`` at ``layer``.

    Args:
        model: A ``TransformerBridge``.
        positive_texts: Texts of the class the direction points to, or a
            :class:`~steering.datasets.ContrastiveDataset` (then ``negative_texts=None``): the
            positive and negative sides of its :meth:`~steering.datasets.ContrastiveDataset.pairs`.
        negative_texts: Texts of the other class.
        layer: The block whose ``hook_resid_pre`` is read.
        token: ``"mean"`` (over each text's tokens, BOS excluded) or ``"last"``.
        l2: The L2 penalty on the standardised weights (> 0).
        heldout: The share of each class held out (every ``round(1 / heldout)``-th text) to
            measure accuracy, in ``[0, 0.5]``; 0 fits on everything (no held-out accuracy).
        batch_size: Texts per forward batch.
        chat: Put each text in the model's chat template first (:func:`steering.chat.chat_text`: a string
            is a user turn, a message list may end with the assistant's answer).
        system: A system prompt for ``chat=True``.

    Returns:
        A ``[d_model]`` vector at ``blocks.{layer}.hook_resid_pre`` with ``meta``: ``heldout_accuracy``
        (``None`` without held-out texts), ``train_accuracy``, ``threshold`` (where the probe's
        probability is 0.5, along the unit vector: ``x · v̂ > threshold`` means positive), ``token``,
        ``l2``, ``n_heldout``.

    Raises:
        InvalidArgumentError: empty or non-string text lists, or ``l2`` / ``heldout`` out of range.

    Example:
        >>> from steering.conditions import Condition
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = probe_direction(model, ["nice", "good"], ["bad", "vile"], layer=1, heldout=0.0)
        >>> Condition.from_vector(vec, model).predict(["nice", "vile"])
        [True, False]
    """
    positive_texts, negative_texts = source_pairs(positive_texts, negative_texts, flag("chat", chat),
                                                  ("positive_texts", "negative_texts"))
    if flag("chat", chat):
        pos, neg = (chat_texts(model, positive_texts, system, name="positive_texts")[0],
                    chat_texts(model, negative_texts, system, name="negative_texts")[0])
    elif system is not None:
        raise InvalidArgumentError(f"system={system!r} with chat=False; allowed: system= only with chat=True. "
                                   "Fix: pass chat=True, or drop system=.")
    else:
        pos, neg = text_list("positive_texts", positive_texts), text_list("negative_texts", negative_texts)
    l2 = finite_number("l2", l2, positive=True)
    heldout = finite_number("heldout", heldout)
    if not 0.0 <= heldout <= 0.5:
        raise InvalidArgumentError(f"heldout={heldout!r}; allowed: a share in [0, 0.5]. Fix: pass e.g. heldout=0.25.")
    name = hook_name(model, layer, "resid_pre")
    feats = prompt_features(model, pos + neg, [name], token, batch_size)[name].double().cpu()  # [text, d_model]
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    every = round(1 / heldout) if heldout > 0 else 0
    test = torch.tensor([every > 0 and i % every == every - 1 for i in list(range(len(pos))) + list(range(len(neg)))])
    train = ~test
    mu, sigma = feats[train].mean(dim=0), feats[train].std(dim=0).clamp_min(1e-6)
    w, b = fit_logistic((feats[train] - mu) / sigma, labels[train], l2)
    raw = w / sigma  # the probe in residual units: logit = x · raw + (b − mu · raw)
    unit = raw / torch.linalg.vector_norm(raw)
    threshold = float((mu @ raw - b) / torch.linalg.vector_norm(raw))
    predicted = (feats @ unit > threshold).double()

    def accuracy(rows: Tensor) -> Any:
        return float((predicted[rows] == labels[rows]).double().mean()) if bool(rows.any()) else None

    spread = float((feats[labels == 1].mean(dim=0) - feats[labels == 0].mean(dim=0)) @ unit)
    meta = {"heldout_accuracy": accuracy(test), "train_accuracy": accuracy(train), "threshold": threshold,
            "token": token, "l2": l2, "n_heldout": int(test.sum())}
    return SteeringVector(
        tensor=(unit * spread).float(), hook_name=name, model_name=getattr(model.cfg, "model_name", None),
        method="probe", prompts={"pos": list(pos), "neg": list(neg)}, tokens={}, pad=None,
        weight_mode=weight_mode(model), meta=meta,
    )

