"""Cached page fetch: the worker fetches a public web page (never one inside our own network) and
keeps its body in Redis for PAGE_CACHE_TTL_SECONDS; a URL its owner fetched recently completes at
once (each user has their own cache entries, so nobody learns what others fetched)."""
import html
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from redis import RedisError
from rest_framework import serializers

from basic.core import fetch as safe_fetch
from basic.core.keys import page_cache_key
from basic.core.outside_text import outside_text
from basic.core.redis_clients import sync_redis
from basic.jobs.kind_api import JobContext, JobFailed, JobKind, JobRetryable, register

logger = logging.getLogger(__name__)

NAME = "page_fetch"
# Found in two bounded steps, the opening tag then the first closing one after it: one pattern
# "<title[^>]*>(.*?)</title>" retried its scan to the end from every "<title" of a page made of
# them (7 s of a worker for 64 kB, with gevent's other jobs stalled).
TITLE_OPEN = re.compile(rb"<title(?:[\s/][^>]{0,1000})?>", re.IGNORECASE)
TITLE_CLOSE = re.compile(rb"</title[\s/>]", re.IGNORECASE)
CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]{1,40})", re.IGNORECASE)
TITLE_MAX, TITLE_SCAN = 300, 65536
TEXT_MAX = 200  # content type, and the bound of the other short texts of a page's result
EXTENSIONS = {"text/html": "html", "application/json": "json", "text/plain": "txt", "application/xml": "xml",
              "text/xml": "xml", "application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg"}


def allowed_hosts() -> frozenset[str]:
    return frozenset(host.lower() for host in settings.PAGE_FETCH_ALLOWED_HOSTS)


class PageFetchParams(serializers.Serializer):
    url = serializers.CharField(max_length=2048, label="URL", help_text="An http(s) URL of a public web page.")
    refresh = serializers.BooleanField(default=False, help_text="Fetch again even if the page is cached.")

    def validate_url(self, value: str) -> str:
        try:
            return safe_fetch.check_url(value.strip(), allowed_hosts=allowed_hosts())
        except safe_fetch.FetchRefused as exc:
            raise serializers.ValidationError(str(exc)) from exc


def page_title(body: bytes, content_type: str) -> str:
    """The page's <title> as one clean line (outside_text): in the charset the page declares if
    that is a real text encoding, else UTF-8; entities decoded; at most TITLE_MAX characters."""
    if "html" not in content_type.lower():
        return ""
    head = body[:TITLE_SCAN]
    opening = TITLE_OPEN.search(head)
    if not opening:
        return ""
    closing = TITLE_CLOSE.search(head, opening.end())
    raw = head[opening.end():closing.start() if closing else len(head)][: 8 * TITLE_MAX]
    charset = CHARSET.search(content_type)
    text = outside_text(raw, limit=8 * TITLE_MAX, charset=charset.group(1) if charset else None)
    return outside_text(html.unescape(text), limit=TITLE_MAX)  # an entity (&#27;) may spell a control


def clean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A page's description with every text from the page or its server cleaned: at the fetch, and
    again for a cache entry (one stored before this cleaning existed is served clean too)."""
    return {
        **meta,
        "url": outside_text(meta.get("url"), limit=2048),
        "final_url": outside_text(meta.get("final_url"), limit=2048),
        "content_type": outside_text(meta.get("content_type"), limit=TEXT_MAX),
        "title": outside_text(meta.get("title"), limit=TITLE_MAX),
    }


def _cached(key: str) -> tuple[bytes, dict[str, Any]] | None:
    """The cached page, if any. The cache is a shortcut: if Redis can't answer (down, failing over),
    the page is fetched instead of failing the job."""
    try:
        stored = sync_redis().hmget(key, "body", "meta")
    except RedisError as exc:
        logger.warning("page cache not read: %s", exc)
        return None
    if stored[0] is None or stored[1] is None:
        return None
    try:
        meta = json.loads(stored[1])
    except ValueError:  # not ours (or damaged): fetch again
        return None
    return (stored[0], clean_meta(meta)) if isinstance(meta, dict) else None


def _store(key: str, body: bytes, meta: dict[str, Any]) -> None:
    pipe = sync_redis().pipeline(transaction=True)
    pipe.delete(key)
    pipe.hset(key, mapping={"body": body, "meta": json.dumps(meta)})
    pipe.expire(key, settings.PAGE_CACHE_TTL_SECONDS)
    try:
        pipe.execute()
    except RedisError as exc:  # the page is the job's output either way; the next fetch caches it
        logger.warning("page cache not stored: %s", exc)


def _fetch(url: str) -> tuple[bytes, dict[str, Any]]:
    try:
        page = safe_fetch.fetch_public(url, max_bytes=settings.PAGE_FETCH_MAX_BYTES,
                                       timeout=settings.PAGE_FETCH_TIMEOUT_SECONDS,
                                       allowed_hosts=allowed_hosts())
    except safe_fetch.FetchFailed as exc:  # a timeout or a refused connection is tried again (`retries`)
        raise (JobRetryable if exc.transient else JobFailed)(outside_text(str(exc), limit=2000)) from exc
    except safe_fetch.FetchRefused as exc:
        raise JobFailed(outside_text(str(exc), limit=2000)) from exc
    now = datetime.now(UTC)
    meta = clean_meta({
        "url": page.url, "final_url": page.final_url, "status_code": page.status_code,
        "content_type": page.content_type, "bytes": len(page.body),
        "title": page_title(page.body, page.content_type),
        "fetched_at": now.isoformat(timespec="seconds"),
        "expires_at": (now + timedelta(seconds=settings.PAGE_CACHE_TTL_SECONDS)).isoformat(timespec="seconds"),
    })
    return page.body, meta


def run(ctx: JobContext) -> dict[str, Any]:
    url = ctx.params["url"]
    key = page_cache_key(ctx.job.owner_id, url)  # each owner's own entry, in this deployment's namespace
    hit = None if ctx.params.get("refresh") else _cached(key)
    if hit is None:
        ctx.progress(0, 2, f"Fetching {url}", force=True)
        body, meta = _fetch(url)
        _store(key, body, meta)
        ctx.progress(1, 2, f"Fetched {meta['bytes']} bytes (HTTP {meta['status_code']})", force=True)
    else:
        body, meta = hit
    media = meta["content_type"].split(";")[0].strip().lower()
    ctx.output(f"page-{ctx.job_id}.{EXTENSIONS.get(media, 'bin')}").write_bytes(body)
    ctx.summary = f"{'Cached' if hit else 'Fetched'}: {meta['title'] or meta['final_url']}"
    return {**meta, "cached": hit is not None}


register(JobKind(
    name=NAME,
    label="Page fetch",
    description="Fetch a public web page through the Redis cache.",
    params=PageFetchParams,
    run=run,
    media_type=None,  # each result names its page's content type
    route="pages",
    retries=2,  # a timeout or a refused connection: tried again after ~2 s, then ~4 s
    retry_backoff=2.0,
    time_limit=300,
))
