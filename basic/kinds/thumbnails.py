"""Thumbnails: one per requested size (EXIF orientation applied, aspect kept), then a zip of the
original and every thumbnail. Bad images are refused with a 400 before any job starts."""
import re
from contextlib import closing
from pathlib import Path
from typing import Any

from django.conf import settings
from rest_framework import serializers

from basic.core import images
from basic.jobs.kind_api import CPU, JobContext, JobFailed, JobKind, register

NAME = "thumbnails"


class ThumbnailParams(serializers.Serializer):
    image = serializers.FileField(help_text="A JPEG, PNG, WebP or GIF image (20 MB at most by default).")
    sizes = serializers.CharField(required=False, allow_blank=True, default="128x128", max_length=200,
                                  help_text='Boxes to fit the image in, e.g. "128x128,256x256" (at most 8).')

    def validate_image(self, upload: Any) -> Any:
        try:
            self.info = images.inspect_image(upload, max_bytes=settings.THUMBNAIL_MAX_BYTES,
                                             max_pixels=settings.THUMBNAIL_MAX_PIXELS)
        except images.ImageRejected as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return upload

    def validate_sizes(self, text: str) -> list[tuple[int, int]]:
        try:
            return images.parse_sizes(text)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "format": self.info.format, "extension": self.info.extension}


def prepare(data: dict[str, Any], input_dir: Path) -> dict[str, Any]:
    """Store the upload in the job's input folder; the job's parameters name it."""
    upload = data["image"]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(getattr(upload, "name", "") or "").stem).strip("._-")[:60]
    original = f"{stem or 'image'}.{data['extension']}"
    input_dir.mkdir(parents=True, exist_ok=True)
    with (input_dir / original).open("wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return {"image": original, "format": data["format"], "sizes": [list(box) for box in data["sizes"]]}


def run(ctx: JobContext) -> dict[str, Any]:
    source = ctx.input(ctx.params["image"])
    if not source.exists():
        raise JobFailed("The uploaded image is no longer stored; upload it again.")
    stem, extension = source.stem, source.suffix.lstrip(".")
    boxes = [tuple(box) for box in ctx.params["sizes"]]
    steps = len(boxes) + 1
    made, members = [], [(source.name, source)]
    names = [images.thumbnail_name(stem, box, extension) for box in boxes]
    written = images.make_thumbnails(source, boxes, [ctx.output(name) for name in names],
                                     max_pixels=settings.THUMBNAIL_MAX_PIXELS)  # decoded once for all sizes
    with closing(written):  # the source is closed even if the job is cancelled between sizes
        for number, (box, name) in enumerate(zip(boxes, names, strict=True), start=1):
            try:
                width, height = next(written)
            except images.ImageRejected as exc:
                raise JobFailed(str(exc)) from exc
            made.append({"name": name, "box": f"{box[0]}x{box[1]}", "width": width, "height": height})
            members.append((name, ctx.output(name)))
            ctx.progress(number, steps, f"Made {name} ({width}x{height})", force=True)
    archive = f"thumbnails-{ctx.job_id}.zip"
    images.write_zip(ctx.output(archive, download=True), members)
    ctx.summary = f"{len(made)} thumbnail{'s' if len(made) != 1 else ''} ready"
    return {"original": source.name, "thumbnails": made, "zip": archive}


register(JobKind(
    name=NAME,
    label="Thumbnails",
    description="Upload an image; get a thumbnail per size and a zip of them all.",
    params=ThumbnailParams,
    run=run,
    media_type="application/zip",
    prepare=prepare,
    route="thumbnails",
    queue=CPU,  # decoding and resizing compute: on the gevent pool they would stall every other job
    time_limit=600,
))
