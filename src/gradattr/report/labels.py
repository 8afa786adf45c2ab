"""How methods are named and coloured in tables and figures.

A row of :func:`gradattr.evaluate` is named by its label: a method name, or a label of the study's own such as
``"occlusion_pixels"`` (per-pixel occlusion summed per patch, beside ``"occlusion"`` of whole patches), or
``"lrp (NAME)"``: LRP under the composite NAME (:func:`lrp_label`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

METHOD_LABELS: dict[str, str] = {
    "saliency": "Saliency",
    "gradient_x_input": "Gradient*Input",
    "integrated_gradients": "Integrated Gradients",
    "epsilon_lrp": "ε-LRP",
    "deeplift": "DeepLIFT",
    "occlusion": "Occlusion-1",
    "occlusion_pixels": "Occlusion-1 (pixels, summed per patch)",
    "shapley_sampling": "Shapley sampling",
    "gradient_shap": "GradientSHAP",
    "expected_gradients": "Expected Gradients",
    "deeplift_shap": "DeepLiftSHAP",
    "smoothgrad": "SmoothGrad",
    "guided_backprop": "Guided Backprop",
    "deconvnet": "Deconvnet",
    "lrp": "LRP",
    "gradcam": "Grad-CAM",
    "guided_gradcam": "Guided Grad-CAM",
    "scorecam": "Score-CAM",
    "ablationcam": "Ablation-CAM",
    "gradcam_plus_plus": "Grad-CAM++",
    "hirescam": "HiResCAM",
    "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM",
    "eigencam": "Eigen-CAM",
}
SHORT_LABELS: dict[str, str] = {
    "saliency": "Sal",
    "gradient_x_input": "G*I",
    "integrated_gradients": "IG",
    "epsilon_lrp": "ε-LRP",
    "deeplift": "DeepLIFT",
    "occlusion": "Occ-1",
    "occlusion_pixels": "Occ-1 px",
    "shapley_sampling": "Shapley",
    "gradient_shap": "GradSHAP",
    "expected_gradients": "ExpGrad",
    "deeplift_shap": "DL-SHAP",
    "smoothgrad": "SG",
    "guided_backprop": "GBP",
    "deconvnet": "Deconv",
    "lrp": "LRP",
    "gradcam": "Grad-CAM",
    "guided_gradcam": "GGC",
    "scorecam": "Score-CAM",
    "ablationcam": "Abl-CAM",
    "gradcam_plus_plus": "GC++",
    "hirescam": "HiRes",
    "xgradcam": "XGC",
    "layercam": "LayerCAM",
    "eigencam": "Eigen",
}
METHOD_COLOURS: dict[str, str] = {
    "saliency": "#8c8c8c",
    "gradient_x_input": "#1f77b4",
    "integrated_gradients": "#2ca02c",
    "epsilon_lrp": "#9467bd",
    "deeplift": "#d62728",
    "occlusion": "#ff7f0e",
    "occlusion_pixels": "#f5c242",
    "shapley_sampling": "#8c564b",
    "gradient_shap": "#98df8a",
    "expected_gradients": "#637939",
    "deeplift_shap": "#ff9896",
    "smoothgrad": "#17becf",
    "guided_backprop": "#e377c2",
    "deconvnet": "#bcbd22",
    "lrp": "#e6550d",
    "gradcam": "#000000",
    "guided_gradcam": "#393b79",
    "scorecam": "#7b4173",
    "ablationcam": "#843c39",
    "gradcam_plus_plus": "#5254a3",
    "hirescam": "#b5cf6b",
    "xgradcam": "#8c6d31",
    "layercam": "#e7ba52",
    "eigencam": "#ce6dbd",
}


def method_label(method: str, options: Mapping[str, Any] | None = None) -> str:
    """The readable name of a method or row label (the label itself, spaced, when it has none).

    With ``options`` (the row's ``method_options``), occlusion with a window larger than one feature is named by
    its window, "Occlusion (4x4 patch)": each patch's attribution is then the output drop when that patch alone
    is removed (Zeiler & Fergus 2014), not Occlusion-1 of the paper (Ancona et al., 2018, Sec. 2).
    """
    window = _occlusion_window(method, options)
    if window is not None:
        return f"Occlusion ({window} patch)"
    composite = _lrp_composite(method)
    if composite is not None:
        return f"LRP ({composite})"
    return METHOD_LABELS.get(method, method.replace("_", " "))


def short_label(method: str, options: Mapping[str, Any] | None = None) -> str:
    """A short column header for a method or row label (with ``options`` as in :func:`method_label`)."""
    window = _occlusion_window(method, options)
    if window is not None:
        return f"Occ {window}"
    composite = _lrp_composite(method)
    if composite is not None:
        return f"LRP {composite}"
    return SHORT_LABELS.get(method, method)


def lrp_label(composite: str) -> str:
    """The row label of the LRP method under a named composite: ``"lrp (epsilon_plus_flat)"``."""
    return f"lrp ({composite})"


def _lrp_composite(label: str) -> str | None:
    """The composite of a row label made by :func:`lrp_label` (None for any other label)."""
    if label.startswith("lrp (") and label.endswith(")"):
        return label[len("lrp (") : -1]
    return None


def _occlusion_window(method: str, options: Mapping[str, Any] | None) -> str | None:
    """The window as "4x4" for occlusion (``method`` "occlusion") with ``options`` of a window over more than
    one feature; None otherwise."""
    window = (options or {}).get("window", 1)
    sides = (window,) if isinstance(window, int) else tuple(window)
    if method != "occlusion" or all(side == 1 for side in sides):
        return None
    return "x".join(str(side) for side in sides)
