"""The one place a device name becomes a `torch.device`.

    device = resolve_device("auto")      # cuda when torch sees a GPU, else cpu
    device = resolve_device("cuda:1")    # InputError with a fix when no GPU is visible

Used by every command's `--device` flag and by the library's `device=` arguments.
"""
from typing import Union

import torch

from congeal.common.errors import InputError


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """"auto" (or None) -> cuda when available, else cpu; a bad name or an absent GPU -> InputError, not a torch crash."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise InputError(None, f"--device {device!r} is not a device", "use auto, cpu or cuda") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda was asked for but torch sees no CUDA GPU", "use --device cpu")
    return resolved
