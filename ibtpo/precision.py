"""Training precision (``train.precision``) and activation memory (``train.gradient_checkpointing``).

* ``fp32``: every forward and backward in float32 (the default; the CPU presets).
* ``bf16-mixed``: float32 master weights, gradients and AdamW state; the trainer's forwards (the
  loss, the old and the reference log-probs) run under ``torch.autocast(bfloat16)``, so matrix products
  and attention compute in bfloat16 while norms, softmax and the log-probs (``logits.float()``,
  :mod:`ibtpo.logprobs`) stay in float32. No loss scaler is needed (bfloat16 has float32's exponent
  range), which is why fp16 is not offered. The frozen reference model is held in bfloat16 (half its
  memory; under autocast its matmuls see the same bfloat16 operands either way). Checkpoints stay
  float32 and resume the same under either precision.

The paper presets use ``bf16-mixed`` with gradient checkpointing: the paper does not say, and this is
the closest reference setup's default, verl's FSDP actor (float32 model dtype, bfloat16 compute,
``enable_gradient_checkpointing: true``; our choice, METHOD.md leaves it open). The rollout samples in
``rollout.dtype`` (the policy's float32 weights by default); the trainer reports how far the rollout's
log-probs are from its own (:mod:`ibtpo.logprob_mismatch`).
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = {"fp32": None, "bf16-mixed": torch.bfloat16}
# dtype names of the config (rollout.dtype, evaluation's model dtype) and their short forms
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def compute_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (``None``: no autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision: {precision!r} is not one of {sorted(PRECISIONS)}")
    return PRECISIONS[precision]


def check_device(precision: str, device: str | torch.device) -> None:
    """Refuse, before any compute, a precision the device cannot run: ``bf16-mixed`` on a GPU without
    bfloat16 (compute capability < 8.0: V100, T4)."""
    dev = torch.device(device)
    if (compute_dtype(precision) is torch.bfloat16 and dev.type == "cuda"
            and not torch.cuda.is_bf16_supported(including_emulation=False)):  # emulation would say yes on a V100
        raise RuntimeError(f"train.precision: bf16-mixed needs a GPU with bfloat16 ({torch.cuda.get_device_name(dev)} "
                           "has none); set train.precision: fp32")


def autocast(precision: str, device: str | torch.device):
    """The context the trainer's forwards run in: ``torch.autocast`` to the precision's dtype on the
    device's type, or a no-op for ``fp32``."""
    dtype = compute_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def frozen_copy_dtype(precision: str) -> torch.dtype:
    """The dtype of a frozen model (the KL reference) under ``precision``: bfloat16 under ``bf16-mixed``."""
    return compute_dtype(precision) or torch.float32


def cast_copy(model, dtype: torch.dtype):
    """A frozen copy of ``model`` (eval mode, no gradients) whose *parameters* are ``dtype``; its buffers keep
    their own dtype (``model.to(bfloat16)`` would also round RoPE's ``inv_freq``: 1.8e-4 off, 0.7 rad at
    position 4000). The KL reference under ``bf16-mixed`` and a low-precision rollout copy
    (:class:`ibtpo.rollout.hf_backend.HFBackend`) are made this way."""
    import copy

    own = copy.deepcopy(model).requires_grad_(False).eval()
    for p in own.parameters():
        p.data = p.data.to(dtype)
    return own


def enable_gradient_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in the backward instead of keeping them (non-reentrant
    ``torch.utils.checkpoint``): transformers' switch for its own forward, and
    :func:`ibtpo.logprobs.packed_logprobs` reads the same flag for the packed path. transformers also hooks the
    input embeddings to make their output require gradients, which only reentrant checkpointing needs (the
    embeddings are trained here, so their output requires gradients anyway); the hook is removed, so the
    model stays hook-free and keeps the packed path (:func:`ibtpo.model.plain_llama.is_plain_llama`)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the older name warns there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if hasattr(model, "disable_input_require_grads"):
        model.disable_input_require_grads()


def checkpointing(model) -> bool:
    """Whether ``model``'s layers recompute their activations in this forward: gradient checkpointing on,
    the model training and gradients recorded."""
    if not (model.training and torch.is_grad_enabled()):
        return False
    flag = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else \
        "is_gradient_checkpointing"
    return bool(getattr(model, flag, False))
