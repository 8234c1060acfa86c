"""GPU backends: diffusers text-to-image, segmentation background removal, Hunyuan3D shape and paint.

Nothing here is imported by `import orfeas`: the registry imports a module of this package only
when its backend is first asked for, so torch, diffusers, transformers and hy3dgen load then.
"""
