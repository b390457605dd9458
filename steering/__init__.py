"""steering-lens: activation steering (ActAdd and relatives) on TransformerLens 4.

The public API is small and flat — the names a notebook user types daily:

>>> import steering as st
>>> from steering.testing import tiny_model
>>> model = tiny_model()                                  # st.load_model("gemma3-270m") for a real one
>>> vec = st.actadd(model, "Love", "Hate", layer=1)       # per-position ActAdd vector
>>> texts = st.generate(model, ["I hate you"], vec, coeff=5.0, max_new_tokens=5, n=2, seed=0)
>>> len(texts)
2
>>> with st.steer(model, vec, coeff=5.0):
...     logits = model(model.to_tokens("I hate you"))
>>> st.active_hooks(model)                                # nothing left attached
0

Everything else lives in its module: figures in :mod:`steering.plots` (``st.plots``), errors
in :mod:`steering.errors` (``st.errors``), statistics in :mod:`steering.stats`, reference texts
and text metrics in :mod:`steering.texts`, the report in :mod:`steering.report`, model
loading details in :mod:`steering.models`. Heavy dependencies (torch, transformers,
TransformerLens) are imported on first use of a name that needs them, so ``import steering``
and ``steer --help`` stay fast.
"""

import importlib
import warnings
from typing import Any

from .errors import SteeringError, SteeringWarning

__version__ = "0.1.0"

#: The public API: name -> the module that defines it. ``__all__`` and the lazy imports come from it.
PUBLIC_API = {
    "load_model": "models",
    "SteeringVector": "vectors",
    "actadd": "extract",
    "actadd_layers": "extract",
    "mean_diff": "directions",
    "pca_direction": "directions",
    "hook_name": "hooks",
    "save_vectors": "export",
    "load_vectors": "export",
    "export_gguf": "export",
    "import_gguf": "export",
    "steer": "apply",
    "active_hooks": "apply",
    "generate": "generation",
    "sweep": "sweeps",
    "Metric": "sweeps",
    "effect_sizes": "stats",
    "off_target_kl": "metrics",
    "perplexity_ratio": "metrics",
    "logprob_shift": "metrics",
    "token_shift": "metrics",
    "logit_lens": "lens",
    "lens_profile": "lens",
    "norm_profile": "norms",
    "norm_diagnostics": "norms",
    "chat_prompt": "chat",
    "condition_from_prompts": "conditions",
    "probe_direction": "probes",
    "explore": "explorer",
    "explorable": "explorer",
    "SteeringError": "errors",
    "SteeringWarning": "errors",
}

#: Names that were top-level before 0.2 -> their module now. They still work, with a DeprecationWarning.
MOVED = {
    **dict.fromkeys(["fetch_model", "model_info", "cache_dir", "BUILTIN_MODELS"], "models"),
    **dict.fromkeys(["NEUTRAL_TEXTS", "WEDDING_WORDS"], "texts"),
    **dict.fromkeys(["norm_figure", "token_scores_figure", "lens_rank_figure", "effect_heatmap", "frontier_figure",
                     "norm_layers_figure", "token_view_figure"], "plots"),
    **dict.fromkeys(["ReportSection", "write_report"], "report"),
    **dict.fromkeys(["UnknownModelError", "ModelFetchError", "LayerOutOfRangeError", "UnknownHookError",
                     "VectorMismatchError", "InvalidVectorError", "EmptyPromptError", "InvalidCoefficientError",
                     "ContextLengthError", "InvalidArgumentError", "PromptTooShortError", "VectorFileError"],
                    "errors"),
    "relative_norm": "norms",
    **dict.fromkeys(["mean_vectors", "cosine_matrix"], "algebra"),
    "TokenScores": "lens",
    "vllm_interventions": "interventions",
}

#: Submodules reachable as attributes (``st.plots.effect_heatmap``) without importing them first.
SUBMODULES = ("plots", "algebra", "explorer", "datasets", "errors", "stats", "texts", "report", "models", "cache", "mechanisms", "lens", "norms",
              "backends", "placement", "conditions", "chat", "probes", "nulls", "settings", "tokens", "hooks", "testing", "interventions", "export", "vectors")

__all__ = list(PUBLIC_API)


def __getattr__(name: str) -> Any:
    if name in PUBLIC_API:
        value = getattr(importlib.import_module(f".{PUBLIC_API[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in MOVED:
        module = f"steering.{MOVED[name]}"
        warnings.warn(
            f"steering.{name} moved to {module}.{name}; the top-level name will be removed in the next release. "
            f"Use `from {module} import {name}`.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), name)
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'steering' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(SUBMODULES))
