"""Cameras: what a camera is (its config), how it is read, and how it is sampled."""
