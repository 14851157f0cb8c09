"""Operations: health and readiness checks, /metrics, request logs, JSON log lines, system checks,
and the process runner behind `manage.py runstack`. Never imports `basic.realtime` or `basic.api`."""
