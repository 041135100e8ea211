"""Frames <-> model latents: pixel space, our small autoencoder, or Wan's VAE.

Frames are uint8 ``(..., F, H, W, 3)``; latents are float ``(B, C, F, h, w)``.
Every frame is its own latent frame (one RoPE index per frame), so Wan's VAE
encodes frames one at a time as 1-frame videos (its first-frame/image mode).
"""

from __future__ import annotations

import numpy as np
import torch


def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, F, H, W, 3) -> float (B, 3, F, H, W) in [-1, 1]."""
    x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (B, F, H, W, 3) or (F, H, W, 3); got {tuple(x.shape)}")
    return x.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """float (B, 3, F, H, W) in [-1, 1] -> uint8 (B, F, H, W, 3)."""
    x = ((x.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1).cpu().numpy()


def _is_wan_vae(ae) -> bool:
    return type(ae).__name__ == "AutoencoderKLWan"


@torch.no_grad()
def encode_frames(frames, autoencoder=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Frames to latents. ``autoencoder=None`` means pixel space."""
    x = frames_to_tensor(frames)
    if device is not None:
        x = x.to(device)
    if autoencoder is None:
        return x.to(dtype)
    if _is_wan_vae(autoencoder):
        b, c, f, h, w = x.shape
        per_frame = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, 1, h, w).to(autoencoder.dtype)
        lat = autoencoder.encode(per_frame).latent_dist.mode()
        mean = torch.tensor(autoencoder.config.latents_mean, device=lat.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(autoencoder.config.latents_std, device=lat.device).view(1, -1, 1, 1, 1)
        lat = ((lat - mean) / std).to(dtype)
        return lat.reshape(b, f, *lat.shape[1:]).squeeze(3).permute(0, 2, 1, 3, 4)
    return autoencoder.encode_video(x).to(dtype)


@torch.no_grad()
def decode_latents(latents: torch.Tensor, autoencoder=None) -> np.ndarray:
    """Latents (B, C, F, h, w) to uint8 frames (B, F, H, W, 3)."""
    if autoencoder is None:
        return tensor_to_frames(latents)
    if _is_wan_vae(autoencoder):
        b, c, f, h, w = latents.shape
        mean = torch.tensor(autoencoder.config.latents_mean, device=latents.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(autoencoder.config.latents_std, device=latents.device).view(1, -1, 1, 1, 1)
        z = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, 1, h, w)
        z = (z * std + mean).to(autoencoder.dtype)
        x = autoencoder.decode(z).sample  # (b*f, 3, 1, H, W)
        x = x.reshape(b, f, 3, *x.shape[-2:]).permute(0, 2, 1, 3, 4)
        return tensor_to_frames(x)
    return tensor_to_frames(autoencoder.decode_video(latents))
