"""Image checks and thumbnails for the "thumbnails" job kind.

Plain functions with every limit passed in, so the REST layer can reject a bad upload before a job
exists and the worker can reuse the same checks. The file's bytes decide what it is, never its name.

Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) and ``ImageFile.LOAD_TRUNCATED_IMAGES``
are process globals; nothing here changes them. Our pixel limit is checked from the header instead.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})

# Image.open wants a list or tuple; a fixed order keeps identification deterministic.
_OPEN_FORMATS = tuple(sorted(ALLOWED_FORMATS))
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
_ORIENTATION_TAG = 0x0112
_ROTATED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
_JPEG_QUALITY = 85
_WEBP_QUALITY = 85

NOT_AN_IMAGE = "The file is not an image (JPEG, PNG, WebP or GIF)."
DAMAGED = "The image is damaged or truncated."
SIZES_SYNTAX = "Sizes look like 128x128,256x256."

_SIZE_RE = re.compile(r"([0-9]+)\s*[xX]\s*([0-9]+)")
_UNSAFE_STEM_RE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSION_RE = re.compile(r"[a-z0-9]{1,10}")
_STEM_MAX = 60
# Members already compressed by their format: deflating them again costs CPU for nothing.
_STORED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif"})


INSPECT_DECODE_MAX_PIXELS = 2_000_000


def _scaled_to(size: tuple[int, int], pixels: int) -> tuple[int, int]:
    """`size` shrunk (aspect kept) to at most about `pixels`; unchanged if already smaller."""
    width, height = size
    if width * height <= pixels:
        return size
    factor = math.sqrt(pixels / (width * height))
    return max(1, int(width * factor)), max(1, int(height * factor))


class ImageRejected(ValueError):
    """An upload or source image we refuse; str(exc) is a sentence a user can read."""


@dataclass(frozen=True)
class ImageInfo:
    """What inspect_image learned from the bytes; width/height are as stored (before EXIF orientation)."""

    format: str
    width: int
    height: int
    extension: str


def parse_sizes(
    text: str | None, *, max_sizes: int = 8, min_side: int = 16, max_side: int = 4096
) -> list[tuple[int, int]]:
    """Parse the user's '128x128,256x256' into boxes, so a typo fails the request, not the job later.

    None or blank gives [(128, 128)]. Whitespace and 'X' are tolerated, empty items (a trailing comma)
    are skipped and duplicates are dropped keeping the first order. Raises ValueError with a sentence.
    """
    if text is None or not text.strip():
        return [(128, 128)]
    sizes: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        match = _SIZE_RE.fullmatch(part)
        if match is None:
            raise ValueError(SIZES_SYNTAX)
        # Cap the digits so a 5000-digit "side" is just out of range, not an int-parsing error.
        width, height = (int(d) if len(d) <= 9 else 10**9 for d in match.groups())
        if not (min_side <= width <= max_side and min_side <= height <= max_side):
            raise ValueError(f"Each side must be between {min_side} and {max_side} pixels.")
        if (width, height) in sizes:
            continue
        sizes.append((width, height))
        if len(sizes) > max_sizes:
            raise ValueError(f"Give at most {max_sizes} sizes.")
    if not sizes:
        raise ValueError(SIZES_SYNTAX)
    return sizes


def _format_number(value: float) -> str:
    """'10', '2.5', '0.05': a limit a person can read, without float noise."""
    if value >= 10:
        return str(round(value))
    text = f"{value:.2g}"
    if "e" in text:  # far below one unit: plain decimals instead of scientific notation
        text = f"{value:.8f}".rstrip("0").rstrip(".")
    return text


def _too_big_bytes(max_bytes: int) -> ImageRejected:
    return ImageRejected(f"The file is too large: the limit is {_format_number(max_bytes / (1024 * 1024))} MB.")


def _pixel_limit(max_pixels: int) -> int:
    """Ours, or Pillow's own guard (a process global we never change) if that one is stricter."""
    if Image.MAX_IMAGE_PIXELS is None:
        return max_pixels
    return min(max_pixels, Image.MAX_IMAGE_PIXELS)


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> ImageRejected:
    megapixels = _format_number(_pixel_limit(max_pixels) / 1_000_000)
    dimensions = f" ({size[0]}x{size[1]})" if size else ""
    return ImageRejected(
        f"The image has too many pixels to process safely{dimensions}: the limit is {megapixels} megapixels."
    )


def _open_header(fh: BinaryIO, max_pixels: int) -> ImageFile.ImageFile:
    """Image.open (header only) restricted to ALLOWED_FORMATS, with the pixel limit checked before decoding.

    Pillow's DecompressionBombWarning is silenced for the call because the same limit is applied just
    below (with the image's size in the message); its DecompressionBombError (over twice its limit)
    becomes a rejection. warnings filters are process-wide, but the block is header parsing only, with
    no gevent-cooperative I/O, so no other greenlet runs while the filter is in place.
    """
    fh.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fh, formats=_OPEN_FORMATS)
    except Image.DecompressionBombError:
        raise _too_many_pixels(None, max_pixels) from None
    except UnidentifiedImageError:
        raise ImageRejected(NOT_AN_IMAGE) from None
    except Exception as exc:  # a plugin recognised the signature but choked on the header
        raise ImageRejected(DAMAGED) from exc
    width, height = im.size
    if width * height > _pixel_limit(max_pixels):
        raise _too_many_pixels((width, height), max_pixels)
    return im


def _file_size(fh: BinaryIO) -> int:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    return size


def _inspect_open_file(fh: BinaryIO, max_bytes: int, max_pixels: int) -> ImageInfo:
    # Images are used as context managers, never .close()d: ImageFile.close() would close the
    # caller's file object, while __exit__ only closes files Pillow opened itself.
    if _file_size(fh) > max_bytes:
        raise _too_big_bytes(max_bytes)
    with _open_header(fh, max_pixels) as im:
        fmt = im.format or ""
        if fmt not in ALLOWED_FORMATS:  # defensive: formats= already restricts this
            raise ImageRejected(NOT_AN_IMAGE)
        width, height = im.size
        # verify() checks structure/checksums (PNG CRCs) but must come straight after open and leaves
        # the image unusable, so the pixels are decoded from a second open.
        try:
            im.verify()
        except Exception as exc:
            raise ImageRejected(DAMAGED) from exc
    with _open_header(fh, max_pixels) as im:
        try:
            # Decoded to find a truncated or corrupt file, but never more than ~2 megapixels of it:
            # this runs in the web process, on the one thread every sync view shares (design.md
            # traps 10 and 11; a whole 49-megapixel PNG took a second). A JPEG is decoded at a
            # reduced scale; a larger image of another format is left to the job, which fails
            # with the same sentence if it is damaged.
            # (A JPEG's scales are powers of two: asking for a quarter lands at most on the max.)
            im.draft(None, _scaled_to(im.size, INSPECT_DECODE_MAX_PIXELS // 4))
            if im.size[0] * im.size[1] <= INSPECT_DECODE_MAX_PIXELS:
                im.load()  # decodes the first frame of an animated GIF/WebP
        except Exception as exc:
            raise ImageRejected(DAMAGED) from exc
    return ImageInfo(format=fmt, width=width, height=height, extension=_EXTENSIONS[fmt])


def inspect_image(source: BinaryIO | str | Path, *, max_bytes: int, max_pixels: int) -> ImageInfo:
    """Decide from the bytes whether an upload is an image we accept, before any job is started.

    Checks in order of cost: byte size, header (format and pixel count, so a decompression bomb is
    refused before any pixel is decoded), then a full decode so a truncated or corrupt file is refused
    here rather than in the worker. Raises ImageRejected. A file object is left at position 0.
    """
    if isinstance(source, str | Path):
        # Opened here (not by Image.open) so the handle is closed on every rejection path.
        with open(source, "rb") as fh:
            return _inspect_open_file(fh, max_bytes, max_pixels)
    try:
        return _inspect_open_file(source, max_bytes, max_pixels)
    finally:
        source.seek(0)


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Modes that resize badly (palette and 1-bit use nearest-neighbour) become true colour / grey first."""
    if im.mode == "P":
        return im.convert("RGBA" if im.has_transparency_data else "RGB")
    if im.mode == "PA":
        return im.convert("RGBA")
    if im.mode == "1":
        return im.convert("L")
    return im


def _for_jpeg(im: Image.Image) -> Image.Image:
    """JPEG holds only L/RGB here: transparency is flattened onto white, CMYK and others become RGB."""
    if im.mode in ("L", "RGB"):
        return im
    if im.mode in ("RGBA", "LA") or im.has_transparency_data:
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def _check_box(box: tuple[int, int]) -> tuple[int, int]:
    width, height = box
    if not (isinstance(width, int) and isinstance(height, int)) or width < 1 or height < 1:
        raise ValueError(f"A thumbnail box needs two positive whole numbers, not {box!r}.")
    return width, height


def fitted_size(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The size `Image.thumbnail` gives an image of `size` fitted in `box`: aspect kept (rounded the
    way Pillow rounds it), never upscaled."""
    width, height = size
    x, y = box
    if x >= width and y >= height:
        return size
    aspect = width / height

    def round_aspect(number: float, key: Callable[[int], float]) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    return x, y


def make_thumbnails(source: str | Path, boxes: list[tuple[int, int]], dests: list[str | Path], *,
                    max_pixels: int) -> Iterator[tuple[int, int]]:
    """Write a thumbnail of `source` fitting each box to the matching dest, decoding the image once
    for all of them (a 49-megapixel PNG decoded again per size cost 8x the CPU and memory); yields
    each (width, height) written, in order, so the caller can report progress between sizes.

    Aspect ratio kept, EXIF orientation applied (metadata is not copied, which also drops GPS tags),
    never upscaled, saved in the source's format (first frame only for animations). A JPEG is
    decoded at the smallest scale the largest box allows. Raises ImageRejected if the source turns
    out unreadable.
    """
    boxes = [_check_box(box) for box in boxes]
    if len(boxes) != len(dests):
        raise ValueError("make_thumbnails needs one destination per box")
    with open(source, "rb") as fh, _open_header(fh, max_pixels) as im:
        try:
            fmt = im.format or ""
            if fmt not in ALLOWED_FORMATS:
                raise ImageRejected(NOT_AN_IMAGE)
            icc_profile = im.info.get("icc_profile") if im.mode != "CMYK" else None
            try:
                orientation = im.getexif().get(_ORIENTATION_TAG)
            except Exception:  # unreadable EXIF is not a reason to refuse the picture
                orientation = None
            # Fitted before rotating (cheaper), so a rotated image is fitted with its sides swapped.
            stored_boxes = [(b[1], b[0]) if orientation in _ROTATED_ORIENTATIONS else b for b in boxes]
            widest = (max(b[0] for b in stored_boxes) * _REDUCING_GAP, max(b[1] for b in stored_boxes) * _REDUCING_GAP)
            full_size = im.size  # sizes are fitted from it, as Image.thumbnail does, not from the draft
            im.draft(None, (int(widest[0]), int(widest[1])))  # JPEG only: decode at a reduced scale
            base = _normalise_mode(im)
            base.load()
        except ImageRejected:
            raise
        except Exception as exc:
            raise ImageRejected(DAMAGED) from exc
        for box, dest in zip(stored_boxes, dests, strict=True):
            yield _write_one(base, fitted_size(full_size, box), dest, fmt, icc_profile)


_REDUCING_GAP = 2.0  # as Image.thumbnail: reduce by whole factors, then resample at most 2x


def _write_one(base: Image.Image, size: tuple[int, int], dest: str | Path, fmt: str,
               icc_profile: bytes | None) -> tuple[int, int]:
    try:
        thumb = (base.resize(size, Image.Resampling.BICUBIC, reducing_gap=_REDUCING_GAP)
                 if size != base.size else base)
        try:
            thumb = ImageOps.exif_transpose(thumb)  # always a new, loaded image
        except Exception:
            thumb = thumb.copy()  # keep the stored orientation rather than fail the whole job
        if fmt == "JPEG":
            thumb = _for_jpeg(thumb)
    except Exception as exc:
        raise ImageRejected(DAMAGED) from exc
    options: dict[str, object] = {}
    if fmt == "JPEG":
        options = {"quality": _JPEG_QUALITY}
    elif fmt == "WEBP":
        options = {"quality": _WEBP_QUALITY}
    if icc_profile and fmt != "GIF":
        options["icc_profile"] = icc_profile
    try:
        thumb.save(dest, format=fmt, **options)
    except BaseException:
        Path(dest).unlink(missing_ok=True)  # no half-written thumbnail left behind
        raise
    return thumb.size


def make_thumbnail(source: str | Path, box: tuple[int, int], dest: str | Path, *, max_pixels: int) -> tuple[int, int]:
    """One thumbnail of `source` fitting `box` (make_thumbnails with one size)."""
    return next(make_thumbnails(source, [box], [dest], max_pixels=max_pixels))


def thumbnail_name(stem: str, box: tuple[int, int], extension: str) -> str:
    """'photo', (128, 128), 'jpg' -> 'photo-128x128.jpg': a safe file/zip member name from a user's filename.

    The stem keeps only [A-Za-z0-9._-] (accents are folded to ASCII first), cannot start with a dot or
    dash, is at most 60 characters and falls back to 'image'.
    """
    width, height = _check_box(box)
    ext = extension.lower().lstrip(".")
    if not _EXTENSION_RE.fullmatch(ext):
        raise ValueError(f"Not a file extension: {extension!r}.")
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    safe = _UNSAFE_STEM_RE.sub("-", ascii_stem).strip(".-")
    safe = safe[:_STEM_MAX].rstrip(".-") or "image"
    return f"{safe}-{width}x{height}.{ext}"


def _check_arcname(arcname: str) -> None:
    if (
        not arcname
        or arcname in (".", "..")
        or any(ch in arcname for ch in "/\\\0")
        or ":" in arcname  # a drive letter on Windows
    ):
        raise ValueError(f"A zip member needs a plain file name, not {arcname!r}.")


def write_zip(dest: str | Path, members: list[tuple[str, str | Path]]) -> None:
    """Zip (arcname, path) pairs into `dest`, written to a temp file and renamed, so a reader never
    sees a half-written zip. Arcnames must be plain, unique names (no directories, no '..') so
    unpacking cannot escape the target folder. Already-compressed images are stored, the rest deflated.
    """
    seen: set[str] = set()
    for arcname, _path in members:
        _check_arcname(arcname)
        if arcname in seen:
            raise ValueError(f"Two zip members are both called {arcname!r}.")
        seen.add(arcname)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for arcname, path in members:
                stored = Path(arcname).suffix.lower() in _STORED_SUFFIXES
                zf.write(path, arcname, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
