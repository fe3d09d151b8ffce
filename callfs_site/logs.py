"""Logging: the request id on every line, and a JSON formatter for CALLFS_LOG_FORMAT=json."""

from __future__ import annotations

import logging
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

# The id of the request this thread is serving, for log lines written deep in the services.
request_id: ContextVar[str] = ContextVar("callfs_request_id", default="")


class RequestContextFilter(logging.Filter):
    """Give every record a `request_id` (the current request's, or '-')."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id.get() or "-"
        return True


class CallFSJsonFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, plus the record's extras
    (request_id, user, method, route, status, duration_ms, bytes_in, bytes_out)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level",
                                            "name": "logger"})
        kwargs.setdefault("timestamp", False)
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", *args, **kwargs)


def logging_config(log_format: str, level: str) -> dict:
    """The LOGGING setting for a format ('console' or 'json') and a level."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestContextFilter}},
        "formatters": {
            "console": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] "
                                  "%(message)s"},
            "json": {"()": CallFSJsonFormatter},
        },
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": log_format,
                                 "filters": ["request"]}},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            # Django logs every 4xx as a warning; callfs.request logs each request once.
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "ERROR"},
        },
    }
