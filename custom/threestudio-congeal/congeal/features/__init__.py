"""The feature-extractor seam: `extract(images [B,3,H,W]) -> L2-normalised features [B,C,h,w]` (rgb, DINOv2)."""
