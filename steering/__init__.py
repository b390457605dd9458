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
"""

from .analysis import norm_profile
from .apply import active_hooks, steer
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
from .extract import actadd
from .generate import generate
from .hooks import hook_name
from .models import BUILTIN_MODELS, cache_dir, fetch_model, load_model, model_info
from .plots import norm_figure
from .vectors import SteeringVector

__version__ = "0.1.0"

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
    "hook_name",
    # applying
    "steer",
    "generate",
    "active_hooks",
    # analysis and plots
    "norm_profile",
    "norm_figure",
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
    "SteeringWarning",
    "__version__",
]
