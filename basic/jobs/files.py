"""Where a job's files live: one folder per job under JOBS_DIR, uploads in its `input/` folder.

Outputs are written under a temp name and renamed into place only when the job succeeds, so a
reader (or a killed worker) never sees a half-written file under an output's name.
"""
import re
import shutil
from pathlib import Path
from uuid import UUID

from django.conf import settings

OUTPUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
INPUT_FOLDER = "input"
TEMP_SUFFIX = ".tmp"


def job_dir(job_id: UUID | str) -> Path:
    return Path(settings.JOBS_DIR) / str(job_id)


def input_dir(job_id: UUID | str) -> Path:
    return job_dir(job_id) / INPUT_FOLDER


def check_name(name: str) -> str:
    """Output names are plain file names: no folders, no leading dot (temp files use one)."""
    if not OUTPUT_NAME.match(name) or name == INPUT_FOLDER or name.endswith(TEMP_SUFFIX):
        raise ValueError(f"{name!r} is not a valid output name")
    return name


def output_path(job_id: UUID | str, name: str) -> Path:
    return job_dir(job_id) / check_name(name)


def temp_path(job_id: UUID | str, name: str, run: str) -> Path:
    return job_dir(job_id) / f".{check_name(name)}.{run}{TEMP_SUFFIX}"


def remove_temp_files(job_id: UUID | str) -> None:
    """A worker killed mid-write leaves its temp files; the next run of the job clears them."""
    folder = job_dir(job_id)
    if folder.exists():
        for stale in folder.glob(f".*{TEMP_SUFFIX}"):
            stale.unlink(missing_ok=True)


def remove_job_files(job_id: UUID | str) -> None:
    shutil.rmtree(job_dir(job_id), ignore_errors=True)


def stored_bytes(job_id: UUID | str) -> int:
    folder = job_dir(job_id)
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) if folder.exists() else 0
