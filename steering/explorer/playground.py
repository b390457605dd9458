"""The live playground's update logic: one layer × coefficient × prompt, computed on demand and cached.

:class:`Playground` holds the state (the model, one vector per layer, the unrelated texts of the
KL) and its :meth:`Playground.view` is the update logic: a plain method that computes one
setting's :class:`View` — unsteered and steered completions, each steered token's Δ log-prob,
the off-target KL, the effect lens and the logit lens — and caches it, so moving back to a setting
is instant. :func:`steering.explorer.widget.explore` wraps it in ipywidgets (sliders, a prompt box, a progress
bar) whose updates run in a background thread. Every computation goes through :func:`steering.generate` and
the forward engine, whose hooks are removed when each call ends (also on an error).

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> pg = Playground(model, ("love", "hate"), prompts=["I think that"], layers=[0, 1], coeffs=[0, 4],
    ...                 max_new_tokens=3, kl_prompts=["a quiet day in town"])
    >>> view = pg.view(1, 4.0)
    >>> len(view.steered), len(view.tokens[0]), pg.view(1, 4.0) is view  # cached
    (2, 3, True)
"""

import html
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..errors import InvalidArgumentError
from ..extract import actadd
from ..generation import generate
from ..hooks import hook_names, layer_of, parse_hook_name
from ..lens import logit_lens
from ..texts import DEFAULT_REPORT_PROMPTS
from ..validate import coeff_list, count, flag, text_list
from ..validate import seed as check_seed
from ..vectors import SteeringVector
from .grid import DEFAULT_COEFFS, DEFAULT_KL_TEXTS
from .measures import reference, side_effects, token_deltas

__all__ = ["View", "Playground", "view_html"]


@dataclass
class View:
    """What the playground shows at one setting.

    Attributes:
        layer, coeff, prompt: The setting.
        unsteered, steered: ``n`` completions each (same seed).
        tokens: Per steered completion, ``(token, Δ log-prob)`` of each token (steered − unsteered, nats).
        kl: Off-target KL (nats) on the playground's unrelated texts.
        promoted, suppressed: The effect lens, ``(token, mean Δ log-prob)``.
        lens: The logit lens of the vector, ``{"promoted": [...], "suppressed": [...]}``.
        seconds: Time the computation took (0 for a cached view).
    """

    layer: int
    coeff: float
    prompt: str
    unsteered: list
    steered: list
    tokens: list
    kl: float
    promoted: list
    suppressed: list
    lens: dict
    seconds: float = 0.0

    def _repr_html_(self) -> str:
        return view_html(self)


def _vector_source(model: Any, vector_or_pair: Any, hook: str, pad: Any) -> tuple:
    """``(fixed vector or None, pos, neg, hook kind, pad)`` of the ``vector_or_pair`` argument."""
    if isinstance(vector_or_pair, SteeringVector):
        vector_or_pair.check_compatible(model)
        pos, neg = vector_or_pair.prompts.get("pos"), vector_or_pair.prompts.get("neg")
        kind = parse_hook_name(vector_or_pair.hook_name)[1]
        known = (vector_or_pair.method == "actadd" and not vector_or_pair.is_direction and isinstance(pos, str)
                 and isinstance(neg, str))  # a per-position ActAdd vector: actadd rebuilds it at any layer
        vpad = vector_or_pair.pad or "space"
        vpad = int(vpad[3:]) if vpad.startswith("id:") else vpad
        return vector_or_pair, (pos if known else None), (neg if known else None), kind, vpad
    if (isinstance(vector_or_pair, (tuple, list)) and len(vector_or_pair) == 2
            and all(isinstance(p, str) for p in vector_or_pair)):
        return None, vector_or_pair[0], vector_or_pair[1], hook, pad
    raise InvalidArgumentError(
        f"vector_or_pair={vector_or_pair!r:.80}; allowed: a SteeringVector or a (pos, neg) pair of prompts. "
        "Fix: pass st.actadd(model, ' weddings', '', layer=6) or (' weddings', '')."
    )


@dataclass
class Playground:
    """The state and update logic behind :func:`explore` (usable without any widget).

    Args:
        model: The bridge.
        vector_or_pair: A :class:`SteeringVector` (its layer only, unless it is an ActAdd vector whose
            prompts are known: then any layer) or a ``(pos, neg)`` pair (ActAdd at each layer).
        prompts: Prompts offered (default :data:`steering.texts.DEFAULT_REPORT_PROMPTS`); any other
            prompt may be asked for too.
        layers: Layers offered (default: every layer, or the vector's own).
        coeffs: Coefficients offered.
        n: Completions per side.
        max_new_tokens: Tokens per completion.
        seed: Sampling seed (the same for both sides).
        greedy: Greedy decoding instead of sampling.
        kl_prompts: Unrelated texts of the KL and the effect lens.
        k: Tokens per direction in the lenses.
        hook, pad: ActAdd's hook kind and padding rule (for a pair).

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "love", "hate", layer=1)
        >>> Playground(model, vec).layers, Playground(model, vec.direction()).layers  # known prompts: any layer
        ([0, 1], [1])
    """

    model: Any
    vector_or_pair: Any
    prompts: Optional[Sequence[str]] = None
    layers: Any = None
    coeffs: Any = DEFAULT_COEFFS
    n: int = 2
    max_new_tokens: int = 24
    seed: Optional[int] = 0
    greedy: bool = False
    kl_prompts: Optional[Sequence[str]] = None
    k: int = 8
    hook: str = "resid_pre"
    pad: Any = "space"
    cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        fixed, self.pos, self.neg, self.hook, self.pad = _vector_source(self.model, self.vector_or_pair, self.hook, self.pad)
        self.fixed = fixed is not None and self.pos is None
        self.prompts = text_list("prompts", DEFAULT_REPORT_PROMPTS if self.prompts is None else self.prompts,
                                 allowed="a non-empty list of non-empty strings", example="['I went up to my friend and said']")
        self.coeffs = sorted(set(coeff_list(self.coeffs)) | {0.0})
        self.n, self.max_new_tokens = count("n", self.n, example=2), count("max_new_tokens", self.max_new_tokens, example=24)
        self.seed, self.greedy = check_seed(self.seed), flag("greedy", self.greedy)
        self.k = count("k", self.k, example=8)
        self.kl_prompts = text_list("kl_prompts", DEFAULT_KL_TEXTS if self.kl_prompts is None else self.kl_prompts,
                                    allowed="a non-empty list of non-empty strings", example="st.texts.NEUTRAL_TEXTS[:3]")
        own = [] if fixed is None else [layer_of(fixed.hook_name)]
        if self.fixed:
            if self.layers is not None and list(self.layers) != own:
                raise InvalidArgumentError(f"layers={self.layers!r}; allowed: {own} (the vector's own layer: its prompts "
                                           "are unknown, so it cannot be rebuilt elsewhere). Fix: pass layers=None.")
            self.layers = own
        else:
            names, _ = hook_names(self.model, "all" if self.layers is None else self.layers, self.hook)
            self.layers = [layer_of(nm) for nm in names]
        self._vectors = {own[0]: fixed} if fixed is not None else {}
        self._lock = threading.RLock()
        self._reference: Any = None

    def vector(self, layer: int) -> SteeringVector:
        """The vector at ``layer`` (built once with :func:`steering.actadd`, then kept)."""
        with self._lock:
            if layer not in self._vectors:
                if self.fixed or self.pos is None:
                    raise InvalidArgumentError(f"layer={layer}; allowed: {self.layers}. Fix: pick one of those layers.")
                self._vectors[layer] = actadd(self.model, self.pos, self.neg, layer, hook=self.hook, pad=self.pad)
            return self._vectors[layer]

    def _generate(self, prompt: str, vector: Any, coeff: float) -> list:
        return generate(self.model, prompt, vector, coeff, n=self.n, max_new_tokens=self.max_new_tokens, seed=self.seed,
                        do_sample=not self.greedy, progress=False)

    def view(self, layer: int, coeff: Any, prompt: Optional[str] = None, *, step: Any = None) -> View:
        """The view at one setting: computed on the first call, from the cache afterwards.

        Args:
            layer: One of :attr:`layers`.
            coeff: A coefficient (any finite number, not only those offered).
            prompt: The prompt (default: the first offered one).
            step: Called with ``(done, total, label)`` as the computation advances (for a progress bar).
        """
        prompt = text_list("prompt", self.prompts[0] if prompt is None else prompt, example="'I think that'")[0]
        c = coeff_list(coeff)[0]
        if layer not in self.layers:
            raise InvalidArgumentError(f"layer={layer!r}; allowed: one of {self.layers}. Fix: pick one of those layers.")
        key = (int(layer), c, prompt)
        with self._lock:  # one computation at a time; a second caller of the same setting gets the cached view
            if key not in self.cache:
                self.cache[key] = self._compute(int(layer), c, prompt, step or (lambda *a: None))
            return self.cache[key]

    def _compute(self, layer: int, coeff: float, prompt: str, step: Any) -> View:
        start, total = time.perf_counter(), 5
        step(0, total, "vector")
        vec = self.vector(layer)
        if self._reference is None:
            self._reference = reference(self.model, self.kl_prompts)
        plain_key = ("unsteered", prompt)
        if plain_key not in self.cache:
            step(1, total, "unsteered completions")
            self.cache[plain_key] = self._generate(prompt, None, 1.0)
        step(2, total, "steered completions")
        steered = self._generate(prompt, vec, coeff)
        step(3, total, "token log-probs")
        tokens = token_deltas(self.model, vec, coeff, [prompt] * len(steered), steered)
        step(4, total, "KL and lenses")
        side = side_effects(self.model, vec, self._reference, [coeff], k=self.k)[coeff]
        table = logit_lens(self.model, vec, k=self.k).table
        lens = {d: list(zip(table[table["direction"] == d]["token"], table[table["direction"] == d]["score"]))
                for d in ("promoted", "suppressed")}
        step(5, total, "done")
        return View(layer, coeff, prompt, list(self.cache[plain_key]), steered, tokens, side["kl"], side["promoted"],
                    side["suppressed"], lens, time.perf_counter() - start)


def _shade(delta: float, scale: float = 2.0) -> str:
    """A background colour for a token's Δ log-prob: green up, red down, stronger for larger changes."""
    alpha = min(abs(delta) / scale, 1.0) * 0.6
    return f"rgba(17,140,70,{alpha:.2f})" if delta > 0 else f"rgba(200,30,30,{alpha:.2f})"


def view_html(view: View) -> str:
    """A view as HTML: completions side by side (steered tokens shaded by Δ log-prob), KL, lenses.

    Example:
        >>> v = View(1, 4.0, "I think", ["a b"], ["c d"], [[("c", 1.5), (" d", -0.5)]], 0.25, [("x", 1.0)],
        ...          [("y", -1.0)], {"promoted": [], "suppressed": []})
        >>> page = view_html(v)
        >>> 'title="Δ log-prob +1.50"' in page, "0.2500" in page
        (True, True)
    """
    def tokens(row: list) -> str:
        return "".join(f'<span style="background:{_shade(d)}" title="Δ log-prob {d:+.2f}">{html.escape(t)}</span>'
                       for t, d in row)

    def token_list(title: str, rows: list) -> str:
        items = "".join(f"<li><code>{html.escape(repr(t))}</code> {s:+.3f}</li>" for t, s in rows)
        return f"<div><b>{html.escape(title)}</b><ol>{items}</ol></div>"

    cell = "border:1px solid #ddd;padding:4px 8px;vertical-align:top;white-space:pre-wrap;font-family:monospace"
    rows = "".join(f'<tr><td style="{cell}">{html.escape(u)}</td><td style="{cell}">{tokens(t)}</td></tr>'
                   for u, t in zip(view.unsteered, view.tokens))
    return (
        f"<div><p><b>layer {view.layer}, c = {view.coeff:g}</b> — prompt {html.escape(repr(view.prompt))}; "
        f"off-target KL <b>{view.kl:.4f}</b> nats</p>"
        f'<table style="border-collapse:collapse;width:100%"><tr><th>unsteered</th>'
        f"<th>steered (green: more likely under steering, red: less)</th></tr>{rows}</table>"
        '<div style="display:flex;gap:2em">'
        + token_list("effect lens: promoted", view.promoted) + token_list("effect lens: suppressed", view.suppressed)
        + token_list("logit lens: promoted", view.lens.get("promoted", []))
        + token_list("logit lens: suppressed", view.lens.get("suppressed", []))
        + "</div></div>"
    )
