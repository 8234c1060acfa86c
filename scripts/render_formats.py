"""Render each mesh file of a job as a viewer shows it, with Blender (3.4, headless).

    blender -b --python scripts/render_formats.py -- IN_DIR OUT_DIR [--samples N] [--size WxH]

(about 6 s a format at the defaults, 128 samples and 480×360, on one CPU core)

IN_DIR holds model.glb/.ply/.obj/.stl/.3mf (any of them, as `python -m orfeas generate` writes
them); OUT_DIR gets one PNG per format and colours.json: for each format, the colour the render
shows at two probe points on the picture's face (the emblem's red rim and yellow ring), read
back from the PNG ("srgb"), and the same points in an unlit Workbench render of the imported
colour attribute ("flat_srgb": the colour alone, no light, no specular).

Each file is imported the way a user would open it in Blender: GLB with Blender's glTF importer
and the material it makes (not patched: it multiplies COLOR_0 into the base colour), PLY with
the PLY importer, OBJ with the built-in OBJ importer (told the file is Z up, as its header
says), STL with the STL importer. Blender 3.4 has no 3MF importer, so the 3MF is read by
orfeas/mesh/read_3mf.py (the 3MF core and materials specs, standard library only) into a mesh
with a per-corner colour attribute. Every format but GLB gets the material the glTF importer
makes for GLB (a Principled BSDF with the colour attribute as base colour, roughness 0.8,
metallic 0), so the pictures differ only by what the files hold.

Lighting and colour management are chosen so a pixel's value is the surface colour: Cycles,
lit only by a world of white sky (strength 1) over a dark ground (a Lambertian face looking up
sees only the sky and reflects its albedo; walls see some ground and come out darker), the
"Standard" view transform (Blender's default, Filmic, would tone-map every colour), and the
result written as 8-bit sRGB. A face still reflects some of the sky as specular (the
Principled BSDF's default 0.5, about 4 % at normal incidence), which lifts dark channels most:
the emblem's red (220, 60, 40) renders as about (225, 75, 60) from any format that holds it
right; "flat_srgb" has no light at all and should match to a unit or two.
"""

from __future__ import annotations

import glob
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
try:
    import numpy  # noqa: F401  (the glTF importer needs it)
except ImportError:
    # Debian's blender does not pull in python3-numpy, which its glTF importer imports; the
    # project's venv has numpy for the same CPython 3.11 ABI. Appended last: it never shadows
    # Blender's own modules.
    sys.path += glob.glob(os.path.join(ROOT, ".venv", "lib", "python3.*", "site-packages"))

import bpy  # noqa: E402
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Vector  # noqa: E402

from orfeas.mesh.read_3mf import read_3mf  # noqa: E402

FORMATS = ("glb", "ply", "obj", "stl", "3mf")
# Probe points on the picture's face, as a share of the face's radius from its centre, toward
# the camera's lower left (in the emblem: the middle of the red rim, 0.7..1.0, and of the yellow
# ring, 0.4..0.68).
PROBES = {"red": 0.85, "yellow": 0.55}
# 30° from straight above, from the front: the picture faces the camera, its thickness shows.
TILT_DEG = 30.0
LENS_MM = 50.0
# The backdrop: linear 0.35, sRGB about 160. The ground under the sky: linear 0.15.
GROUND_LINEAR = (0.15, 0.15, 0.15)
BACKDROP_LINEAR = (0.35, 0.35, 0.35)


def _reset() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _attribute_material(name: str | None) -> bpy.types.Material:
    """What Blender's glTF importer builds for a coloured primitive: attribute → base colour."""
    material = bpy.data.materials.new("print")
    material.use_nodes = True
    principled = material.node_tree.nodes["Principled BSDF"]
    principled.inputs["Roughness"].default_value = 0.8
    principled.inputs["Metallic"].default_value = 0.0
    if name is not None:
        attribute = material.node_tree.nodes.new("ShaderNodeVertexColor")
        attribute.layer_name = name
        material.node_tree.links.new(attribute.outputs["Color"], principled.inputs["Base Color"])
    return material


def _colour_layer(obj: bpy.types.Object) -> str | None:
    layers = obj.data.color_attributes
    return layers[0].name if len(layers) else None


def _import_glb(path: str) -> list[bpy.types.Object]:
    bpy.ops.import_scene.gltf(filepath=path)
    return [o for o in bpy.context.scene.objects if o.type == "MESH"]


def _import_with_material(operator, path: str, **options) -> list[bpy.types.Object]:
    operator(filepath=path, **options)
    objects = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    for obj in objects:
        obj.data.materials.clear()
        obj.data.materials.append(_attribute_material(_colour_layer(obj)))
    return objects


def _import_3mf(path: str) -> list[bpy.types.Object]:
    with open(path, "rb") as handle:
        model = read_3mf(handle.read())
    mesh = bpy.data.meshes.new("model")
    mesh.from_pydata(model.vertices, [], model.triangles)
    layer = None
    if any(c is not None for c in model.corner_colours):
        layer = mesh.color_attributes.new("Color", "BYTE_COLOR", "CORNER")
        values = []
        for polygon in mesh.polygons:  # from_pydata keeps the triangles' order and corners
            corners = model.corner_colours[polygon.index] or ((204, 204, 204, 255),) * 3
            for colour in corners:
                values.append(tuple(c / 255.0 for c in colour))
        for item, value in zip(layer.data, values, strict=True):
            item.color_srgb = value  # the file's colours are sRGB, as 3MF's spec says
    obj = bpy.data.objects.new("model", mesh)
    bpy.context.scene.collection.objects.link(obj)
    mesh.materials.append(_attribute_material(layer.name if layer else None))
    return [obj]


IMPORTERS = {
    "glb": _import_glb,
    "ply": lambda p: _import_with_material(bpy.ops.import_mesh.ply, p),
    "obj": lambda p: _import_with_material(bpy.ops.wm.obj_import, p, up_axis="Z", forward_axis="Y"),
    "stl": lambda p: _import_with_material(bpy.ops.import_mesh.stl, p),
    "3mf": _import_3mf,
}


def _bounds(objects: list[bpy.types.Object]) -> tuple[Vector, Vector]:
    corners = [obj.matrix_world @ Vector(c) for obj in objects for c in obj.bound_box]
    low = Vector(tuple(min(c[i] for c in corners) for i in range(3)))
    high = Vector(tuple(max(c[i] for c in corners) for i in range(3)))
    return low, high


def _stage(objects: list[bpy.types.Object], size: tuple[int, int], samples: int) -> bpy.types.Object:
    """Camera in front of and above the part, world light, Cycles on the CPU."""
    scene = bpy.context.scene
    low, high = _bounds(objects)
    centre = (low + high) / 2
    radius = (high - low).length / 2
    camera_data = bpy.data.cameras.new("camera")
    camera_data.lens = LENS_MM
    camera = bpy.data.objects.new("camera", camera_data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    tilt = math.radians(TILT_DEG)
    direction = Vector((0.0, -math.sin(tilt), math.cos(tilt)))  # from the front (-Y), from above
    half_fov = math.atan(camera_data.sensor_width / 2 / LENS_MM) * min(size) / max(size)
    camera.location = centre + direction * (radius / math.sin(half_fov) * 1.02)
    camera.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    camera_data.clip_start = radius * 0.01
    camera_data.clip_end = radius * 100

    # The world: a white sky (strength 1) over a dark ground. A face looking straight up sees
    # the sky alone, so it shows its own colour; walls see half ground, so the shape reads.
    # The camera sees a grey backdrop instead, so a white part (the STL) stands out; Is Camera
    # Ray picks the backdrop for camera rays alone.
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    nodes, links = world.node_tree.nodes, world.node_tree.links
    light = nodes["Background"]
    light.inputs["Strength"].default_value = 1.0
    direction = nodes.new("ShaderNodeTexCoord")
    axes = nodes.new("ShaderNodeSeparateXYZ")
    above = nodes.new("ShaderNodeMath")
    above.operation = "GREATER_THAN"
    above.inputs[1].default_value = 0.0
    sky = nodes.new("ShaderNodeMixRGB")
    sky.inputs["Color1"].default_value = (*GROUND_LINEAR, 1.0)
    sky.inputs["Color2"].default_value = (1.0, 1.0, 1.0, 1.0)
    links.new(direction.outputs["Generated"], axes.inputs["Vector"])
    links.new(axes.outputs["Z"], above.inputs[0])
    links.new(above.outputs["Value"], sky.inputs["Fac"])
    links.new(sky.outputs["Color"], light.inputs["Color"])
    backdrop = nodes.new("ShaderNodeBackground")
    backdrop.inputs["Color"].default_value = (*BACKDROP_LINEAR, 1.0)
    path = nodes.new("ShaderNodeLightPath")
    mix = nodes.new("ShaderNodeMixShader")
    links.new(path.outputs["Is Camera Ray"], mix.inputs["Fac"])
    links.new(light.outputs["Background"], mix.inputs[1])
    links.new(backdrop.outputs["Background"], mix.inputs[2])
    links.new(mix.outputs["Shader"], nodes["World Output"].inputs["Surface"])
    scene.world = world

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False  # Debian's Cycles has no OpenImageDenoise
    scene.cycles.max_bounces = 4
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.render.image_settings.compression = 100
    # No dither: its noise doubles the PNG (87 KB against about 40 KB at 480×360) for bands
    # nobody sees on flat colours.
    scene.render.dither_intensity = 0.0
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    return camera


def _probe_pixels(objects, camera, size) -> dict[str, tuple[int, int]]:
    """Each probe point on the top face, as (column, row from the top) in the render."""
    scene = bpy.context.scene
    low, high = _bounds(objects)
    centre = (low + high) / 2
    radius = (high.x - low.x) / 2
    out = {}
    for name, share in PROBES.items():
        # Toward the lower left of the picture (-X, -Y): on the emblem, clear of its hole.
        offset = Vector((-1.0, -1.0, 0.0)).normalized() * (share * radius)
        point = Vector((centre.x, centre.y, high.z)) + offset
        ndc = world_to_camera_view(scene, camera, point)
        out[name] = (round(ndc.x * size[0]), round((1.0 - ndc.y) * size[1]))
    return out


def _read_patch(path: str, column: int, row: int, half: int = 2) -> list[float]:
    """The mean 8-bit sRGB colour of a (2·half+1)² patch of the written PNG (Blender's own reader)."""
    image = bpy.data.images.load(path)
    width, height = image.size
    pixels = image.pixels[:]  # bottom row first, RGBA floats: the file's 8-bit values / 255
    total = [0.0, 0.0, 0.0]
    count = 0
    for y in range(row - half, row + half + 1):
        for x in range(column - half, column + half + 1):
            at = ((height - 1 - y) * width + x) * 4
            for k in range(3):
                total[k] += pixels[at + k]
            count += 1
    bpy.data.images.remove(image)
    return [round(255.0 * t / count, 1) for t in total]


def _render_flat(path: str) -> str:
    """The same view in Workbench, unlit, coloured by the colour attribute as Blender holds it
    after import: the colour with no light or specular at all."""
    scene = bpy.context.scene
    engine = scene.render.engine
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "FLAT"
    scene.display.shading.color_type = "VERTEX"  # "Attribute" in the interface
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    scene.render.engine = engine
    return path


def main(argv: list[str]) -> None:
    args = argv[argv.index("--") + 1 :] if "--" in argv else []
    if len(args) < 2:
        raise SystemExit("usage: blender -b --python scripts/render_formats.py -- IN_DIR OUT_DIR")
    in_dir, out_dir = args[0], args[1]
    samples = int(args[args.index("--samples") + 1]) if "--samples" in args else 64
    size = (480, 360)
    if "--size" in args:
        width, height = args[args.index("--size") + 1].split("x")
        size = (int(width), int(height))
    os.makedirs(out_dir, exist_ok=True)
    report = {}
    for fmt in FORMATS:
        path = os.path.join(in_dir, f"model.{fmt}")
        if not os.path.exists(path):
            continue
        _reset()
        objects = IMPORTERS[fmt](path)
        camera = _stage(objects, size, samples)
        target = os.path.join(out_dir, f"{fmt}.png")
        bpy.context.scene.render.filepath = target
        bpy.ops.render.render(write_still=True)
        probes = _probe_pixels(objects, camera, size)
        flat = _render_flat(os.path.join(out_dir, f".flat-{fmt}.png"))
        report[fmt] = {
            name: {"pixel": list(at), "srgb": _read_patch(target, *at), "flat_srgb": _read_patch(flat, *at)}
            for name, at in probes.items()
        }
        os.remove(flat)
        print(f"render_formats: {fmt}: {report[fmt]}", flush=True)
    with open(os.path.join(out_dir, "colours.json"), "w") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)


main(sys.argv)
