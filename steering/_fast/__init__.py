"""The twin backend: the unbridged Hugging Face model, sharing the bridge's weights, and what speeds it up.

- :mod:`.twin`: building the twin (:func:`twin_for`), finding its decoder layers; held in a
  registry keyed weakly by the bridge, never on the bridge itself.
- :mod:`.kernels`: small-batch CPU matmuls (:func:`chunked_linear`) and the twin's linear
  layers, whose kernel follows ``STEERING_LINEAR`` at call time (:func:`linear_kernel`).
- :mod:`.packing`: oneDNN-packed weights for large batched generations (:func:`packed_weights`).
- :mod:`.rows`: rows that agree share the layers below the steered one (:func:`shared_rows`).
- :mod:`.resume`: one unsteered pass that steered rows resume at any layer (:class:`ResumableForward`).

The twin and the bridge's hook points compute the same function: the tests check steered
logits and greedy generations against the bridge's hook points.

Example:
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> twin = twin_for(model)
    >>> twin is twin_for(model)  # built once per bridge
    True
    >>> shares_weights(model, twin), len(decoder_layers(twin))
    (True, 2)
"""

from .kernels import CHUNK_MAX_ROWS, CHUNKS, chunked_linear
from .packing import PACK_MIN_NEW_TOKENS, PACK_MIN_ROWS, PACK_MIN_WORK, packed_weights
from .resume import ResumableForward
from .rows import shared_rows
from .twin import decoder_layers, existing_twin, linear_kernel, shares_weights, twin_for

__all__ = [
    "twin_for",
    "existing_twin",
    "decoder_layers",
    "shares_weights",
    "chunked_linear",
    "linear_kernel",
    "packed_weights",
    "shared_rows",
    "ResumableForward",
    "PACK_MIN_ROWS",
    "PACK_MIN_NEW_TOKENS",
    "PACK_MIN_WORK",
    "CHUNKS",
    "CHUNK_MAX_ROWS",
]
