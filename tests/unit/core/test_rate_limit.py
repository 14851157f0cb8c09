from basic.core.rate_limit import TokenBucket


def test_burst_then_refill():
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert all(bucket.allow() for _ in range(5))
    assert not bucket.allow()
    now[0] += 0.1
    assert bucket.allow()
    assert not bucket.allow()
    now[0] += 100
    assert sum(bucket.allow() for _ in range(100)) == 5
