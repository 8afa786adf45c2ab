"""gradattr: gradient-based attribution for PyTorch, after Ancona et al. (ICLR 2018).

The public surface: :func:`attribute` and :data:`METHODS`.
"""

from gradattr.methods import METHODS, attribute

__all__ = ["METHODS", "attribute"]
__version__ = "0.1.0"
