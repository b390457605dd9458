"""The Jupyter playground: ipywidgets sliders and a prompt box over a :class:`~steering.explorer.playground.Playground`.

:func:`explore` builds the widget; it only wires controls to :meth:`Playground.view` (the update
logic, tested without a browser). Each change runs in a background thread — the latest setting
wins, a progress bar shows the steps, a cached setting shows at once — and the library calls it
makes leave no hook attached, also when one fails (the error is shown in the widget). In a kernel
without a frontend the widget still builds, and :meth:`Explorer.show` / :meth:`Explorer.wait` run
the same update.

Example:
    >>> from steering.testing import tiny_model
    >>> ex = explore(tiny_model(), ("love", "hate"), prompts=["I think that"], layers=[0, 1], coeffs=[0, 4],
    ...              max_new_tokens=3, kl_prompts=["a quiet day in town"], start=False)
    >>> view = ex.show(1, 4.0)  # what moving the sliders there does, run in this thread
    >>> (view.layer, view.coeff), "layer 1, c = 4" in ex.output.value
    ((1, 4.0), True)
"""

import html
import threading
from typing import Any, Optional, Sequence

from ..apply import active_hooks
from ..errors import SteeringError
from .grid import DEFAULT_COEFFS
from .playground import Playground, View, view_html

__all__ = ["Explorer", "explore"]

_STEPS = 5  # the steps Playground.view reports


class Explorer:
    """The widget :func:`explore` returns: ``.widget`` (an ipywidgets box), ``.playground`` (the state).

    Displaying it in a notebook shows the widget. ``layer`` / ``coeff`` / ``prompt`` are the controls,
    ``progress`` and ``status`` the progress indicator, ``output`` the view's HTML.
    """

    def __init__(self, playground: Playground, *, layer: Optional[int] = None, coeff: Optional[float] = None,
                 start: bool = True) -> None:
        import ipywidgets as w

        self.playground = pg = playground
        layer = pg.layers[len(pg.layers) // 2] if layer is None else layer
        coeff = pg.coeffs[len(pg.coeffs) // 2] if coeff is None else float(coeff)
        self.layer = w.SelectionSlider(options=pg.layers, value=layer, description="layer", continuous_update=False,
                                       disabled=len(pg.layers) == 1)
        self.coeff = w.SelectionSlider(options=[(f"{c:g}", c) for c in pg.coeffs], value=coeff, description="coeff",
                                       continuous_update=False)
        self.prompt = w.Combobox(options=list(pg.prompts), value=pg.prompts[0], description="prompt",
                                 ensure_option=False, continuous_update=False, layout=w.Layout(width="60%"))
        self.progress = w.IntProgress(min=0, max=_STEPS, value=0, description="")
        self.status = w.Label(value="")
        self.output = w.HTML(value="")
        self.widget = w.VBox([w.HBox([self.layer, self.coeff]), self.prompt, w.HBox([self.progress, self.status]),
                              self.output])
        self._lock = threading.Lock()
        self._pending: Optional[tuple] = None
        self._thread: Optional[threading.Thread] = None
        for control in (self.layer, self.coeff, self.prompt):
            control.observe(lambda change: self.request(), names="value")
        if start:
            self.request()

    def setting(self) -> tuple:
        """The ``(layer, coeff, prompt)`` the controls show."""
        return self.layer.value, float(self.coeff.value), self.prompt.value or self.playground.prompts[0]

    def show(self, layer: Optional[int] = None, coeff: Optional[float] = None, prompt: Optional[str] = None) -> Optional[View]:
        """Compute (or take from the cache) the view of a setting in this thread, and show it.

        Missing arguments are the controls' values. Returns the view, or ``None`` when it failed
        (the widget then shows the error).
        """
        now = self.setting()
        setting = (now[0] if layer is None else layer, now[1] if coeff is None else float(coeff),
                   now[2] if prompt is None else prompt)

        steps: list = []

        def step(done: int, total: int, label: str) -> None:
            steps.append(label)
            self.progress.value, self.progress.max = done, total
            self.status.value = f"computing layer {setting[0]}, c = {setting[1]:g}: {label}…"

        self.progress.bar_style = ""
        try:
            view = self.playground.view(*setting, step=step)
        except Exception as err:  # noqa: BLE001 - the widget's boundary: every error is shown, none stops the worker
            self.progress.bar_style = "danger"
            hint = "" if isinstance(err, (SteeringError, OSError)) else " (a bug in steering-lens: please report it)"
            self.status.value = f"failed: {type(err).__name__}{hint}"
            self.output.value = f'<pre style="color:#8a1c1c">{html.escape(type(err).__name__ + ": " + str(err))}</pre>'
            return None
        self.progress.value = self.progress.max
        self.progress.bar_style = "success"
        cached = f" in {view.seconds:.1f} s" if steps else " (cached)"
        self.status.value = f"layer {view.layer}, c = {view.coeff:g}{cached}; hooks attached: " \
                            f"{active_hooks(self.playground.model)}"
        self.output.value = view_html(view)
        return view

    def request(self, layer: Optional[int] = None, coeff: Optional[float] = None, prompt: Optional[str] = None) -> None:
        """Ask for a setting (default: the controls'); it is computed in the background, the latest request winning."""
        now = self.setting()
        setting = (now[0] if layer is None else layer, now[1] if coeff is None else float(coeff),
                   now[2] if prompt is None else prompt)
        with self._lock:
            self._pending = setting
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="steering-explore", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                setting, self._pending = self._pending, None
                if setting is None:
                    self._thread = None
                    return
            self.show(*setting)

    def wait(self, timeout: Any = None) -> bool:
        """Wait until the background updates are done; ``True`` if they are."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._thread is None

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def explore(
    model: Any,
    vector_or_pair: Any,
    prompts: Optional[Sequence[str]] = None,
    layers: Any = None,
    coeffs: Any = DEFAULT_COEFFS,
    *,
    n: int = 2,
    max_new_tokens: int = 24,
    seed: Optional[int] = 0,
    greedy: bool = False,
    kl_prompts: Optional[Sequence[str]] = None,
    k: int = 8,
    hook: str = "resid_pre",
    pad: Any = "space",
    start: bool = True,
) -> Explorer:
    """A Jupyter playground: sliders for layer and coefficient, a prompt box, steered vs unsteered completions.

    Each setting shows ``n`` unsteered and steered completions side by side (the steered tokens
    shaded by how much more or less likely steering made them), the off-target KL, the effect lens
    (tokens the setting promotes / suppresses on unrelated text) and the vector's logit lens.
    Updates run in the background with a progress bar; each setting is computed once and cached.

    Args:
        model: The bridge.
        vector_or_pair: A :class:`~steering.SteeringVector` (the layer slider is fixed to its layer
            unless it is an ActAdd vector whose prompts are known) or a ``(pos, neg)`` pair of prompts
            (ActAdd at each layer).
        prompts: Prompts offered in the prompt box (any other may be typed).
        layers: Layers on the slider (default: every layer).
        coeffs: Coefficients on the slider (0 added).
        n: Completions per side.
        max_new_tokens: Tokens per completion.
        seed: Sampling seed (both sides use it).
        greedy: Greedy decoding instead of sampling.
        kl_prompts: Unrelated texts of the KL and the effect lens.
        k: Tokens per lens direction.
        hook: ActAdd's hook kind (for a pair).
        pad: ActAdd's padding rule (for a pair).
        start: Compute the first setting right away (in the background).

    Returns:
        An :class:`Explorer`; display it (the last expression of a cell) to see the widget.

    Raises:
        InvalidArgumentError: a bad option (checked before any work).

    Example:
        >>> from steering.testing import tiny_model
        >>> ex = explore(tiny_model(), ("love", "hate"), prompts=["I think that"], layers=[1], coeffs=[4],
        ...              max_new_tokens=3, kl_prompts=["a quiet day in town"])
        >>> ex.wait(60), ex.playground.view(1, 4.0).layer  # the first setting, computed in the background
        (True, 1)
    """
    playground = Playground(model, vector_or_pair, prompts=prompts, layers=layers, coeffs=coeffs, n=n,
                            max_new_tokens=max_new_tokens, seed=seed, greedy=greedy, kl_prompts=kl_prompts, k=k,
                            hook=hook, pad=pad)
    layer = None
    if hasattr(vector_or_pair, "hook_name"):
        layer = playground.layers.index(int(vector_or_pair.layer)) if int(vector_or_pair.layer) in playground.layers else None
        layer = None if layer is None else playground.layers[layer]
    return Explorer(playground, layer=layer, start=start)
