"""`make run` starts an embedded Redis only when the deployment names none (issue 21: with only
REDIS_SENTINELS set it used to start one anyway, beside the Sentinel-managed master it used)."""
from basic.core import redis_target
from basic.management.commands.runstack import needs_embedded_redis


def test_an_embedded_redis_only_when_no_redis_is_named():
    sentinels = redis_target.parse_sentinels("10.0.0.1:26379,10.0.0.2:26379", "mymaster")
    assert needs_embedded_redis({}, redis_target.parse_sentinels("", "mymaster"))
    assert not needs_embedded_redis({"REDIS_URL": "redis://cache:6379/0"}, None)
    assert not needs_embedded_redis({}, sentinels)
