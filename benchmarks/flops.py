"""Multiply-add FLOPs per image of a Keras model, counted from its layers' shapes.

Keras has no FLOP counter. The arithmetic of these CNNs is in convolutions and dense
layers, so only those are counted (a multiply-add is 2 FLOPs, biases, activations,
pooling, normalisation and augmentation are left out: they are memory-bound and small):

* Conv2D:          2 * H_out * W_out * C_out * (k_h * k_w * C_in / groups)
* DepthwiseConv2D: 2 * H_out * W_out * C_in * multiplier * k_h * k_w
* SeparableConv2D: the depthwise part + 2 * H_out * W_out * C_in * multiplier * C_out
* Dense:           2 * (positions) * units_in * units_out, positions = product of the
                   middle dimensions (1 for a flat input)

Training one image costs about 3x its forward pass (forward, gradient with respect to
the activations, gradient with respect to the weights), the usual rule of thumb; the
first layer's gradient with respect to its input is not needed, so 3x slightly overcounts.
"""

from __future__ import annotations

import math


def _dims(shape) -> list[int]:
    return [int(d) for d in shape[1:]]


def forward_flops(model) -> float:
    """Forward FLOPs per image of ``model`` (nested models are walked)."""
    import keras

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
            continue
        name = type(layer).__name__
        if name not in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"):
            continue
        inp, out = _dims(layer.input.shape), _dims(layer.output.shape)
        if name == "Dense":
            positions = math.prod(inp[:-1]) if len(inp) > 1 else 1
            total += 2.0 * positions * inp[-1] * out[-1]
            continue
        kh, kw = layer.kernel_size
        hw = out[0] * out[1]
        if name == "Conv2D":
            total += 2.0 * hw * out[-1] * kh * kw * inp[-1] / getattr(layer, "groups", 1)
        elif name == "DepthwiseConv2D":
            total += 2.0 * hw * inp[-1] * layer.depth_multiplier * kh * kw
        else:
            mid = inp[-1] * layer.depth_multiplier
            total += 2.0 * hw * mid * kh * kw + 2.0 * hw * mid * out[-1]
    return total


def training_flops(model) -> float:
    """FLOPs to train on one image: 3x the forward pass (see the module docstring)."""
    return 3.0 * forward_flops(model)
