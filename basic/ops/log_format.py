"""The log line formats LOGGING (app/settings.py) picks with LOG_FORMAT; loaded by it, so this must
not import anything that reads settings.

LOG_FORMAT=json: one JSON object per line for every log record. Each line has `ts` (UTC, ISO 8601,
milliseconds), `level`, `logger` and `message`, then every field passed with
`logger.info("...", extra={...})`, then `exc` / `stack` when there is one. Values JSON can't hold
are written with str().

LOG_FORMAT=text (the default), for people: `time LEVEL logger: message`, then the same fields as
` name=value` (plain values only, and not those the message already says): `job started job=<id>
kind=… owner=…`. Without them a text log said which lines a job had, not which job.
"""
import json
import logging
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_RESERVED = ("ts", "level", "logger", "message", "exc", "stack")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """What `extra` put on the record."""
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD and not key.startswith("_")}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        said = record.getMessage()
        shown = [f"{key}={value}" for key, value in _fields(record).items()
                 if isinstance(value, str | int | float) and str(value) not in said]
        return " ".join([line, *shown]) if shown else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            entry[f"extra_{key}" if key in _RESERVED else key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(entry, default=str, ensure_ascii=False)
        except (TypeError, ValueError):  # e.g. a dict with non-string keys, or a circular value
            return json.dumps({k: v if isinstance(v, str | int | float | bool | None) else repr(v)
                               for k, v in entry.items()}, ensure_ascii=False)
