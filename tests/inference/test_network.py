"""The architecture: six 3x3 convolutions, 2x2 pooling, dense 64, softmax 3; 347,715 parameters."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _layers_of(model, kind: str) -> list:
    return [layer for layer in model.layers if type(layer).__name__ == kind]


def test_published_design_has_exactly_the_published_parameter_count() -> None:
    from inference.network import build_model

    model = build_model("published", dropout=0)
    assert model.count_params() == 347_715
    assert not _layers_of(model, "Dropout")


def test_published_design_layers_filters_and_shapes() -> None:
    from inference.network import build_model

    model = build_model("published")
    convs = _layers_of(model, "Conv2D")
    assert [c.filters for c in convs] == [32, 64, 64, 64, 128, 128]
    assert all(tuple(c.kernel_size) == (3, 3) and c.padding == "valid" for c in convs)
    assert all(c.activation.__name__ == "relu" for c in convs)
    pools = _layers_of(model, "MaxPooling2D")
    assert len(pools) == 6 and all(tuple(p.pool_size) == (2, 2) for p in pools)
    # Each convolution is immediately followed by its pooling layer.
    names = [layer.name for layer in model.layers]
    for index in range(1, 7):
        assert names.index(f"pool{index}") == names.index(f"conv{index}") + 1
    dense = _layers_of(model, "Dense")
    assert [d.units for d in dense] == [64, 3]
    assert dense[0].activation.__name__ == "relu" and dense[1].activation.__name__ == "softmax"
    assert len(_layers_of(model, "Flatten")) == 1
    assert len(_layers_of(model, "Dropout")) == 1
    assert tuple(model.input_shape) == (None, 256, 256, 3)
    assert tuple(model.output_shape) == (None, 3)
    # Dropout adds no parameters.
    assert model.count_params() == 347_715


@pytest.mark.parametrize("variant", ["improved", "intensity"])
def test_improved_variants_keep_the_skeleton_and_add_batch_norm_and_augmentation(variant: str) -> None:
    import numpy as np

    from inference.network import build_model

    model = build_model(variant)
    assert [c.filters for c in _layers_of(model, "Conv2D")] == [32, 64, 64, 64, 128, 128]
    assert len(_layers_of(model, "BatchNormalization")) == 6
    assert [d.units for d in _layers_of(model, "Dense")] == [64, 3]
    assert any(layer.name.startswith("aug_") for layer in model.layers)
    # Augmentation is off at inference: the same input gives the same output twice.
    x = np.random.default_rng(0).random((2, 256, 256, 3)).astype("float32")
    first, second = np.asarray(model(x, training=False)), np.asarray(model(x, training=False))
    assert np.allclose(first, second)
    assert np.allclose(first.sum(axis=1), 1, atol=1e-5)


def test_unknown_variant_is_refused() -> None:
    from inference.network import build_model

    with pytest.raises(ValueError, match="unknown variant"):
        build_model("resnet")
