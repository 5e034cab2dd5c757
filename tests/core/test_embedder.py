"""The embedder: normalised float32 vectors, batching, thread-safe preprocessing, the text shortcut."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.embedder import Embedder, TruncatedTextEncoder
from core.models import ModelIdentity, create_architecture

TEXT_BATCHES = [
    ["a red car"],
    ["a red car", "two dogs on a beach at sunset", ""],
    ["cat", "a very long description that goes on and on and does not stop " * 3, "x y z"],
    ["", ""],
]


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(40, 30), (32, 32), (64, 48), (20, 50)]
    return [
        Image.fromarray(rng.integers(0, 256, (*sizes[i % 4][::-1], 3), dtype=np.uint8), "RGB")
        for i in range(n)
    ]


def _reference_text(model: torch.nn.Module, tokens: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return F.normalize(model.encode_text(tokens).float(), dim=-1).numpy()


@pytest.fixture(scope="module")
def register_config(tmp_path_factory):
    """Register a variant of the tiny config under a new name; returns a function doing that."""
    from tests.conftest import TINY_CONFIG

    folder = tmp_path_factory.mktemp("variant-configs")

    def register(name: str, *, text_cfg=None, **top) -> str:
        config = json.loads(json.dumps(TINY_CONFIG))
        config["text_cfg"].update(text_cfg or {})
        config.update(top)
        (folder / f"{name}.json").write_text(json.dumps(config))
        open_clip.add_model_config(folder / f"{name}.json")
        return name

    return register


def _embedder_for(arch: str, seed: int = 3) -> Embedder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_architecture(arch)
    return Embedder.from_model(model, None, open_clip.get_tokenizer(arch), ModelIdentity(arch, "random:test"))


def test_shape_and_attributes(tiny_embedder, tiny_arch):
    assert tiny_embedder.dim == 32
    assert tiny_embedder.image_size == 32
    assert tiny_embedder.identity.arch == tiny_arch
    assert tiny_embedder.device.type == "cpu"
    assert str(tiny_embedder.spec).startswith("file:")
    assert not tiny_embedder.model.training


def test_images_give_unit_float32_vectors_independent_of_batching(tiny_embedder):
    images = _images(5)
    one_batch = tiny_embedder.encode_images(images, batch_size=8)
    in_pairs = tiny_embedder.encode_images(images, batch_size=2)
    assert one_batch.shape == (5, 32) and one_batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(one_batch, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one_batch, in_pairs, atol=1e-5)
    assert not np.allclose(one_batch[0], one_batch[1], atol=1e-3)  # different images, different vectors


def test_image_batch_matches_model(tiny_embedder):
    images = _images(3, seed=1)
    batch = torch.stack([tiny_embedder.preprocess(im) for im in images])
    assert batch.shape == (3, 3, 32, 32)
    with torch.inference_mode():
        expected = F.normalize(tiny_embedder.model.encode_image(batch), dim=-1).numpy()
    np.testing.assert_allclose(tiny_embedder.encode_image_batch(batch), expected, atol=1e-6)
    with pytest.raises(ValueError, match="N, C, H, W"):
        tiny_embedder.encode_image_batch(batch[0])


def test_preprocess_is_thread_safe(tiny_embedder):
    images = _images(24, seed=2)
    serial = [tiny_embedder.preprocess(im) for im in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(tiny_embedder.preprocess, images))
    assert all(torch.equal(a, b) for a, b in zip(serial, threaded, strict=True))


def test_empty_inputs(tiny_embedder):
    assert tiny_embedder.encode_images([]).shape == (0, 32)
    assert tiny_embedder.encode_texts([]).shape == (0, 32)
    with pytest.raises(TypeError, match="sequence"):
        tiny_embedder.encode_texts("a single string")


@pytest.mark.parametrize("texts", TEXT_BATCHES)
def test_text_shortcut_equals_encode_text(tiny_embedder, texts):
    assert tiny_embedder.uses_text_shortcut
    tokens = tiny_embedder.tokenize(texts)
    got = tiny_embedder.encode_texts(texts)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _reference_text(tiny_embedder.model, tokens), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_text_shortcut_really_runs_fewer_positions(tiny_embedder):
    encoder = TruncatedTextEncoder.for_model(tiny_embedder.model)
    short = tiny_embedder.tokenize(["a red car", "cat"])
    assert encoder.needed_length(short) == 5  # start, 3 words, end
    full = tiny_embedder.tokenize(["word " * 40])
    assert encoder.needed_length(full) == 16  # truncated text: end token at the last position


def test_different_texts_get_different_vectors(tiny_embedder):
    vectors = tiny_embedder.encode_texts(["a red car", "a blue boat", "a red car"])
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)


def test_many_texts_are_batched(tiny_embedder, monkeypatch):
    import core.embedder

    monkeypatch.setattr(core.embedder, "TEXT_BATCH", 4)
    texts = [f"photo number {i}" for i in range(10)]
    np.testing.assert_allclose(
        tiny_embedder.encode_texts(texts),
        _reference_text(tiny_embedder.model, tiny_embedder.tokenize(texts)),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    ("name", "text_cfg", "top"),
    [
        ("ladderlens-test-custom-text", {}, {"custom_text": True}),
        ("ladderlens-test-eos-pool", {"pool_type": "eos", "eos_id": 49407}, {"custom_text": True}),
        ("ladderlens-test-proj-linear", {"proj_type": "linear", "proj_bias": True}, {"custom_text": True}),
    ],
)
def test_shortcut_applies_to_causal_custom_text_towers(register_config, name, text_cfg, top):
    arch = register_config(name, text_cfg=text_cfg, **top)
    embedder = _embedder_for(arch)
    assert embedder.uses_text_shortcut
    for texts in TEXT_BATCHES:
        np.testing.assert_allclose(
            embedder.encode_texts(texts), _reference_text(embedder.model, embedder.tokenize(texts)), atol=1e-5
        )


@pytest.mark.parametrize(
    ("name", "text_cfg", "top"),
    [
        ("ladderlens-test-bidirectional", {"no_causal_mask": True}, {"custom_text": True}),
        ("ladderlens-test-last-pool", {"pool_type": "last"}, {"custom_text": True}),
        ("ladderlens-test-cls", {"embed_cls": True}, {"custom_text": True}),
    ],
)
def test_other_text_towers_fall_back_to_encode_text(register_config, name, text_cfg, top):
    arch = register_config(name, text_cfg=text_cfg, **top)
    embedder = _embedder_for(arch)
    assert not embedder.uses_text_shortcut
    texts = TEXT_BATCHES[1]
    np.testing.assert_allclose(
        embedder.encode_texts(texts), _reference_text(embedder.model, embedder.tokenize(texts)), atol=1e-5
    )


def test_shortcut_can_be_switched_off(tiny_checkpoint, tiny_embedder):
    plain = Embedder(
        tiny_embedder.model,
        tiny_embedder.preprocess,
        tiny_embedder._tokenizer,
        tiny_embedder.identity,
        fast_text=False,
    )
    assert not plain.uses_text_shortcut
    np.testing.assert_allclose(
        plain.encode_texts(TEXT_BATCHES[2]), tiny_embedder.encode_texts(TEXT_BATCHES[2]), atol=1e-5
    )


def test_from_model_keeps_identity_and_sets_eval(tiny_arch):
    model = create_architecture(tiny_arch).train()
    identity = ModelIdentity(tiny_arch, "sha256:feedfacefeedface", adapter="sha256:0000000000000001")
    embedder = Embedder.from_model(model, None, open_clip.get_tokenizer(tiny_arch), identity)
    assert embedder.identity == identity and embedder.spec is None
    assert not model.training
    assert embedder.encode_texts(["a"]).shape == (1, 32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_bfloat16_query_path_is_close_and_leaves_big_batches_in_float32(tiny_embedder):
    bf16 = Embedder(
        tiny_embedder.model,
        tiny_embedder.preprocess,
        tiny_embedder._tokenizer,
        tiny_embedder.identity,
        query_precision="bfloat16",
    )
    assert bf16.query_dtype == torch.bfloat16
    small = ["a red car at night", "two purple kites"]
    reference = _reference_text(tiny_embedder.model, tiny_embedder.tokenize(small))
    got = bf16.encode_texts(small)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cosines(got, reference).min() > 0.995
    assert not np.array_equal(got, reference)  # it did run in bfloat16
    # A batch larger than a query's phrases (captions for fine-tuning) stays exact.
    many = [f"photo number {i}" for i in range(20)]
    np.testing.assert_allclose(
        bf16.encode_texts(many), _reference_text(tiny_embedder.model, tiny_embedder.tokenize(many)), atol=1e-5
    )
    # The float32 model it was copied from is untouched.
    assert all(p.dtype == torch.float32 for p in tiny_embedder.model.parameters())
    np.testing.assert_allclose(tiny_embedder.encode_texts(small), reference, atol=1e-5)


def test_auto_query_precision_keeps_small_towers_in_float32(tiny_embedder):
    from core.embedder import _query_dtype

    assert tiny_embedder.query_dtype == torch.float32  # 'auto', and the tower is tiny
    encoder = tiny_embedder._text_encoder
    assert _query_dtype("auto", torch.device("cpu"), encoder) is None
    assert _query_dtype("bfloat16", torch.device("cuda"), encoder) is None  # CUDA has autocast
    assert _query_dtype("bfloat16", torch.device("cpu"), None) is None  # no shortcut: no copy


def test_auto_query_precision_uses_bfloat16_for_large_towers_on_capable_cpus(monkeypatch, tiny_embedder):
    import core.embedder as embedder_module

    encoder = tiny_embedder._text_encoder
    monkeypatch.setattr(embedder_module, "QUERY_BF16_MIN_PARAMS", encoder.transformer_parameters)
    monkeypatch.setattr(embedder_module, "cpu_has_native_bf16", lambda: True)
    assert embedder_module._query_dtype("auto", torch.device("cpu"), encoder) == torch.bfloat16
    monkeypatch.setattr(embedder_module, "cpu_has_native_bf16", lambda: False)
    assert embedder_module._query_dtype("auto", torch.device("cpu"), encoder) is None
    assert embedder_module._query_dtype("float32", torch.device("cpu"), encoder) is None


def test_query_precision_is_checked(tiny_embedder):
    with pytest.raises(ValueError, match="query_precision"):
        Embedder(
            tiny_embedder.model,
            tiny_embedder.preprocess,
            tiny_embedder._tokenizer,
            tiny_embedder.identity,
            query_precision="half",
        )
