"""gradattr: gradient-based attribution for PyTorch, after Ancona et al. (ICLR 2018).

The public surface: :func:`attribute`, :data:`METHODS`, :data:`PAPER_METHODS` (Ancona et al.'s six) and
:data:`LAYER_METHODS` (those needing ``layer=``) (attributions), :func:`sensitivity_n` and
:func:`patches` (the paper's Sensitivity-n metric and its feature groups), :func:`evaluate` (methods and
Sensitivity-n over a data set), :func:`token_attributions` (one relevance per token from an embedding's
attributions), :func:`train` (seeded training with early stopping), :func:`set_max_memory` and
:func:`memory_budget` (the memory budget of every pass through the model). Data and models live
in :mod:`gradattr.data` and :mod:`gradattr.models`; further measures in :mod:`gradattr.metrics`; LRP's
composites (``attribute(..., method="lrp", composite=...)``) in :mod:`gradattr.composites`; token-by-token
attribution of a causal language model's generated text in :mod:`gradattr.generation`
(``attribute_generation``).
"""

from gradattr.evaluation import evaluate
from gradattr.groups import patches
from gradattr.memory import memory_budget, set_max_memory
from gradattr.methods import LAYER_METHODS, METHODS, PAPER_METHODS, attribute
from gradattr.metrics.sensitivity import sensitivity_n
from gradattr.tokens import token_attributions
from gradattr.training import train

__all__ = [
    "LAYER_METHODS",
    "METHODS",
    "PAPER_METHODS",
    "attribute",
    "evaluate",
    "memory_budget",
    "patches",
    "sensitivity_n",
    "set_max_memory",
    "token_attributions",
    "train",
]
__version__ = "0.1.0"
