"""The modified-gradient engine (Ancona et al., ICLR 2018, Sec. 3): one backward pass, rules at the ops."""

from gradattr.engine.backward import Forward, modified_gradient
from gradattr.engine.hygiene import preserved_model
from gradattr.engine.interception import ReferenceMismatchError, UnsupportedOperationError
from gradattr.engine.inventory import Inventory, inventory
from gradattr.engine.recurrent import GATE_PRODUCTS, GateProducts

__all__ = [
    "GATE_PRODUCTS",
    "Forward",
    "GateProducts",
    "Inventory",
    "ReferenceMismatchError",
    "UnsupportedOperationError",
    "inventory",
    "modified_gradient",
    "preserved_model",
]
