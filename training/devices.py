"""Which device the boosted family may train on: refuse `cuda` cleanly where there is none."""

from __future__ import annotations

import shutil
import subprocess

import xgboost

from training.exceptions import DeviceUnavailableError

__all__ = ["DEVICES", "cuda_problem", "require_device"]

DEVICES = ("cpu", "cuda")


def cuda_problem() -> str | None:
    """Why xgboost cannot train on a CUDA GPU here, or None when it can.

    Without this check xgboost only warns and trains on the CPU, so a run asked to use the
    GPU would silently take the CPU's time and record the wrong device.
    """
    if not xgboost.build_info().get("USE_CUDA"):
        return "the installed xgboost was built without CUDA"
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return "no NVIDIA driver was found (nvidia-smi is not on the PATH)"
    try:
        listing = subprocess.run(
            [executable, "-L"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"nvidia-smi failed: {error}"
    if listing.returncode != 0 or "GPU" not in listing.stdout:
        return "nvidia-smi lists no GPU"
    return None


def require_device(device: str) -> None:
    """Raise unless the boosted family can train on `device`.

    Raises
    ------
    DeviceUnavailableError
        `device` is not one of `DEVICES`, or is "cuda" where no CUDA GPU is usable.
    """
    if device not in DEVICES:
        raise DeviceUnavailableError(f"`--device` must be one of {DEVICES}, but got {device!r}")
    if device == "cuda":
        problem = cuda_problem()
        if problem is not None:
            raise DeviceUnavailableError(
                f"--device cuda needs an NVIDIA GPU usable by xgboost, but {problem}. Train "
                "with --device cpu (the default), or on a machine with a CUDA GPU and the "
                "NVIDIA driver."
            )
