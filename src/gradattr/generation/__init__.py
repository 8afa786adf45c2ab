"""Explaining generated text: which prompt tokens (and earlier generated ones) made a causal language model
say each token (:func:`attribute_generation`, returning a :class:`GenerationAttribution`)."""

from gradattr.generation.attribution import attribute_generation
from gradattr.generation.result import GenerationAttribution

__all__ = ["GenerationAttribution", "attribute_generation"]
