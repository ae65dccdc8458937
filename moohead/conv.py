"""Depthwise 1-D convolution over tokens with a hand-written backward.

PyTorch's CPU backward for a depthwise ``conv1d`` took 47 ms of an 81 ms training step
(15x its forward); the backward here is one forward convolution with the flipped kernel
plus ``k`` multiply-reduces, and gives autograd's gradients (tested with gradcheck).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class _DepthwiseConv1d(torch.autograd.Function):
    """Depthwise 1-D convolution (stride 1, odd kernel, "same" padding) with a fast backward.

    The forward is ``F.conv1d`` itself. PyTorch's CPU backward of a depthwise convolution is
    about 15x slower than its forward; here the input gradient is a forward convolution with
    the flipped kernel and the weight gradient ``kernel`` multiply-reduce passes, so a training
    step costs about three forwards.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv1d(x, weight, bias, padding=weight.shape[-1] // 2, groups=x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, weight = ctx.saved_tensors
        kernel, pad, t = weight.shape[-1], weight.shape[-1] // 2, x.shape[-1]
        # Under autocast the forward ran in bf16/fp16 but the backward runs outside it:
        # compute in the weights' precision, return each gradient in its input's dtype.
        dtype = weight.dtype
        grad = grad.to(dtype).contiguous()
        grad_x = F.conv1d(grad, weight.flip(-1), padding=pad, groups=x.shape[1])
        padded = F.pad(x.to(dtype), (pad, pad))
        grad_w = torch.stack(
            [(grad * padded[..., j : j + t]).sum(dim=(0, 2)) for j in range(kernel)], dim=-1
        )
        return grad_x.to(x.dtype), grad_w.unsqueeze(1), grad.sum(dim=(0, 2))


def depthwise_conv1d(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv(x)`` for a depthwise, odd-kernel, same-padded ``conv``; fast backward when training."""
    if torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad):
        bias = conv.bias if conv.bias is not None else x.new_zeros(x.shape[1])
        out: torch.Tensor = _DepthwiseConv1d.apply(x, conv.weight, bias)
        return out
    return conv(x)
