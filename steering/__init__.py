"""steering-lens: activation steering (ActAdd and relatives) on TransformerLens 4.

The public API is small and flat:

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

Heavy dependencies (torch, transformers, TransformerLens) are imported on first use
of a name that needs them, so ``import steering`` and ``steer --help`` stay fast.
"""

import importlib
from typing import Any

from .errors import (
    ContextLengthError,
    EmptyPromptError,
    InvalidArgumentError,
    InvalidCoefficientError,
    InvalidVectorError,
    LayerOutOfRangeError,
    ModelFetchError,
    PromptTooShortError,
    SteeringError,
    SteeringWarning,
    UnknownHookError,
    UnknownModelError,
    VectorMismatchError,
)

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily)
_LAZY = {
    "load_model": "models",
    "fetch_model": "models",
    "model_info": "models",
    "cache_dir": "models",
    "BUILTIN_MODELS": "models",
    "SteeringVector": "vectors",
    "actadd": "extract",
    "actadd_layers": "extract",
    "mean_diff": "extract",
    "pca_direction": "extract",
    "mean_vectors": "algebra",
    "cosine_matrix": "algebra",
    "relative_norm": "algebra",
    "save_vectors": "persist",
    "load_vectors": "persist",
    "VectorFileError": "persist",
    "export_gguf": "export",
    "import_gguf": "export",
    "hook_name": "hooks",
    "steer": "apply",
    "active_hooks": "apply",
    "generate": "generation",
    "norm_profile": "analysis",
    "norm_diagnostics": "analysis",
    "TokenScores": "lens",
    "logit_lens": "lens",
    "lens_profile": "lens",
    "NEUTRAL_TEXTS": "metrics",
    "off_target_kl": "metrics",
    "perplexity_ratio": "metrics",
    "logprob_shift": "metrics",
    "token_shift": "metrics",
    "sweep": "sweeps",
    "effect_sizes": "sweeps",
    "Metric": "sweeps",
    "vllm_interventions": "scaling",
    "WEDDING_WORDS": "sweeps",
    "norm_figure": "plots",
    "token_scores_figure": "plots",
    "lens_rank_figure": "plots",
    "effect_heatmap": "plots",
    "frontier_figure": "plots",
    "norm_layers_figure": "plots",
    "token_view_figure": "plots",
    "ReportSection": "report",
    "write_report": "report",
}

__all__ = [
    # models
    "load_model",
    "fetch_model",
    "model_info",
    "cache_dir",
    "BUILTIN_MODELS",
    # vectors
    "SteeringVector",
    "actadd",
    "actadd_layers",
    "mean_diff",
    "pca_direction",
    "hook_name",
    # algebra and persistence
    "mean_vectors",
    "cosine_matrix",
    "relative_norm",
    "save_vectors",
    "load_vectors",
    "export_gguf",
    "import_gguf",
    # applying
    "steer",
    "generate",
    "active_hooks",
    "vllm_interventions",
    # analysis and plots
    "norm_profile",
    "norm_diagnostics",
    "TokenScores",
    "logit_lens",
    "lens_profile",
    "NEUTRAL_TEXTS",
    "off_target_kl",
    "perplexity_ratio",
    "logprob_shift",
    "token_shift",
    "sweep",
    "effect_sizes",
    "Metric",
    "WEDDING_WORDS",
    "norm_figure",
    "token_scores_figure",
    "lens_rank_figure",
    "effect_heatmap",
    "frontier_figure",
    "norm_layers_figure",
    "token_view_figure",
    "ReportSection",
    "write_report",
    # errors
    "SteeringError",
    "UnknownModelError",
    "ModelFetchError",
    "LayerOutOfRangeError",
    "UnknownHookError",
    "VectorMismatchError",
    "InvalidVectorError",
    "EmptyPromptError",
    "InvalidCoefficientError",
    "ContextLengthError",
    "InvalidArgumentError",
    "PromptTooShortError",
    "VectorFileError",
    "SteeringWarning",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'steering' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
