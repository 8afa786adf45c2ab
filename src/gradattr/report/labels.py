"""How methods are named and coloured in tables and figures."""

from __future__ import annotations

METHOD_LABELS: dict[str, str] = {
    "saliency": "Saliency",
    "gradient_x_input": "Gradient*Input",
    "integrated_gradients": "Integrated Gradients",
    "epsilon_lrp": "ε-LRP",
    "deeplift": "DeepLIFT",
    "occlusion": "Occlusion-1",
    "shapley_sampling": "Shapley sampling",
    "smoothgrad": "SmoothGrad",
    "guided_backprop": "Guided Backprop",
    "deconvnet": "Deconvnet",
    "gradcam": "Grad-CAM",
    "guided_gradcam": "Guided Grad-CAM",
}
SHORT_LABELS: dict[str, str] = {
    "saliency": "Sal",
    "gradient_x_input": "G*I",
    "integrated_gradients": "IG",
    "epsilon_lrp": "ε-LRP",
    "deeplift": "DeepLIFT",
    "occlusion": "Occ-1",
    "shapley_sampling": "Shapley",
    "smoothgrad": "SG",
    "guided_backprop": "GBP",
    "deconvnet": "Deconv",
    "gradcam": "Grad-CAM",
    "guided_gradcam": "GGC",
}
METHOD_COLOURS: dict[str, str] = {
    "saliency": "#8c8c8c",
    "gradient_x_input": "#1f77b4",
    "integrated_gradients": "#2ca02c",
    "epsilon_lrp": "#9467bd",
    "deeplift": "#d62728",
    "occlusion": "#ff7f0e",
    "shapley_sampling": "#8c564b",
    "smoothgrad": "#17becf",
    "guided_backprop": "#e377c2",
    "deconvnet": "#bcbd22",
    "gradcam": "#000000",
    "guided_gradcam": "#393b79",
}


def method_label(method: str) -> str:
    """The readable name of a method (the method's own name when it has none)."""
    return METHOD_LABELS.get(method, method.replace("_", " "))


def short_label(method: str) -> str:
    """A short column header for a method."""
    return SHORT_LABELS.get(method, method)
