"""The CNN. Imports TensorFlow/Keras: never import this from the web process.

`published`: the design from the IQ-OTH/NCCD literature, kept as the baseline: six 3x3 'valid'
convolutions (32, 64, 64, 64, 128, 128 filters), each followed by 2x2 max-pooling, flatten,
dense 64, dropout, softmax over CLASS_NAMES; ReLU elsewhere. Without dropout: 347,715 parameters.

`augmented`: the published network behind augmentation that keeps anatomy (small shifts,
rotations, zoom, contrast; no flips). The augmentation layers are inactive at inference.

`improved`: `augmented` plus batch normalisation after each convolution (momentum 0.9: with a
few dozen steps per epoch the default 0.99 leaves the inference statistics far behind).

`bn_gap`: for larger inputs (384, 512 px). `intensity`'s augmentation, then six 3x3 'same'
convolutions (32, 64, 64, 64, 128, 128 filters, no bias), each followed by batch normalisation
(momentum 0.9), ReLU and 2x2 max-pooling, then global average pooling, dropout, dense 64 and
softmax: 324,579 parameters whatever the input size.
"""

from __future__ import annotations

from typing import Any

from .preprocessing import CLASS_NAMES, IMAGE_SIZE

CONV_FILTERS: tuple[int, ...] = (32, 64, 64, 64, 128, 128)
DENSE_UNITS = 64
VARIANTS: tuple[str, ...] = ("published", "augmented", "improved", "intensity", "bn_gap")
PUBLISHED_PARAMS_WITHOUT_DROPOUT = 347_715
VARIANT_DESCRIPTIONS: dict[str, str] = {
    "published": "The published design, unchanged (the baseline).",
    "augmented": (
        "The published design behind training-only augmentation that keeps anatomy: shifts up to 6%, "
        "rotations up to ±11°, zoom ±8%, contrast ±15%; no flips."
    ),
    "improved": (
        "The published design with batch normalisation (momentum 0.9) after each convolution, behind "
        "training-only augmentation that keeps anatomy: shifts up to 6%, rotations up to ±11°, "
        "zoom ±8%, contrast ±15%; no flips."
    ),
    "intensity": (
        "As `improved`, with wider intensity augmentation for the patients' different windows: "
        "contrast ±30% and brightness ±0.1 instead of contrast ±15%."
    ),
    "bn_gap": (
        "For larger inputs: `intensity`'s augmentation, six 3x3 'same' convolutions (32, 64, 64, 64, "
        "128, 128 filters) each with batch normalisation (momentum 0.9), ReLU and 2x2 max-pooling, "
        "then global average pooling, dropout, dense 64 and softmax."
    ),
}


def build_model(
    variant: str = "published",
    *,
    dropout: float = 0.5,
    seed: int = 1234,
    input_size: int = IMAGE_SIZE,
) -> Any:
    """Build the (uncompiled) Keras model. `dropout=0` omits the dropout layer entirely."""
    import keras
    from keras import layers

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")

    inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
    x = inputs
    if variant in ("augmented", "improved", "intensity", "bn_gap"):
        x = _augmentation(x, variant, seed)
    if variant == "bn_gap":
        outputs = _bn_gap_layers(x, dropout=dropout, seed=seed)
        return keras.Model(inputs, outputs, name=f"lungcnn_{variant}")
    for index, filters in enumerate(CONV_FILTERS, start=1):
        if variant in ("improved", "intensity"):
            x = layers.Conv2D(filters, 3, padding="valid", use_bias=False, name=f"conv{index}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
            x = layers.Activation("relu", name=f"relu{index}")(x)
        else:
            x = layers.Conv2D(filters, 3, padding="valid", activation="relu", name=f"conv{index}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(DENSE_UNITS, activation="relu", name="dense")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, seed=seed + 4, name="dropout")(x)
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"lungcnn_{variant}")


def _augmentation(x: Any, variant: str, seed: int) -> Any:
    """The training-only augmentation layers (inactive at inference)."""
    from keras import layers

    # Only transformations a real slice could plausibly show: slight patient shift, tilt,
    # field of view and contrast. Left-right flips would swap the heart's side.
    x = layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed, name="aug_translate")(x)
    x = layers.RandomRotation(0.03, fill_mode="constant", seed=seed + 1, name="aug_rotate")(x)
    x = layers.RandomZoom(0.08, fill_mode="constant", seed=seed + 2, name="aug_zoom")(x)
    if variant in ("intensity", "bn_gap"):
        # Patients here were exported with different intensity windows: vary brightness and
        # contrast more widely (within the [0, 1] range the network sees).
        x = layers.RandomContrast(0.3, value_range=(0, 1), seed=seed + 3, name="aug_contrast")(x)
        x = layers.RandomBrightness(0.1, value_range=(0, 1), seed=seed + 5, name="aug_brightness")(x)
    else:
        x = layers.RandomContrast(0.15, seed=seed + 3, name="aug_contrast")(x)
    return x


def _bn_gap_layers(x: Any, *, dropout: float, seed: int) -> Any:
    """`bn_gap` after the augmentation: conv-BN-ReLU-pool blocks, global average pooling, dropout,
    dense 64 ("dense", the features) and the softmax ("probabilities")."""
    from keras import layers

    for index, filters in enumerate(CONV_FILTERS, start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
        x = layers.Activation("relu", name=f"relu{index}")(x)
        # "same" pooling: identical to "valid" for sizes that are multiples of 64, and small
        # inputs (tests) still reach the last block.
        x = layers.MaxPooling2D(2, padding="same", name=f"pool{index}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, seed=seed + 4, name="dropout")(x)
    x = layers.Dense(DENSE_UNITS, activation="relu", name="dense")(x)
    return layers.Dense(len(CLASS_NAMES), activation="softmax", name="probabilities")(x)


def last_conv_layer_name(model: Any) -> str:
    """The last convolution's output to explain (after its activation for Grad-CAM)."""
    names = [layer.name for layer in model.layers]
    convs = [name for name in names if name.startswith("conv")]
    if not convs:
        raise ValueError("model has no convolution layer")
    last = convs[-1]
    index = last.removeprefix("conv")
    # In the improved, intensity and bn_gap variants the activation follows batch norm.
    return f"relu{index}" if f"relu{index}" in names else last
