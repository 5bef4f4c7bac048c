"""Cameras and conventions: the batched pinhole camera, spherical look-at poses, rays and projection, pose conventions."""
