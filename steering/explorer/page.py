"""The explorable page: one self-contained HTML file with sliders over a precomputed grid.

:func:`explorable` computes the grid (:func:`steering.explorer.grid.explore_grid`) and writes the
page; :func:`render_explorable` / :func:`write_explorable` turn a grid's data into the page, and
:func:`read_explorable` reads the data back out of one.

The page works offline: its data sits in a JSON island
``<script type="application/json" id="explorable-data">`` (an object with a ``records`` list, one
record per layer × coefficient × prompt × sample; see ``docs/explore.md``), two
``<input type="range">`` sliders choose the layer and the coefficient, and a Plotly figure (plotly.js
inlined from the installed ``plotly`` package, or loaded from ``plotly_src``) marks where they
stand. Nothing is fetched from the network.

Example:
    >>> import pathlib, tempfile
    >>> from steering.testing import tiny_model
    >>> out = explorable(tiny_model(), "love", "hate", ["I think that"], layers=[1], coeffs=[0, 4],
    ...                  max_new_tokens=3, targets=["l"], kl_prompts=["a quiet day"],
    ...                  out=pathlib.Path(tempfile.mkdtemp()) / "page.html")
    >>> data = read_explorable(out)
    >>> len(data["records"]), '<input type="range"' in out.read_text(encoding="utf-8")
    (4, True)
"""

import html
import json
import os
import pathlib
import re
from typing import Any, Optional, Sequence, Union

from ..errors import InvalidArgumentError
from ..files import as_path, check_readable_file, check_writable_target, file_errors, write_text_atomic
from ..settings import Backend
from .grid import DEFAULT_COEFFS, Decoding, explore_grid
from .script import CSS, SCRIPT

__all__ = ["explorable", "render_explorable", "write_explorable", "read_explorable", "check_data", "REQUIRED_FIELDS"]

#: Fields every record of the data island carries (besides the metrics).
REQUIRED_FIELDS = ("layer", "coeff", "prompt", "sample", "completion")

_ISLAND = re.compile(r'<script type="application/json" id="explorable-data">(.*?)</script>', re.S)


def check_data(data: Any) -> dict:
    """Check a grid's data before it goes into a page: every record present and complete.

    Raises:
        InvalidArgumentError: naming the first missing field or record.

    Example:
        >>> check_data({"records": []})
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: explorable data: 'records' is empty; allowed: one record per layer × coeff × prompt × sample. Fix: pass the dict explore_grid returns.
    """
    fix = "Fix: pass the dict explore_grid returns."
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"explorable data is a {type(data).__name__}; allowed: a dict. {fix}")
    if not data.get("records"):
        raise InvalidArgumentError("explorable data: 'records' is empty; allowed: one record per layer × coeff × prompt "
                                   f"× sample. {fix}")
    for name in ("layers", "coeffs", "prompts", "decodings", "samples"):
        if name not in data:
            raise InvalidArgumentError(f"explorable data has no {name!r}; allowed: the keys explore_grid writes. {fix}")
    seen = set()
    for i, record in enumerate(data["records"]):
        missing = [f for f in REQUIRED_FIELDS if f not in record]
        if missing:
            raise InvalidArgumentError(f"explorable record {i} lacks {missing}; allowed: records with {list(REQUIRED_FIELDS)}. "
                                       f"{fix}")
        seen.add((record["layer"], record["coeff"], record.get("prompt_index"), record["sample"], record.get("decoding")))
    for layer in data["layers"]:
        for coeff in data["coeffs"]:
            for d in data["decodings"]:
                for p in range(len(data["prompts"])):
                    for s in range(data["samples"].get(d, 1)):
                        if (layer, coeff, p, s, d) not in seen:
                            raise InvalidArgumentError(f"explorable data has no record for layer {layer}, coeff {coeff}, "
                                                       f"prompt {p}, sample {s} ({d}); the grid is incomplete. {fix}")
    return data


def _json_for_script(data: dict) -> str:
    """JSON safe inside a <script> element: no ``</script>`` or ``<!--`` can appear."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def _start(data: dict) -> dict:
    """The setting shown first: the steered cell with the largest effect (the first cell if none)."""
    cells = [c for c in data.get("cells", []) if c.get("coeff") and c.get("effect") is not None]
    if not cells:
        return {"layer": data["layers"][0], "coeff": data["coeffs"][0]}
    best = max(cells, key=lambda c: c["effect"])
    return {"layer": best["layer"], "coeff": best["coeff"]}


def render_explorable(data: dict, *, title: Optional[str] = None, plotly_src: Optional[str] = None) -> str:
    """The page for a grid's data, as a string.

    Args:
        data: What :func:`~steering.explorer.grid.explore_grid` returns.
        title: The page title (default: the prompt pair and the model).
        plotly_src: A URL to load plotly.js from (e.g. the docs site's own copy); ``None`` inlines
            the installed ``plotly`` package's bundle (about 4.6 MB), so the page needs nothing else.

    Raises:
        InvalidArgumentError: ``data`` is incomplete (see :func:`check_data`).

    Example:
        >>> page = render_explorable({"records": [{"layer": 0, "coeff": 0.0, "prompt": "a", "prompt_index": 0,
        ...     "sample": 0, "decoding": "greedy", "completion": "b"}], "layers": [0], "coeffs": [0.0],
        ...     "prompts": ["a"], "decodings": ["greedy"], "samples": {"greedy": 1}}, plotly_src="plotly.min.js")
        >>> page.count('<input type="range"'), 'id="explorable-data"' in page
        (2, True)
    """
    data = dict(check_data(data))
    data.setdefault("start", _start(data))
    settings = data.get("settings", {})
    if title is None:
        title = f"Explore {settings.get('pos', '?')!r} − {settings.get('neg', '?')!r}" + (
            f" on {settings['model']}" if settings.get("model") else "")
    if plotly_src is None:
        from plotly.offline import get_plotlyjs

        plotly = f"<script>{get_plotlyjs()}</script>"
    else:
        plotly = f'<script src="{html.escape(plotly_src)}"></script>'
    grid = f"{len(data['layers'])} layers × {len(data['coeffs'])} coefficients × {len(data['prompts'])} prompts"
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style>{plotly}</head>",
        '<body data-state="loading">',
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="caption">Precomputed grid: {html.escape(grid)}. Move the sliders to switch settings; the '
        "shown completions, metrics and lenses are the ones recorded for that setting.</p>",
        '<div id="explorable-error" role="alert" hidden></div><p id="explorable-note"></p>',
        "<noscript>This page needs JavaScript to show the recorded settings.</noscript>",
        '<div id="explorable" hidden><div class="controls">',
        '<label>Layer <input type="range" id="layer-slider" min="0" max="0" step="1" value="0">'
        '<output id="layer-value"></output></label>',
        '<label>Coefficient <input type="range" id="coeff-slider" min="0" max="0" step="1" value="0">'
        '<output id="coeff-value"></output></label>',
        '<label id="decoding-control">Decoding <select id="decoding-select"></select></label></div>',
        '<div class="metrics" id="metrics"></div><div id="explorable-plot"></div>',
        '<h2>Completions</h2><div id="completions"></div>',
        '<h2>Lenses</h2><p class="caption">Effect lens: mean change of each token\'s next-token log-prob on '
        "unrelated text at this setting. Logit lens: the vector itself read through the unembedding.</p>",
        '<div class="lenses" id="lenses"></div></div>',
        f'<script type="application/json" id="explorable-data">{_json_for_script(data)}</script>',
        f"<script>{SCRIPT}</script>",
        "</body></html>", "",
    ])


def write_explorable(path: Union[str, os.PathLike], data: dict, *, title: Optional[str] = None,
                     plotly_src: Optional[str] = None) -> pathlib.Path:
    """Write the page for a grid's data (atomically: no partial file on error); return its path.

    Raises:
        InvalidArgumentError: incomplete data, or ``path`` is a folder.
        FileAccessError: the operating system refused the write; an older page is left as it was.

    Example:
        >>> import pathlib, tempfile
        >>> data = {"records": [{"layer": 0, "coeff": 0.0, "prompt": "a", "prompt_index": 0, "sample": 0,
        ...          "decoding": "greedy", "completion": "b"}], "layers": [0], "coeffs": [0.0], "prompts": ["a"],
        ...         "decodings": ["greedy"], "samples": {"greedy": 1}}
        >>> out = write_explorable(pathlib.Path(tempfile.mkdtemp()) / "p.html", data, plotly_src="plotly.min.js")
        >>> read_explorable(out)["records"][0]["completion"]
        'b'
    """
    page = render_explorable(data, title=title, plotly_src=plotly_src)
    target = as_path(path, "explorable page")
    with file_errors(target.parent, "write", "folder"):
        target.parent.mkdir(parents=True, exist_ok=True)
    check_writable_target(target, "explorable page")
    return write_text_atomic(target, page)


def read_explorable(path: Union[str, os.PathLike]) -> dict:
    """The data island of an explorable page, parsed.

    Raises:
        InvalidArgumentError: the file holds no (valid) data island.
        FileAccessError: the file cannot be read.

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.html"
        >>> _ = p.write_text("<html></html>", encoding="utf-8")
        >>> read_explorable(p)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: ... holds no <script type="application/json" id="explorable-data">; ...
    """
    target = check_readable_file(path, "explorable page")
    with file_errors(target, "read", "explorable page"):
        text = target.read_text(encoding="utf-8")
    match = _ISLAND.search(text)
    if match is None:
        raise InvalidArgumentError(f"{str(target)!r} holds no <script type=\"application/json\" id=\"explorable-data\">; "
                                   "allowed: a page written by st.explorable / steer explore. Fix: pass such a page.")
    try:
        return json.loads(match.group(1))
    except ValueError as err:
        raise InvalidArgumentError(f"the data island of {str(target)!r} is not valid JSON ({err}). "
                                   "Fix: write the page again with st.explorable / steer explore.") from None


def explorable(
    model: Any,
    pos: str,
    neg: str,
    prompts: Optional[Sequence[str]] = None,
    *,
    out: Union[str, os.PathLike] = "explorable.html",
    layers: Any = "all",
    coeffs: Any = DEFAULT_COEFFS,
    n: int = 2,
    max_new_tokens: int = 24,
    seed: Optional[int] = 0,
    decoding: Decoding = "sampled",
    targets: Optional[Sequence[str]] = None,
    topic_words: Optional[Sequence[str]] = None,
    kl_prompts: Optional[Sequence[str]] = None,
    k: int = 8,
    hook: str = "resid_pre",
    pad: str = "space",
    title: Optional[str] = None,
    plotly_src: Optional[str] = None,
    progress: Optional[bool] = None,
    backend: Backend = "auto",
) -> pathlib.Path:
    """Precompute an ActAdd pair over layers × coefficients × prompts × samples and write the explorable page.

    The options are those of :func:`steering.explorer.grid.explore_grid` (``n`` samples per prompt,
    ``decoding`` ``"sampled"`` / ``"greedy"`` / ``"both"``, seeded) and of :func:`render_explorable`
    (``title``, ``plotly_src``). ``out`` is checked before any work.

    Returns:
        The path written.

    Example:
        >>> import pathlib, tempfile
        >>> from steering.testing import tiny_model
        >>> out = explorable(tiny_model(), "love", "hate", ["I think that"], layers=[0, 1], coeffs=[4],
        ...                  decoding="greedy", max_new_tokens=2, targets=["l"], kl_prompts=["a quiet day"],
        ...                  out=pathlib.Path(tempfile.mkdtemp()) / "page.html")
        >>> sorted({(r["layer"], r["coeff"]) for r in read_explorable(out)["records"]})
        [(0, 0.0), (0, 4.0), (1, 0.0), (1, 4.0)]
    """
    target = as_path(out, "explorable page")
    with file_errors(target.parent, "write", "folder"):
        target.parent.mkdir(parents=True, exist_ok=True)
    check_writable_target(target, "explorable page")  # before any work: a refused path costs no model run
    data = explore_grid(model, pos, neg, prompts, layers=layers, coeffs=coeffs, n=n, max_new_tokens=max_new_tokens,
                        seed=seed, decoding=decoding, targets=targets, topic_words=topic_words, kl_prompts=kl_prompts,
                        k=k, hook=hook, pad=pad, progress=progress, backend=backend)
    return write_explorable(target, data, title=title, plotly_src=plotly_src)
