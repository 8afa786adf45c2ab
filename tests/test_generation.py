"""Token-by-token attribution of generated text (gradattr.generation), checked number by number.

The reference for every row is an independent call: :func:`gradattr.attribute` on the sequence *truncated*
after the step's last input, with the generated token as target at the last position — what a user would
write by hand for one token. The tiny HuggingFace decoders (GPT-2, Llama, Qwen2; eager and SDPA attention)
come from tests/hf_zoo.py with random weights; gradattr's own TextDecoder covers a non-HuggingFace module.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

import gradattr
from gradattr.generation import GenerationAttribution, attribute_generation
from gradattr.metrics import CompletenessWarning
from gradattr.models import text_decoder

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PROMPT = torch.tensor([[5, 17, 42, 8, 23], [61, 3, 3, 90, 14]])
GENERATED = torch.tensor([[7, 33, 2], [19, 50, 71]])
ROW_METHODS = ("deeplift", "epsilon_lrp", "integrated_gradients", "gradient_x_input")


def _decoders() -> list[tuple[str, nn.Module]]:
    models = [("text-decoder", text_decoder(100, embedding_dim=16, heads=2, seed=3).eval())]
    try:
        from hf_zoo import hf_model
    except pytest.skip.Exception:
        return models
    return models + [
        (f"{name}-{attention}", hf_model(name, attention).model)
        for name in ("gpt2", "llama", "qwen2")
        for attention in ("eager", "sdpa")
    ]


DECODERS = _decoders()


@pytest.fixture(scope="module", params=DECODERS, ids=[name for name, _ in DECODERS])
def decoder(request: pytest.FixtureRequest) -> nn.Module:
    """The decoder in float64, so that the comparisons see the methods, not float32 rounding."""
    return copy.deepcopy(request.param[1]).double()


def _embedding(model: nn.Module) -> nn.Module:
    return model.get_input_embeddings()


def _truncated_row(
    model: nn.Module, ids: Tensor, step_position: int, method: str, target: Tensor | None = None, **options: object
) -> Tensor:
    """(B, step_position): the step's attributions from the prompt cut after position step_position − 1."""
    prefix = ids[:, :step_position]
    token = ids[:, step_position] if target is None else target
    attributions = gradattr.attribute(model, prefix, method, target=token, layer=_embedding(model), **options)
    return gradattr.token_attributions(attributions)


def _rows_match(result: GenerationAttribution, model: nn.Module, method: str, **options: object) -> None:
    prompt = result.prompt_length
    for step in range(result.generated_length):
        expected = _truncated_row(model, result.ids, prompt + step, method, **options)
        row = result.matrix[:, step]
        torch.testing.assert_close(row[:, : prompt + step], expected, rtol=1e-9, atol=1e-12)
        assert bool(row[:, prompt + step :].isnan().all())
        assert expected.abs().max() > 0


@pytest.mark.parametrize("method", ROW_METHODS)
def test_each_row_equals_the_truncated_single_target_call(decoder: nn.Module, method: str) -> None:
    result = attribute_generation(decoder, PROMPT, method=method, generated_ids=GENERATED)
    assert result.matrix.shape == (2, 3, 8) and result.matrix.dtype == torch.float64
    torch.testing.assert_close(result.ids, torch.cat([PROMPT, GENERATED], 1), rtol=0, atol=0)
    _rows_match(result, decoder, method)


def test_deeplift_completeness_per_generated_token(decoder: nn.Module) -> None:
    """Σ_j M[b, i, j] = S_i(x) − S_i(x̄) (x̄: zero embeddings) per generated token: below 1e-6 where the model
    computes in float64 (measured: ~1e-16); Llama and Qwen2 run their RMS norms (and eager softmax) in float32
    even in a float64 model, so there the gap is float32 rounding (measured: ≤ 5.6e-6, 3e-5 of the logits).
    The target logits are the model's."""
    result = attribute_generation(decoder, PROMPT, method="deeplift", generated_ids=GENERATED)
    assert result.completeness_gap is not None
    bound = 10 * _rounding(decoder) * float(result.target_logits.abs().max()) if _rounding(decoder) > 1e-9 else 1e-6
    assert float(result.completeness_gap.abs().max()) < bound
    with torch.no_grad():
        logits = decoder(result.ids)
        logits = logits if isinstance(logits, Tensor) else logits.logits
    expected = logits[:, 4:-1].gather(-1, GENERATED[..., None])[..., 0]
    torch.testing.assert_close(result.target_logits, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ("deeplift", "epsilon_lrp", "occlusion"))
def test_contrast_is_the_difference_of_the_two_token_rows(decoder: nn.Module, method: str) -> None:
    """logit(token) − logit(alternative) is linear in the logits: its row is the token's row minus the row
    of the alternative as target (exact for rule and perturbation methods alike)."""
    alternative = torch.tensor([[9, 9, 9], [4, 4, 4]])
    contrast = attribute_generation(
        decoder, PROMPT, method=method, generated_ids=GENERATED, target="contrast", contrast_ids=alternative[:, 0:1]
    )
    token = attribute_generation(decoder, PROMPT, method=method, generated_ids=GENERATED)
    scale = float(token.matrix.nan_to_num().abs().max())
    for step in range(3):
        position = 5 + step
        other = _truncated_row(
            decoder, token.ids, position, method, target=alternative[:, step], **_window(method, decoder)
        )
        torch.testing.assert_close(
            contrast.matrix[:, step, :position],
            token.matrix[:, step, :position] - other,
            rtol=0,
            atol=_rounding(decoder) * scale,
        )
    torch.testing.assert_close(contrast.contrast_ids, alternative, rtol=0, atol=0)


def _rounding(model: nn.Module) -> float:
    """Relative rounding of the model's computations: Llama and Qwen2 run their RMS norms in float32 (also the
    gradients through them) even in a float64 model (tests/test_huggingface_rules.py)."""
    return 1e-5 if type(model).__name__.startswith(("Llama", "Qwen2")) else 1e-12


def _window(method: str, model: nn.Module) -> dict[str, object]:
    """Occlusion of whole tokens: a window of one position by the embedding's width."""
    return {"window": (1, _embedding(model).embedding_dim)} if method == "occlusion" else {}


def test_occlusion_rows_are_output_drops_computed_by_hand() -> None:
    """Occluding token j (its embedding set to 0) drops step i's logit by M[b, i, j]: brute force, one
    forward pass per (token, step) on the truncated sequence. The shared passes (one per occluded token)
    equal one row per step through gradattr.attribute (an explicit window takes that path)."""
    model = text_decoder(100, embedding_dim=16, heads=2, seed=3).double().eval()
    result = attribute_generation(model, PROMPT[:1], method="occlusion", generated_ids=GENERATED[:1])
    ids = result.ids

    def score(prefix: Tensor, target: int, hidden: int | None) -> float:
        embedded = model.embedding(prefix).clone()
        if hidden is not None:
            embedded[:, hidden] = 0
        handle = model.embedding.register_forward_hook(lambda *_: embedded)
        try:
            with torch.no_grad():
                return float(model(prefix)[0, -1, target])
        finally:
            handle.remove()

    for step in range(3):
        position = 5 + step
        prefix, target = ids[:, :position], int(ids[0, position])
        drops = [score(prefix, target, None) - score(prefix, target, j) for j in range(position)]
        torch.testing.assert_close(result.matrix[0, step, :position], torch.tensor(drops, dtype=torch.float64))
    one_row_each = attribute_generation(
        model, PROMPT[:1], method="occlusion", generated_ids=GENERATED[:1], window=(1, 16), batch_size=3
    )
    torch.testing.assert_close(one_row_each.matrix, result.matrix, rtol=1e-12, atol=1e-14, equal_nan=True)


def test_greedy_generation_follows_the_argmax_and_stops_at_eos() -> None:
    model = text_decoder(100, embedding_dim=16, heads=2, seed=3).double().eval()
    result = attribute_generation(model, PROMPT, method="saliency", max_new_tokens=6)
    ids = PROMPT
    for _ in range(6):
        with torch.no_grad():
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], 1)
    torch.testing.assert_close(result.ids, ids, rtol=0, atol=0)
    eos = int(ids[0, 6])  # sample 0's second generated token: it stops there
    stopped = attribute_generation(model, PROMPT, method="saliency", max_new_tokens=6, eos_token_id=eos)
    first_eos = [int((row == eos).nonzero()[0]) if bool((row == eos).any()) else 6 for row in ids[:, 5:]]
    for b, last in enumerate(first_eos):
        assert bool(stopped.matrix[b, : last + 1, 0].isfinite().all())
        assert bool(stopped.matrix[b, last + 1 :].isnan().all()) and bool(
            stopped.target_logits[b, last + 1 :].isnan().all()
        )


def test_left_padded_batch_equals_each_prompt_alone() -> None:
    """A batch of prompts of different lengths, left-padded with a mask: every sample's rows equal those of
    the sample alone (positions from the mask), padding columns are 0 (HF GPT-2 and Llama, SDPA: HF's eager
    Llama itself turns the padding queries' fully masked rows into NaN in float64)."""
    hf_zoo = pytest.importorskip("hf_zoo")
    for name, attention in (("gpt2", "eager"), ("gpt2", "sdpa"), ("llama", "sdpa")):
        model = hf_zoo.hf_model(name, attention).model.double()
        short = torch.tensor([[11, 12, 13]])
        ids = torch.cat([torch.tensor([[0, 0]]), short], 1)
        batch, mask = torch.cat([ids, PROMPT[:1]]), torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
        generated = GENERATED[:2]
        together = attribute_generation(model, batch, method="deeplift", attention_mask=mask, generated_ids=generated)
        alone = attribute_generation(model, short, method="deeplift", generated_ids=generated[:1])
        atol = 10 * _rounding(model) * float(alone.matrix.nan_to_num().abs().max())
        torch.testing.assert_close(together.matrix[0, :, 2:], alone.matrix[0], rtol=0, atol=atol, equal_nan=True)
        assert bool((together.matrix[0, :, :2] == 0).all())
        torch.testing.assert_close(together.target_logits[0], alone.target_logits[0], rtol=1e-9, atol=1e-10)


class _Bidirectional(nn.Module):
    """Not causal: every position sees the mean of the whole sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(100, 8)
        self.head = nn.Linear(8, 100)

    def get_input_embeddings(self) -> nn.Module:
        return self.embedding

    def forward(self, ids: Tensor) -> Tensor:
        x = self.embedding(ids)
        return self.head(torch.tanh(x + x.mean(1, keepdim=True)))


def test_a_model_that_is_not_causal_is_refused() -> None:
    with pytest.raises(ValueError, match="not causal"):
        attribute_generation(_Bidirectional().double(), PROMPT, method="saliency", generated_ids=GENERATED)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: attribute_generation(m, PROMPT, method="gradcam"), ValueError, "cannot explain generated"),
        (lambda m: attribute_generation(m, PROMPT, target="logit"), ValueError, "target must be one of"),
        (lambda m: attribute_generation(m, PROMPT, target="contrast"), ValueError, "contrast_ids"),
        (lambda m: attribute_generation(m, PROMPT.double()), TypeError, "integer token ids"),
        (lambda m: attribute_generation(m, PROMPT, max_new_tokens=0), ValueError, "max_new_tokens"),
        (
            lambda m: attribute_generation(m, PROMPT, attention_mask=torch.tensor([[1, 1, 1, 1, 0]] * 2)),
            ValueError, "pad on the left",
        ),
        (lambda m: attribute_generation(m, PROMPT, generated_ids=GENERATED[:, :0]), ValueError, "T >= 1"),
        (lambda m: attribute_generation(m, PROMPT, layer="nope"), ValueError, "'nope' is not a submodule"),
        (
            lambda m: attribute_generation(m, PROMPT, attention_mask=torch.tensor([[0, 1, 1, 1, 1]] * 2)),
            ValueError, "takes no attention_mask",
        ),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(call: Callable[[nn.Module], object], error: type[Exception], match: str) -> None:
    model = text_decoder(100, embedding_dim=16, heads=2, seed=3)
    with pytest.raises(error, match=match):
        call(model)


def test_the_model_comes_back_unchanged() -> None:
    model = text_decoder(100, embedding_dim=16, heads=2, seed=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(p.requires_grad, p.grad) for p in model.parameters()]
    attribute_generation(model, PROMPT, method="deeplift", max_new_tokens=3)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [(p.requires_grad, p.grad) for p in model.parameters()] == flags


def test_records_and_csv_hold_the_matrix(tmp_path: object) -> None:
    model = text_decoder(100, embedding_dim=16, heads=2, seed=3).double()
    result = attribute_generation(model, PROMPT, method="deeplift", generated_ids=GENERATED)
    records = result.to_records()
    assert len(records) == 2 * (5 + 6 + 7)
    for record in records:
        b, i, j = record["sample"], record["step"], record["source_position"]
        assert record["attribution"] == float(result.matrix[b, i, j])
        assert record["completeness_gap"] == float(result.completeness_gap[b, i])
    assert result.tokens[1][5] == "19" and records[0]["generated_token"] == "7"


INPUT_METHODS = [m for m in gradattr.METHODS if m not in gradattr.LAYER_METHODS]
DETERMINISTIC = ("saliency", "gradient_x_input", "guided_backprop", "deconvnet", "lrp", "deeplift_shap")


@pytest.mark.parametrize("method", INPUT_METHODS)
def test_every_input_method_explains_generated_tokens(method: str) -> None:
    """Every method of gradattr.METHODS that attributes inputs runs on a decoder: finite rows over the earlier
    tokens, NaN after them; the deterministic ones equal the truncated single-target call."""
    model = text_decoder(100, embedding_dim=16, heads=2, seed=3).double()
    result = attribute_generation(model, PROMPT, method=method, generated_ids=GENERATED)
    for step in range(3):
        row = result.matrix[:, step]
        assert bool(row[:, : 5 + step].isfinite().all()) and bool(row[:, 5 + step :].isnan().all())
        if method in DETERMINISTIC:
            baseline = torch.zeros(1, 5 + step, 16, dtype=torch.float64) if method == "deeplift_shap" else None
            prefix, token = result.ids[:, : 5 + step], result.ids[:, 5 + step]
            r = gradattr.attribute(model, prefix, method, target=token, layer=model.embedding, baseline=baseline)
            expected = r.norm(dim=-1) if method in ("guided_backprop", "deconvnet") else r.sum(-1)
            torch.testing.assert_close(row[:, : 5 + step], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ("gpt2", "llama", "qwen2"))
def test_huggingface_generate_is_greedy_and_runs_in_eval_mode(name: str) -> None:
    """HF models continue with their own generate() (key/value cache) on the call's eval-mode view: the
    tokens equal an argmax loop over full forward passes, although the model stays in training mode
    (GPT-2's dropout would make a training-mode continuation random)."""
    hf_zoo = pytest.importorskip("hf_zoo")
    model = hf_zoo.hf_model(name, "sdpa").model.double()
    model.train()
    result = attribute_generation(model, PROMPT, method="saliency", max_new_tokens=5)
    assert all(m.training for m in model.modules())
    expected = PROMPT
    with torch.no_grad():
        for _ in range(5):
            logits = copy.deepcopy(model).eval()(expected).logits
            expected = torch.cat([expected, logits[:, -1].argmax(-1, keepdim=True)], 1)
    torch.testing.assert_close(result.ids, expected, rtol=0, atol=0)


def test_a_small_memory_budget_splits_the_rows_without_changing_them() -> None:
    """max_memory bounds every pass: a budget of a few rows gives more passes and the same matrix."""
    model = text_decoder(100, embedding_dim=16, heads=2, seed=3).double()
    passes = []
    model.embedding.register_forward_hook(lambda module, args, out: passes.append(out.shape[0]))
    free = attribute_generation(model, PROMPT, method="deeplift", generated_ids=GENERATED)
    free_passes, passes[:] = list(passes), []
    tight = attribute_generation(model, PROMPT, method="deeplift", generated_ids=GENERATED, max_memory=60_000)
    assert passes.count(1) >= 6 and 1 not in free_passes  # the 6 rows, one per pass (besides checks and probes)
    torch.testing.assert_close(tight.matrix, free.matrix, rtol=1e-12, atol=1e-15, equal_nan=True)


def test_signed_gradient_maps_vanish_summed_over_a_pre_layernorm_embedding() -> None:
    """Why guided_backprop and deconvnet default to aggregate="norm": in a pre-LayerNorm decoder every path
    from the embedding passes through a LayerNorm, whose input gradient has zero mean over the features, so
    a signed gradient summed over the embedding is 0 up to rounding; the norm is not."""
    model = text_decoder(100, embedding_dim=16, heads=2, seed=3).double()
    summed = attribute_generation(model, PROMPT, method="guided_backprop", generated_ids=GENERATED, aggregate="sum")
    norm = attribute_generation(model, PROMPT, method="guided_backprop", generated_ids=GENERATED)
    assert float(summed.matrix.nan_to_num().abs().max()) < 1e-12 * float(norm.matrix.nan_to_num().max())
    assert float(norm.matrix.nan_to_num().min()) >= 0 and float(norm.matrix.nan_to_num().max()) > 0
    with pytest.raises(ValueError, match="aggregate must be one of"):
        attribute_generation(model, PROMPT, method="saliency", generated_ids=GENERATED, aggregate="mean")
    with pytest.raises(ValueError, match="whole tokens"):
        attribute_generation(model, PROMPT, method="occlusion", generated_ids=GENERATED, aggregate="norm")


def test_an_ill_conditioned_deeplift_row_warns() -> None:
    """Gemma-2 normalises every branch before and after it; a zero embedding baseline sends each of those
    inputs to 0 (statistic 1/√ε), and float32 loses the rows (gap > 1 of S(x) − S(x̄)): the call warns and
    names a better baseline, which brings the gap down by orders of magnitude. GPT-2 does not warn."""
    transformers = pytest.importorskip("transformers")
    config = transformers.Gemma2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100,
        max_position_embeddings=64, num_key_value_heads=2, head_dim=8, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Gemma2ForCausalLM(config).eval()
    with pytest.warns(CompletenessWarning, match="mean token embedding"):
        zero = attribute_generation(model, PROMPT[:1], method="deeplift", generated_ids=GENERATED[:1])
    mean = model.get_input_embeddings().weight.detach().mean(0)
    better = attribute_generation(model, PROMPT[:1], method="deeplift", generated_ids=GENERATED[:1], baseline=mean)
    assert float(better.completeness_gap.abs().max()) < 1e-4 * float(zero.completeness_gap.abs().max())
    hf_zoo = pytest.importorskip("hf_zoo")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompletenessWarning)
        attribute_generation(hf_zoo.hf_model("gpt2").model, PROMPT, method="deeplift", generated_ids=GENERATED)


_SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
          "vocab_size": 100, "max_position_embeddings": 64}  # fmt: skip
_ROTARY = {"n_embd": 32, "n_layer": 2, "n_head": 4, "vocab_size": 100, "n_positions": 64, "rotary_dim": 4}
FAMILIES = {  # model class -> (config class, arguments, largest relative DeepLIFT gap: measured x 10)
    "PhiForCausalLM": ("PhiConfig", _SMALL, 1e-13),
    "GPTNeoXForCausalLM": ("GPTNeoXConfig", _SMALL, 1e-12),
    "OPTForCausalLM": ("OPTConfig", {**_SMALL, "ffn_dim": 64, "word_embed_proj_dim": 32}, 1e-13),
    "FalconForCausalLM": ("FalconConfig", _SMALL, 1e-13),
    "GPTJForCausalLM": ("GPTJConfig", _ROTARY, 1e-13),
    "CodeGenForCausalLM": ("CodeGenConfig", _ROTARY, 1e-13),
    # float32 inside a float64 model (RMS norms, eager softmax): the gap is float32 rounding, made larger by
    # the normalisations (Gemma-2: four per block; OLMo-2: norms of queries and keys too)
    "MistralForCausalLM": ("MistralConfig", {**_SMALL, "num_key_value_heads": 2}, 1e-5),
    "Phi3ForCausalLM": ("Phi3Config", {**_SMALL, "num_key_value_heads": 2, "pad_token_id": 0}, 1e-6),
    "Qwen3ForCausalLM": ("Qwen3Config", {**_SMALL, "num_key_value_heads": 2, "head_dim": 8}, 1e-5),
    "GemmaForCausalLM": ("GemmaConfig", {**_SMALL, "num_key_value_heads": 2, "head_dim": 8}, 2e-4),
    "Gemma2ForCausalLM": ("Gemma2Config", {**_SMALL, "num_key_value_heads": 2, "head_dim": 8}, 4e-2),
    "Olmo2ForCausalLM": ("Olmo2Config", {**_SMALL, "num_key_value_heads": 2}, 1e-2),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_decoder_families_as_users_load_them(family: str) -> None:
    """Twelve more HuggingFace decoder families (random weights, float64): DeepLIFT's rows are complete (with
    the mean token embedding as baseline) to the precision the model computes in, and AttnLRP's are finite."""
    transformers = pytest.importorskip("transformers")
    config_class, arguments, bound = FAMILIES[family]
    torch.manual_seed(0)
    model = getattr(transformers, family)(getattr(transformers, config_class)(**arguments)).eval().double()
    mean = model.get_input_embeddings().weight.detach().mean(0)
    result = attribute_generation(model, PROMPT[:1], method="deeplift", generated_ids=GENERATED[:1], baseline=mean)
    delta = result.matrix.nan_to_num().sum(-1) - result.completeness_gap
    assert float((result.completeness_gap.abs() / delta.abs()).max()) < bound
    lrp = attribute_generation(model, PROMPT[:1], method="epsilon_lrp", generated_ids=GENERATED[:1])
    assert bool(lrp.matrix[0, -1, :7].isfinite().all()) and float(lrp.matrix[0, -1, :7].abs().max()) > 0


def test_bloom_runs_its_gelu_as_torch_ops_on_the_view() -> None:
    """BLOOM's GELU is a custom autograd.Function (its own backward) around torch ops, which the rules cannot
    reach; the call's view evaluates those ops instead (gradattr.engine.equivalents): DeepLIFT is complete,
    and the gradient equals the one autograd takes through BLOOM's own Function."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BloomConfig(hidden_size=32, n_layer=2, n_head=4, vocab_size=100)
    model = transformers.BloomForCausalLM(config).eval().double()
    result = attribute_generation(model, PROMPT[:1], method="deeplift", generated_ids=GENERATED[:1])
    delta = result.matrix.nan_to_num().sum(-1) - result.completeness_gap
    assert float((result.completeness_gap.abs() / delta.abs()).max()) < 1e-5  # softmax in float32: measured 2e-7
    ids = result.ids[:, :7]
    embedded = model.get_input_embeddings()(ids).detach().requires_grad_()
    handle = model.get_input_embeddings().register_forward_hook(lambda *_: embedded)
    try:
        (gradient,) = torch.autograd.grad(model(ids).logits[0, -1, int(result.ids[0, 7])], embedded)
    finally:
        handle.remove()
    saliency = attribute_generation(
        model, PROMPT[:1], method="saliency", generated_ids=GENERATED[:1], abs=False, aggregate="norm"
    )
    torch.testing.assert_close(saliency.matrix[0, -1, :7], gradient[0].norm(dim=-1), rtol=1e-9, atol=1e-12)
    assert all("forward" not in m.__dict__ for m in model.modules())  # only the view was given the torch ops


def test_tokens_keep_special_tokens_of_a_raw_tokenizers_tokenizer() -> None:
    """``tokenizers.Tokenizer.decode`` drops special tokens by default: the result names them instead."""
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.BpeTrainer(special_tokens=["<unk>", "<eos>"], vocab_size=60)
    tokenizer.train_from_iterator(["hello world", "hello there"], trainer)
    model = text_decoder(tokenizer.get_vocab_size(), embedding_dim=16, heads=2, seed=3)
    prompt = torch.tensor([[tokenizer.token_to_id("hello"), tokenizer.token_to_id("<eos>")]])
    result = attribute_generation(model, prompt, method="saliency", max_new_tokens=1, tokenizer=tokenizer)
    assert result.tokens[0][:2] == ["hello", "<eos>"]
