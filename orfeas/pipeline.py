"""Run a job: input → (text-to-image) → background → shape → texture → export.

Each stage runs in its own thread under a time limit (the smaller of the stage limit and what is
left of the job's deadline), reports progress inside its span, and is timed. Stages also check
the deadline cooperatively between steps; the thread limit catches one that cannot.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from orfeas.backend_names import WEIGHTS_FREE_SHAPES
from orfeas.deadline import Deadline
from orfeas.errors import OrfeasError, OutOfMemory, StageFailed, StageTimeout
from orfeas.progress import ProgressSink, ProgressTracker, discard_progress
from orfeas.registry import Backends
from orfeas.request import JobRequest
from orfeas.settings import Settings
from orfeas.types import Artifact, MeshStats, PipelineResult, StageContext
from orfeas.vram import peak_mb, reset_peak

if TYPE_CHECKING:
    import trimesh
    from PIL import Image

    from orfeas.mesh.finish import Finishing
    from orfeas.types import Cutout, ShapeResult

T = TypeVar("T")
ObjectReader = Callable[[str, str], bytes]  # (bucket, key) -> bytes
# Called with each mesh file as soon as it is written (from the export stage's thread), so a
# caller can start storing it while the other formats are still being written.
ArtifactSink = Callable[[Artifact], None]


class Pipeline:
    """One per process: holds the backends (and so the loaded models) for every job."""

    def __init__(
        self,
        settings: Settings,
        backends: Backends | None = None,
        *,
        object_reader: ObjectReader | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.backends = backends or Backends(settings)
        self.object_reader = object_reader
        self.clock = clock

    def run(
        self,
        request: JobRequest,
        *,
        job_id: str | None = None,
        progress: ProgressSink = discard_progress,
        on_artifact: ArtifactSink | None = None,
    ) -> PipelineResult:
        return _Job(self, request, job_id or uuid.uuid4().hex, progress, on_artifact).run()


class _Job:
    def __init__(
        self,
        pipeline: Pipeline,
        request: JobRequest,
        job_id: str,
        progress: ProgressSink,
        on_artifact: ArtifactSink | None,
    ) -> None:
        self.p = pipeline
        self.on_artifact = on_artifact
        self.settings = pipeline.settings
        self.request = request
        self.job_id = job_id
        self.tracker = ProgressTracker(progress, pipeline.clock)
        self.deadline = Deadline(self.settings.job_timeout_s, pipeline.clock)
        self.timings: dict[str, float] = {}
        self.vram_mb: dict[str, float] = {}
        self.memory_plan: dict[str, Any] | None = None
        self.warnings: list[str] = []

    def run(self) -> PipelineResult:
        started = self.p.clock()
        try:
            if self.request.prompt is not None:
                pictures = {"front": self._stage("text_to_image", self._text_to_image)}
            else:
                self._check_views()  # before any picture is read or model loaded
                pictures = self._stage("input", self._load_input)
            cutouts = self._stage("background", lambda ctx: self._remove_bg(pictures, ctx))
            cutout = cutouts["front"]
            views = cutouts if len(cutouts) > 1 else None
            shape_name, shape = self._stage("shape", lambda ctx: self._make_shape(cutout, views, ctx))
            mesh = shape.mesh
            if self.request.texture:
                mesh = self._texture(shape, cutout)
            artifacts, stats = self._stage("export", lambda ctx: self._export(mesh, shape, ctx))
        except OutOfMemory:
            self.p.backends.free_memory()
            raise
        self.timings["total"] = self.p.clock() - started
        extra: dict[str, Any] = {"background": {"method": cutout.method, "confidence": cutout.confidence}}
        if self.vram_mb:
            extra["vram_peak_mb"] = {k: round(v, 1) for k, v in self.vram_mb.items()}
        if self.memory_plan is not None:
            extra["memory_plan"] = self.memory_plan
        if shape.meta:
            extra["shape"] = dict(shape.meta)
        return PipelineResult(
            job_id=self.job_id,
            backend=shape_name,
            artifacts=artifacts,
            mesh=stats,
            timings=self.timings,
            warnings=self.warnings,
            extra=extra,
        )

    # -- stages -------------------------------------------------------------------------
    def _check_views(self) -> None:
        """Refuse views the shape model cannot take (read from its config, no model loaded)."""
        if self.request.images is None:
            return
        from orfeas.gpu.shape_views import check_views

        check_views(self.request.views(), self.settings, self._shape_before_cutout() or "weights-free")

    def _load_input(self, ctx: StageContext) -> dict[str, Image.Image]:
        """Each view's picture (`image` is the front view); an error names the view's field."""
        from orfeas.inputs.decode import decode_image
        from orfeas.inputs.sources import read_image_source

        sources = self.request.views()
        pictures: dict[str, Image.Image] = {}
        for i, (view, source) in enumerate(sources.items()):
            try:
                data = read_image_source(source, settings=self.settings, object_reader=self.p.object_reader)
                ctx.report((i + 0.5) / len(sources))
                pictures[view] = decode_image(data, max_pixels=self.settings.max_image_pixels)
            except OrfeasError as exc:
                if self.request.images is not None and exc.field == "image":
                    exc.field = f"images.{view}"
                raise
        return pictures

    def _text_to_image(self, ctx: StageContext) -> Image.Image:
        assert self.request.prompt is not None
        image: Image.Image = self.p.backends.text_to_image().generate(self.request.prompt, ctx)
        return image

    def _remove_bg(self, pictures: dict[str, Image.Image], ctx: StageContext) -> dict[str, Cutout]:
        """Each view's cut-out; the front view's subject is checked against the asked size."""
        from orfeas.sizes import check_subject

        remover = self.p.backends.background()
        cutouts: dict[str, Cutout] = {}
        for i, (view, picture) in enumerate(pictures.items()):
            cutouts[view] = remover.remove(picture, ctx)
            ctx.report((i + 1) / len(pictures))
        check_subject(cutouts["front"].mask, self.request.dimensions)  # before the shape is made
        return cutouts

    def _make_shape(
        self, cutout: Cutout, views: dict[str, Cutout] | None, ctx: StageContext
    ) -> tuple[str, ShapeResult]:
        # `auto` is decided inside the stage: judging the picture's palette takes ~30 ms on a
        # 1024² cut-out, which would otherwise be time spent outside every stage.
        name = self._choose_shape(cutout)
        backend = self.p.backends.shape(name)
        if views is not None:  # only a multi-view model gets here (`_check_views`)
            return name, backend.generate(cutout, self.request, ctx, views=views)
        return name, backend.generate(cutout, self.request, ctx)

    def _shape_before_cutout(self) -> str | None:
        """The shape backend as far as it is known before the cut-out: the asked one, `hunyuan`
        for `auto` when the settings say so, else None (`auto` then judges the cut-out)."""
        name: str = self.request.backend
        if name != "auto":
            return name
        return "hunyuan" if self.settings.auto_shape_backend == "hunyuan" else None

    def _choose_shape(self, cutout: Cutout) -> str:
        name = self._shape_before_cutout()
        if name is not None:
            return name
        from orfeas.shape.select import choose_weights_free

        choice = choose_weights_free(cutout)
        assert choice in WEIGHTS_FREE_SHAPES
        return choice

    def _texture(self, shape: ShapeResult, cutout: Cutout) -> trimesh.Trimesh:
        """Texture is optional: a failure degrades to the weights-free colours, then to none."""
        try:
            textured: trimesh.Trimesh = self._stage("texture", lambda ctx: self._paint(shape, cutout, ctx))
            return textured
        except OutOfMemory:
            raise
        except OrfeasError as exc:
            self.warnings.append(f"texture degraded: {exc}")
        if self.settings.texture_backend != "vertex":
            try:
                coloured: trimesh.Trimesh = self._stage(
                    "texture", lambda ctx: self.p.backends.vertex_texture().apply(shape, cutout, ctx)
                )
                return coloured
            except OrfeasError as exc:
                self.warnings.append(f"vertex colours skipped: {exc}")
        return shape.mesh

    def _paint(self, shape: ShapeResult, cutout: Cutout, ctx: StageContext) -> trimesh.Trimesh:
        plan = self.p.backends.make_room_for_texture()
        if plan is not None:
            self.memory_plan = dataclasses.asdict(plan)
        textured: trimesh.Trimesh = self.p.backends.texture().apply(shape, cutout, ctx)
        return textured

    def _export(
        self, mesh: trimesh.Trimesh, shape: ShapeResult, ctx: StageContext
    ) -> tuple[dict[str, Artifact], MeshStats]:
        from orfeas.mesh.export import export_files
        from orfeas.mesh.finish import finish_mesh
        from orfeas.sizes import check_extents
        from orfeas.texture.finish_uv import finish_textured, is_watertight

        finishing: Finishing = {
            "stands": shape.stands,
            "face_budget": self.request.face_budget,
            "dimensions": self.request.dimensions,
            "default_size_mm": self.settings.default_size_mm,
            "ctx": ctx,
        }
        # A UV-textured mesh keeps its texture (placed only); anything else is repaired and decimated.
        finished = finish_textured(mesh, **finishing) or finish_mesh(mesh, **finishing)
        check_extents(finished.extents, self.request.dimensions)  # before any format is written
        ctx.report(0.5)
        artifacts: dict[str, Artifact] = {}
        for i, fmt in enumerate(self.request.formats):
            ctx.check()
            # One file per format, except a UV-textured OBJ: the OBJ, its MTL and its PNG.
            for artifact in export_files(finished, fmt):
                artifacts[artifact.format] = artifact
                if self.on_artifact is not None:
                    self.on_artifact(artifact)
            ctx.report(0.5 + 0.5 * (i + 1) / len(self.request.formats))
        extents = tuple(float(v) for v in finished.extents)
        stats = MeshStats(
            vertices=len(finished.vertices),
            faces=len(finished.faces),
            watertight=is_watertight(finished),
            extents_mm=(extents[0], extents[1], extents[2]),
        )
        return artifacts, stats

    # -- machinery ------------------------------------------------------------------------
    def _stage(self, name: str, fn: Callable[[StageContext], T]) -> T:
        """Run one stage in a thread under its time limit, translating stray errors."""
        limit = self.deadline.earliest(self.settings.stage_timeout_s)
        ctx = StageContext(
            job_id=self.job_id,
            stage=name,
            settings=self.settings,
            report=self.tracker.for_stage(name),
            deadline=Deadline(limit, self.p.clock),
            seed=self.request.seed,
            face_budget=self.request.face_budget,
            warnings=self.warnings,
        )
        ctx.report(0.0)
        box: dict[str, Any] = {}

        def target() -> None:
            # Timed inside the thread: `timings` is the stage's own compute, so what the job
            # spends outside its stages (threads, progress, bookkeeping) stays measurable.
            started = self.p.clock()
            measuring = reset_peak()
            try:
                box["value"] = fn(ctx)
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc
            finally:
                self.timings[name] = self.timings.get(name, 0.0) + (self.p.clock() - started)
                if measuring:
                    self.vram_mb[name] = max(self.vram_mb.get(name, 0.0), peak_mb())

        # Daemon: a stage that overruns must not keep the process from exiting.
        thread = threading.Thread(target=target, name=f"orfeas-{name}", daemon=True)
        thread.start()
        thread.join(limit)
        if thread.is_alive():
            raise StageTimeout(f"did not finish within {limit:.1f} s", stage=name)
        if "error" in box:
            raise _translate(box["error"], name) from box["error"]
        ctx.report(1.0)
        value: T = box["value"]
        return value


def _translate(exc: BaseException, stage: str) -> BaseException:
    if isinstance(exc, OrfeasError):
        return exc
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return OutOfMemory(f"out of memory: {exc}", stage=stage)
    if isinstance(exc, Exception):
        return StageFailed(f"{type(exc).__name__}: {exc}", stage=stage)
    return exc  # KeyboardInterrupt, SystemExit: not ours to translate
