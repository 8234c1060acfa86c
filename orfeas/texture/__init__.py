"""Texture backends: colour a shape's mesh from the picture (weights-free: `vertex_colors`)."""
