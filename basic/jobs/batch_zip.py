"""A batch's download: one zip of every finished member's output, built on disk (never in memory:
a member's report can be hundreds of MB) in a private temp folder and handed over as an open,
already unlinked file, so nothing is left behind however the response ends. Only a process killed
while writing one leaves its folder: the retention sweep removes those a day later."""
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from basic.core import images
from basic.jobs import files
from basic.jobs.models import Batch, Job

FOLDER_PREFIX = "batch-zip-"


class NothingToZip(Exception):
    """No member has an output yet; the API answers 409 with this sentence."""


def member_outputs(batch: Batch) -> list[tuple[str, Path]]:
    """(zip member name, path) of each done member's download, in request order. Names start with
    the member's number, so two members' same-named outputs never clash."""
    outputs = []
    members = Job.objects.filter(batch=batch).order_by("created", "id").values_list("id", "status", "output_name")
    for number, (job_id, status, output_name) in enumerate(members, start=1):
        if status != Job.Status.DONE or not output_name:
            continue
        try:
            path = files.output_path(job_id, output_name)
        except ValueError:
            continue
        if path.is_file():
            outputs.append((f"{number:03d}-{output_name}", path))
    return outputs


def open_batch_zip(batch: Batch) -> BinaryIO:
    """An open file holding the zip of every member output there is; NothingToZip if there is none."""
    outputs = member_outputs(batch)
    if not outputs:
        raise NothingToZip("No member of this batch has finished with a file yet; try again once one is done.")
    folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
    try:
        path = folder / f"batch-{batch.id}.zip"
        images.write_zip(path, outputs)
        return path.open("rb")  # the folder goes now; the open file keeps its bytes until closed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale_zip_folders(cutoff: float) -> int:
    """Remove the zip folders (in the system's temp folder) last changed before `cutoff` (a
    timestamp): left by a process killed while writing a zip. Returns how many went."""
    removed = 0
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(FOLDER_PREFIX):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
        except OSError:  # gone meanwhile
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += not os.path.exists(entry.path)
    return removed
