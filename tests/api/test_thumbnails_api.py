"""`POST /api/thumbnails/`: every bad upload is a 400 that says why, before any job starts."""
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from basic.models import Job

pytestmark = pytest.mark.django_db


def png(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def upload(api, content: bytes, name="photo.jpg", **fields):
    return api.post("/api/thumbnails/", {"image": SimpleUploadedFile(name, content), **fields}, format="multipart")


def test_a_good_image_starts_a_job_with_its_sizes(api, queued):
    response = upload(api, png(), name="My Photo!.png", sizes="128x128, 64X64")
    assert response.status_code == 202, response.json()
    job = response.json()
    assert job["kind"] == "thumbnails"
    assert job["params"] == {"image": "My_Photo.png", "format": "PNG", "sizes": [[128, 128], [64, 64]]}
    assert len(queued) == 1


@pytest.mark.parametrize("content, name, fields, field, words", [
    (b"just some text, not pixels", "photo.jpg", {}, "image", "not an image"),
    (png()[: len(png()) // 2], "photo.png", {}, "image", "damaged or truncated"),
    (png(), "photo.png", {"sizes": "big"}, "sizes", "128x128"),
    (png(), "photo.png", {"sizes": ",".join(f"{n}x{n}" for n in range(20, 29))}, "sizes", "at most 8"),
    (png(), "photo.png", {"sizes": "15x15"}, "sizes", "between 16 and 4096"),
    (png(), "photo.png", {"sizes": "4097x20"}, "sizes", "between 16 and 4096"),
])
def test_bad_uploads_are_a_400_that_says_why_and_start_nothing(api, queued, content, name, fields, field, words):
    response = upload(api, content, name=name, **fields)
    assert response.status_code == 400
    assert words in " ".join(response.json()[field])
    assert not queued and not Job.objects.exists()


def test_a_decompression_bomb_is_refused(api, queued, settings):
    settings.THUMBNAIL_MAX_PIXELS = 1000
    response = upload(api, png((100, 100)))
    assert response.status_code == 400 and "too many pixels" in response.json()["image"][0]
    assert not queued


def test_a_file_over_the_size_limit_is_refused(api, queued, settings):
    settings.THUMBNAIL_MAX_BYTES = len(png()) - 1
    response = upload(api, png())
    assert response.status_code == 400 and "too large" in response.json()["image"][0]


def test_an_image_is_required(api, queued):
    response = api.post("/api/thumbnails/", {"sizes": "64x64"}, format="multipart")
    assert response.status_code == 400 and "image" in response.json()
