"""The REST API and the browser console: views, serializers, errors, pagination, the OpenAPI schema.
Never imports `basic.realtime` or `basic.ops`."""
