"""REST calls of the `jobs` client, with every failure turned into a `CliError` that says what
to do about it and carries the exit code."""
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

# Exit codes (README: Terminal client).
OK = 0
JOB_NOT_DONE = 1  # the job failed or was cancelled (or cannot be cancelled/downloaded in its state)
USAGE = 2  # bad arguments, a bad token, a wrong URL, an unknown kind or job, bad parameters
UNREACHABLE = 3  # the server is down or answered with a server error
INTERRUPTED = 130  # Ctrl-C


class CliError(Exception):
    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def check_base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"{url!r} is not a server URL: give --url (or JOBS_URL) like http://127.0.0.1:8000")
    return url.strip().rstrip("/")


def errors_text(body: Any, prefix: str = "") -> str:
    """DRF's field errors ({"params": {"steps": ["…"]}}) as "params.steps: …" lines."""
    if isinstance(body, dict):
        lines = []
        for key, value in body.items():
            name = key if key in ("detail", "non_field_errors") else f"{prefix}{key}"
            inner = errors_text(value, "" if key in ("detail", "non_field_errors") else f"{name}.")
            lines.append(inner if isinstance(value, dict) or key in ("detail", "non_field_errors")
                         else f"{name}: {inner}")
        return "\n".join(lines)
    if isinstance(body, list):
        return " ".join(errors_text(item, prefix) for item in body)
    return str(body)


class Api:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = check_base_url(base_url)
        self.token = token
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                 headers={"Authorization": f"Token {token}", "Accept": "application/json",
                                          "User-Agent": "jobs-cli/1"})

    def close(self) -> None:
        self.http.close()

    def ws_url(self, path: str, **query: Any) -> str:
        base = "ws" + self.base_url[4:]  # http → ws, https → wss
        return f"{base}{path}?{urlencode({**query, 'token': self.token})}"

    # --- plumbing ----------------------------------------------------------------------------

    def request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        try:
            if stream:
                request = self.http.build_request(method, path, **kwargs)
                response = self.http.send(request, stream=True)
            else:
                response = self.http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise CliError(f"Cannot reach the server at {self.base_url}: is it running? ({exc})", UNREACHABLE) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise CliError(f"{self.base_url} is not a usable server URL: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise CliError(f"The server at {self.base_url} did not answer in time.", UNREACHABLE) from exc
        except httpx.TransportError as exc:
            raise CliError(f"Lost the connection to {self.base_url}: {exc}", UNREACHABLE) from exc
        if response.is_success:
            return response
        if stream:
            response.read()
            response.close()
        raise self.error_for(response)

    def error_for(self, response: httpx.Response) -> CliError:
        status = response.status_code
        try:
            body = response.json() if "json" in response.headers.get("content-type", "") else None
        except ValueError:
            body = None
        if body is None and status < 500:
            return CliError(f"{self.base_url} does not look like the jobs API ({response.request.method} "
                            f"{response.request.url.path} answered {status} "
                            f"{response.headers.get('content-type', 'with no content type')}): check --url.")
        detail = errors_text(body) if body is not None else response.text[:200]
        if status == 401:
            return CliError(f"The server refused the token ({detail.strip()}): check --token or JOBS_TOKEN.")
        if status == 403:
            return CliError(f"Not allowed: {detail}")
        if status == 404:
            return CliError(f"Not found: {detail}")
        if status == 409:
            return CliError(detail, JOB_NOT_DONE)
        if status == 429:
            return CliError(f"Too many requests: {detail}", UNREACHABLE)
        if status >= 500:
            return CliError(f"The server failed ({status}): {detail}", UNREACHABLE)
        return CliError(detail)

    def job_path(self, job_id: str) -> str:
        return f"/api/jobs/{quote(job_id.strip(), safe='')}/"

    def batch_path(self, batch_id: str) -> str:
        return f"/api/batches/{quote(batch_id.strip(), safe='')}/"

    # --- endpoints -----------------------------------------------------------------------------

    def kinds(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/kinds/").json()

    def start(self, kind: str, params: dict[str, Any], file: Path | None = None) -> dict[str, Any]:
        if file is None:
            try:
                return self.request("POST", "/api/jobs/", json={"kind": kind, "params": params}).json()
            except CliError as exc:
                raise self.start_error(kind, exc) from None
        field = self.file_field(kind)
        fields = {"kind": kind, **{name: form_value(value) for name, value in params.items()}}
        try:
            with file.open("rb") as upload:
                return self.request("POST", "/api/jobs/", data=fields, files={field: (file.name, upload)}).json()
        except OSError as exc:
            raise CliError(f"Cannot read {file}: {exc.strerror or exc}") from exc
        except CliError as exc:
            raise self.start_error(kind, exc) from None

    def file_field(self, kind: str) -> str:
        described = {entry["kind"]: entry for entry in self.kinds()}
        if kind not in described:
            raise CliError(self.unknown_kind_text(kind, list(described)))
        names = [field["name"] for field in described[kind]["fields"] if field.get("type") == "file"]
        if not names:
            raise CliError(f"Jobs of kind {kind!r} take no file; drop --file.")
        return names[0]

    def start_error(self, kind: str, exc: CliError) -> CliError:
        if exc.code == USAGE and exc.message.startswith("kind:"):
            try:
                known = [entry["kind"] for entry in self.kinds()]
            except CliError:
                known = []
            if kind not in known:
                return CliError(self.unknown_kind_text(kind, known))
        if exc.code == USAGE and exc.message.startswith("params."):
            return CliError("Bad parameters:\n" + "\n".join(
                "  " + line.removeprefix("params.") for line in exc.message.splitlines()))
        return exc

    @staticmethod
    def unknown_kind_text(kind: str, known: list[str]) -> str:
        listed = f" Known kinds: {', '.join(known)}." if known else ""
        return f"Unknown kind {kind!r}.{listed}"

    def jobs(self, status: str | None = None, kind: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        query = {"limit": limit, **({"status": status} if status else {}), **({"kind": kind} if kind else {})}
        body = self.request("GET", "/api/jobs/", params=query).json()
        rows = body["results"] if isinstance(body, dict) else body
        # Filter here too, so an older server that ignores the query still gives the right list.
        return [job for job in rows if (not status or job["status"] == status) and (not kind or job["kind"] == kind)]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.get_one(self.job_path(job_id), f"No job {job_id} (or it is not yours).")

    def get_one(self, path: str, not_found: str) -> dict[str, Any]:
        """GET one job or batch; a 404 says `not_found`."""
        try:
            return self.request("GET", path).json()
        except CliError as exc:
            if exc.message.startswith("Not found"):
                raise CliError(not_found) from None
            raise

    def cancel(self, job_id: str) -> dict[str, Any]:
        self.job(job_id)  # a clear "no such job" first
        return self.request("POST", self.job_path(job_id) + "cancel/").json()

    def download(self, job_id: str) -> tuple[str, Iterator[bytes], httpx.Response]:
        self.job(job_id)
        response = self.request("GET", self.job_path(job_id) + "download/", stream=True)
        return attachment_name(response, "job.out"), response.iter_bytes(), response

    # --- batches --------------------------------------------------------------------------------

    def start_batch(self, kind: str, params: dict[str, Any], files: list[Path], count: int = 1) -> dict[str, Any]:
        """One job per file (the kind's own route takes them in one form), or `count` jobs of `params`."""
        if not files:
            jobs = [{"kind": kind, "params": params}] * count
            try:
                return self.request("POST", "/api/batches/", json={"jobs": jobs}).json()
            except CliError as exc:
                raise self.start_error(kind, exc) from None
        described = {entry["kind"]: entry for entry in self.kinds()}
        route = (described.get(kind) or {}).get("batch_url")
        if not route:
            raise CliError(f"Jobs of kind {kind!r} take no files at once; give --count instead of --file.")
        field = self.file_field(kind)
        fields = {name: form_value(value) for name, value in params.items()}
        try:
            uploads = [(field, (path.name, path.read_bytes())) for path in files]
        except OSError as exc:
            raise CliError(f"Cannot read a file: {exc.strerror or exc}") from exc
        try:
            return self.request("POST", route, data=fields, files=uploads).json()
        except CliError as exc:
            raise self.start_error(kind, exc) from None

    def batch(self, batch_id: str) -> dict[str, Any]:
        return self.get_one(self.batch_path(batch_id), f"No job {batch_id}, nor a batch (or it is not yours).")

    def job_or_batch(self, some_id: str) -> tuple[str, dict[str, Any]]:
        """("job", job) or ("batch", batch): the commands that take an id take either."""
        try:
            return "job", self.job(some_id)
        except CliError as exc:
            if not exc.message.startswith("No job"):
                raise
        return "batch", self.batch(some_id)

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return self.request("POST", self.batch_path(batch_id) + "cancel/").json()

    def download_batch(self, batch_id: str) -> tuple[str, Iterator[bytes], httpx.Response]:
        response = self.request("GET", self.batch_path(batch_id) + "download/", stream=True)
        return attachment_name(response, "batch.zip"), response.iter_bytes(), response


def attachment_name(response: httpx.Response, fallback: str) -> str:
    """The file name the server gave the download (a plain name, never a path)."""
    found = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', response.headers.get("content-disposition", ""))
    return (Path(found.group(1)).name if found else "") or fallback


def form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
