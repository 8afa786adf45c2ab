"""Score-CAM and Ablation-CAM: class activation maps whose channel weights come from forward passes alone.

For a layer with activations A of shape (K, *spatial) and the target score S_c (pre-softmax):

Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
CVPR Workshops 2020, Eqs. 4-7), as pytorch-grad-cam 1.5.7 computes it:

    M_k = (U(A^k) - min U(A^k)) / (max U(A^k) - min U(A^k))   U: upsampling to the input; M_k = 0 where A^k is
                                                              constant (max = min)
    w_k = softmax_k S_c(x ⊙ M_k)                             the logits of the K masked inputs, softmax over k
    L   = ReLU(Σ_k w_k A^k)

The paper's increase of confidence S_c(x ⊙ M_k) - S_c(x_b) differs from S_c(x ⊙ M_k) by one number per sample,
which the softmax cancels. pytorch-grad-cam divides by max - min + 1e-8 (the same masks up to a relative
1e-8 / (max - min); a constant map gives M_k = 0 in both) and upsamples bilinearly with ``align_corners=True``;
here U is ``interpolation``, as for Grad-CAM's map.

Ablation-CAM (Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
Gradient-free Localization", WACV 2020, Eq. 3):

    w_k = (y_c - y_c^k) / y_c      y_c^k: the target score with channel k of the layer's output set to 0
    L   = ReLU(Σ_k w_k A^k)

pytorch-grad-cam 1.5.7 computes the same w_k when the layer's smallest activation is 0 (after a ReLU, the common
case); otherwise it sets the channel to min - 1e7 instead of 0, which is not the paper's ablation.

Speed (measured in ``benchmarks/CAMS.md``): all B·K perturbed rows go through the model in passes as large as
the memory budget allows, without gradients. Score-CAM evaluates each distinct mask of a sample once: every
constant channel map gives the same (zero) mask. Ablation-CAM runs the model up to the layer once per sample
and only the part after it on the K ablated copies of that sample's output (one row broadcast against the K
rows wherever the model mixes the layer's output with earlier tensors, e.g. a skip connection around the layer,
which is exact). A probe on the first sample compares that with full passes (the whole model on copies of the
input, the layer's output replaced in each); a model for which it differs or fails gets the full passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from gradattr.engine.backward import rows_per_pass
from gradattr.engine.hygiene import original
from gradattr.memory import budget, bytes_per_row, in_row_chunks
from gradattr.methods._model_call import _rows
from gradattr.methods._problem import AttributionProblem, _intercepted_output, find_layer
from gradattr.methods.gradcam import layer_activations, map_for_inputs, resize_to_input
from gradattr.methods.layer_layout import ReshapeOption, layout

UNABLATED = -1
"""The channel index of a row in which nothing is ablated (it gives y_c)."""


def scorecam(
    problem: AttributionProblem,
    *,
    layer: str | nn.Module,
    interpolation: str = "linear",
    relu: bool = True,
    upsample: bool = True,
    reshape: ReshapeOption = None,
    batch_size: int | None = None,
) -> tuple[Tensor, ...]:
    """Score-CAM of the layer given as ``layer=``: channels weighted by the softmax of the target logits of the
    input masked by each channel's normalised map.

    Args:
        problem: the model's input x (one floating tensor, (B, C, *spatial)) and target c.
        layer: the layer (or its dotted name) whose output A (B, K, *spatial) gives the map.
        interpolation: how the channel maps are resized to the input (the masks) and the map at the end:
            ``"linear"``, ``"nearest"`` or ``"area"``, as for Grad-CAM.
        relu: apply the final ReLU.
        upsample: resize the map to the input; ``False`` returns it at the layer's resolution (B, 1, *spatial).
        reshape: how the layer's output is read as (B, K, *spatial), as for Grad-CAM.
        batch_size: most masked inputs per forward pass; default from the memory budget.

    Returns:
        The map with the shape of the input, or (B, 1, *spatial).
    """
    if len(problem.inputs) != 1 or not problem.inputs[0].is_floating_point():
        kinds = ", ".join(str(x.dtype) for x in problem.inputs)
        raise ValueError(f"scorecam masks the model's input, so it needs one floating input; got {kinds}")
    activations, _ = layer_activations(problem, layer, reshape=reshape, gradient=False)
    scores = _masked_scores(problem, activations, interpolation, _check_batch_size(batch_size))
    return _weighted_map(problem, activations, torch.softmax(scores, dim=1), relu, upsample, interpolation)


def ablationcam(
    problem: AttributionProblem,
    *,
    layer: str | nn.Module,
    interpolation: str = "linear",
    relu: bool = True,
    upsample: bool = True,
    reshape: ReshapeOption = None,
    batch_size: int | None = None,
) -> tuple[Tensor, ...]:
    """Ablation-CAM of the layer given as ``layer=``: channels weighted by the relative drop of the target
    score when each is set to 0, w_k = (y_c - y_c^k) / y_c.

    Args:
        problem: the model's inputs (any dtype, e.g. token ids) and target c.
        layer: the layer (or its dotted name) whose output A (B, K, *spatial) gives the map; it must return one
            tensor and run once per forward pass.
        interpolation: ``"linear"``, ``"nearest"`` or ``"area"``, as for Grad-CAM.
        relu: apply the final ReLU.
        upsample: resize the map to the input; ``False`` (or a model with several inputs) gives (B, 1, *spatial).
        reshape: how the layer's output is read as (B, K, *spatial), as for Grad-CAM; a function must only
            rearrange it (permute/reshape/slice): channel k is ablated where it lies in the layer's output.
        batch_size: most ablated rows per forward pass; default from the memory budget.

    Returns:
        The map with the shape of the input, or (B, 1, *spatial). A sample whose target score y_c is 0 has no
        weights (division by 0): ``attribute`` then raises FloatingPointError.
    """
    activations, _ = layer_activations(problem, layer, reshape=reshape, gradient=False)
    module = find_layer(problem.model, layer)
    name = layer if isinstance(layer, str) else None
    scores = ablation_scores(problem, module, name, reshape, _check_batch_size(batch_size))
    reference = scores[:, :1]
    return _weighted_map(problem, activations, (reference - scores[:, 1:]) / reference, relu, upsample, interpolation)


def _check_batch_size(batch_size: int | None) -> int | None:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    return batch_size


def _weighted_map(
    problem: AttributionProblem, activations: Tensor, weights: Tensor, relu: bool, upsample: bool, interpolation: str
) -> tuple[Tensor, ...]:
    """ReLU(Σ_k w_k A^k) for weights (B, K), as the method's result."""
    shape = (*weights.shape, *(1,) * (activations.dim() - 2))
    cam = (weights.to(activations.dtype).view(shape) * activations).sum(dim=1)
    cam = cam.clamp(min=0) if relu else cam
    return map_for_inputs(problem, cam, upsample=upsample, interpolation=interpolation)


# -- Score-CAM ----------------------------------------------------------------------------------------------


def _masked_scores(
    problem: AttributionProblem, activations: Tensor, interpolation: str, batch_size: int | None
) -> Tensor:
    """S_c(x ⊙ M_k) for every sample and channel, (B, K): one forward row per distinct mask of a sample."""
    x = problem.inputs[0]
    batch, channels = activations.shape[:2]
    maps = activations.flatten(2)
    constant = maps.amax(dim=2) == maps.amin(dim=2)
    maps = maps.masked_fill(constant.unsqueeze(2), 0)  # one key for every constant map: they give M_k = 0
    distinct, samples, where = [], [], []
    for b in range(batch):
        unique, inverse = torch.unique(maps[b], dim=0, return_inverse=True)
        where.append(inverse + sum(len(d) for d in distinct))
        distinct.append(unique)
        samples.append(torch.full((len(unique),), b, dtype=torch.long, device=x.device))
    unique_maps = torch.cat(distinct).view(-1, *activations.shape[2:])
    index = torch.cat(samples)
    limit = batch_size or rows_per_pass(problem, (x[:1].expand(len(index), *x.shape[1:]),), index)
    problem.resolve_target()

    def part(rows: slice) -> Tensor:
        inputs = x[index[rows]]
        masks = resize_to_input(unique_maps[rows], inputs, interpolation)
        dims = tuple(range(1, masks.dim()))
        low, high = masks.amin(dim=dims, keepdim=True), masks.amax(dim=dims, keepdim=True)
        spread = high - low
        masks = torch.where(spread > 0, (masks - low) / spread.clamp(min=torch.finfo(spread.dtype).tiny), 0)
        return problem.score(problem.output((inputs * masks,), index[rows]), index[rows])

    with torch.no_grad():
        scores = torch.cat(in_row_chunks(len(index), limit, part))
    return scores[torch.cat(where)].view(batch, channels)


# -- Ablation-CAM -------------------------------------------------------------------------------------------


def ablation_scores(
    problem: AttributionProblem,
    module: nn.Module,
    name: str | None,
    reshape: ReshapeOption,
    batch_size: int | None,
    suffix: bool | None = None,
) -> Tensor:
    """(B, 1 + K): y_c (column 0) and y_c^k, the target score with channel k of ``module``'s output set to 0.

    ``suffix``: ablate after the layer, the model up to it run once per sample (``True``), or in full passes
    over copies of the inputs (``False``); ``None``: the former where a probe finds it equal to the latter.
    """
    problem.resolve_target()
    with torch.no_grad():
        positions = _channel_positions(problem, module, name, reshape)
        channels = torch.arange(UNABLATED, positions.shape[0], device=positions.device)
        if suffix is None:
            suffix = _suffix_is_exact(problem, module, positions, channels[:3])
        if suffix:
            limit = batch_size or _suffix_rows(problem, module, positions, channels)
            rows = [_in_passes(limit, channels, lambda c, b=b: _suffix_pass(problem, module, positions, b, c))
                    for b in range(problem.batch_size)]  # fmt: skip
            return torch.stack(rows)
        samples = problem.all_rows.repeat_interleave(len(channels))
        every = channels.repeat(problem.batch_size)
        like = tuple(x[:1].expand(len(samples), *x.shape[1:]) for x in problem.inputs)
        limit = batch_size or rows_per_pass(problem, like, samples)

        def full(rows: slice) -> Tensor:
            return _full_pass(problem, module, positions, samples[rows], every[rows])

        return torch.cat(in_row_chunks(len(samples), limit, full)).view(problem.batch_size, len(channels))


def _in_passes(limit: int, channels: Tensor, work: Callable[[Tensor], Tensor]) -> Tensor:
    return torch.cat(in_row_chunks(len(channels), limit, lambda rows: work(channels[rows])))


def _channel_positions(
    problem: AttributionProblem, module: nn.Module, name: str | None, reshape: ReshapeOption
) -> Tensor:
    """LongTensor(K, P): where each channel k of the arranged map (B, K, *spatial) lies in a row of the layer's
    raw output (flat indices), found by arranging the indices themselves."""
    with _intercepted_output(module, lambda output: None) as seen:
        problem.output(tuple(x[:1] for x in problem.inputs), problem.all_rows[:1])
    raw = seen[0]
    flat = torch.arange(raw[:1].numel(), dtype=torch.float64, device=raw.device).view(raw[:1].shape)
    arranged = layout(module, name, raw[:1], reshape)(flat)
    if arranged.dtype != torch.float64 or not bool((arranged == arranged.round()).all()):
        raise ValueError(
            "ablationcam's reshape must only rearrange the layer's output (permute/reshape/slice), so that each "
            "channel can be set to 0 where it lies in that output"
        )
    return arranged[0].reshape(arranged.shape[1], -1).long()


def _ablated(raw: Tensor, channels: Tensor, positions: Tensor) -> Tensor:
    """Rows of the layer's output ``raw`` (1 row, broadcast, or one per channel) with channel ``channels[i]``
    set to 0 in row i (:data:`UNABLATED`: nothing)."""
    flat = raw.reshape(raw.shape[0], -1).expand(len(channels), -1)
    mask = torch.zeros(flat.shape, dtype=torch.bool, device=flat.device)
    rows = (channels != UNABLATED).nonzero().squeeze(1)
    mask[rows.unsqueeze(1), positions[channels[rows]]] = True
    return flat.masked_fill(mask, 0).view(len(channels), *raw.shape[1:])


def _full_pass(
    problem: AttributionProblem, module: nn.Module, positions: Tensor, samples: Tensor, channels: Tensor
) -> Tensor:
    """Scores of the whole model on the inputs of ``samples``, the layer's output ablated row by row."""
    points = tuple(_rows(x, samples) for x in problem.inputs)
    with _intercepted_output(module, lambda raw: _ablated(raw, channels, positions)):
        return problem.score(problem.output(points, samples), samples)


def _suffix_pass(
    problem: AttributionProblem, module: nn.Module, positions: Tensor, sample: int, channels: Tensor,
    grad: bool = False,
) -> Tensor:  # fmt: skip
    """Scores of sample ``sample`` with each of ``channels`` ablated: the model runs up to the layer on the one
    row and after it on ``len(channels)`` rows (``grad``: the replaced output requires grad, for measuring)."""
    one = problem.all_rows[sample : sample + 1]
    index = one.expand(len(channels))

    def replace(raw: Tensor) -> Tensor:
        ablated = _ablated(raw, channels, positions)
        return ablated.detach().requires_grad_() if grad else ablated

    with _intercepted_output(module, replace):
        args = tuple(_rows(x, one).clone() for x in problem.inputs)
        out = problem.model(*args, **problem.call.forward_kwargs(one))
    return problem.score(problem.call.read(problem.model, out, index), index)


def _suffix_is_exact(problem: AttributionProblem, module: nn.Module, positions: Tensor, channels: Tensor) -> bool:
    """Whether the suffix passes give the full passes' scores for the first sample's ``channels``."""
    full = _full_pass(problem, module, positions, problem.all_rows[:1].expand(len(channels)), channels)
    try:
        fast = _suffix_pass(problem, module, positions, 0, channels)
    except Exception:  # the model mixes the layer's output with rows that do not broadcast: full passes
        return False
    scale = float(full.abs().max()) if full.numel() else 0.0
    return fast.shape == full.shape and torch.allclose(fast, full, rtol=1e-4, atol=1e-6 * scale)


SUFFIX_PROBE = (2, 4)


def _suffix_rows(problem: AttributionProblem, module: nn.Module, positions: Tensor, channels: Tensor) -> int:
    """Ablated rows per suffix pass allowed by the memory budget: what the part after the layer keeps for one
    more row (measured once per model and layer shape, as :func:`gradattr.memory.bytes_per_row`) plus the
    row's ablated copy of the layer's output, the copy the hook returns and the mask."""
    if len(channels) <= SUFFIX_PROBE[1]:
        return len(channels)
    key = ("ablationcam suffix", id(original(module)), tuple(positions.shape), problem.inputs[0].dtype)

    def run(rows: int) -> Tensor:
        return _suffix_pass(problem, module, positions, 0, channels[:rows], grad=True)

    x = problem.inputs[0]
    copies = (int(positions.max()) + 1) * (2 * (x.element_size() if x.is_floating_point() else 4) + 1)
    per_row = bytes_per_row(original(problem.model), run, key, SUFFIX_PROBE) + copies
    return max(1, min(len(channels), math.floor(budget(x.device) / per_row)))
