"""Procedural collections with ground truth (canonical, photos, cameras, keypoints) for tests and benchmarks."""
