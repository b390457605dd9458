"""Why a steering vector steers: propagation, attribution, attention, patching and position effects.

Each measure returns a tidy ``pandas.DataFrame`` (scalars in ``df.attrs``); the figures are in
:mod:`steering.plots.mechanisms`.

* :func:`delta_profile` — the steered − unsteered residual at every hook point after the steered one.
* :func:`attribute` — the change of each component's direct contribution to a target logit.
* :func:`attention_to_steered` — attention later positions pay to the steered front positions.
* :func:`patch_effect` — activation patching per layer × position: where the effect is carried.
* :func:`position_effects` — which positions of an ActAdd vector matter (knock-out / alone, with CIs).

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> table = st.mechanisms.attribute(model, vec, ["I am here today"], target="a", coeff=4.0)
    >>> total = table["contribution"].sum() + table.attrs["norm_gap"]
    >>> bool(abs(total - table.attrs["logit_change"]) < 1e-4)
    True
"""

from .attention import attention_to_steered
from .attribution import attribute
from .patching import PatchMode, patch_effect
from .positions import masked_vector, position_effects
from .propagation import delta_profile

__all__ = ["delta_profile", "attribute", "attention_to_steered", "patch_effect", "PatchMode", "position_effects",
           "masked_vector"]
