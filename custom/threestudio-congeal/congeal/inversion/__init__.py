"""Stage 1, textual inversion: placeholder tokens, the denoiser seam (diffusers UNet, MVDream), the trainer, embedding files."""
