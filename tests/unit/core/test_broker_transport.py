"""Celery's Redis transports keep one redis-py client per channel (basic/core/broker_transport.py):
every message sent and taken on a real Redis still arrives and is acknowledged, with no client
built per command as kombu's own channel does, and the transport is the one settings give Celery."""
import uuid

import pytest
import redis
from django.conf import settings
from kombu import Connection, Exchange, Queue

from basic.core import broker_transport, redis_target


def test_redis_and_sentinel_urls_get_the_kept_client_transports_and_others_kombus_own():
    assert redis_target.broker_transport("redis://localhost:6379/0") == "basic.core.broker_transport:Transport"
    assert redis_target.broker_transport("sentinel://s1:26379/0;sentinel://s2:26379/0") == (
        "basic.core.broker_transport:SentinelTransport")
    assert redis_target.broker_transport("rediss://localhost:6380/0") is None  # TLS: kombu's, untouched
    assert redis_target.broker_transport("amqp://guest@localhost//") is None
    assert settings.CELERY_BROKER_TRANSPORT == redis_target.broker_transport(settings.CELERY_BROKER_URL)
    sentinel = Connection("sentinel://s1:26379/0", transport=redis_target.broker_transport("sentinel://s1:26379/0"))
    assert sentinel.get_transport_cls() is broker_transport.SentinelTransport


@pytest.fixture
def counted_clients(monkeypatch):
    """How many redis-py clients are built."""
    built = {"clients": 0}
    real_init = redis.Redis.__init__

    def init(self, *args, **kwargs):
        built["clients"] += 1
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", init)
    return built


def test_a_hundred_messages_sent_taken_and_acknowledged_build_no_client_each(counted_clients):
    name = f"kept-client-test-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    url = settings.CELERY_BROKER_URL
    with Connection(url, transport=redis_target.broker_transport(url)) as connection:
        assert isinstance(connection.default_channel, broker_transport.Channel)
        producer = connection.Producer()
        for n in range(100):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue])
        taken, tags = [], set()

        def on_message(body, message):
            taken.append(body["n"])
            tags.add(message.delivery_tag.encode())
            message.ack()

        with connection.Consumer(queue, callbacks=[on_message], accept=["json"]):
            while len(taken) < 100:
                connection.drain_events(timeout=5)
        assert sorted(taken) == list(range(100))
        channel = connection.default_channel
        assert channel.client.llen(name) == 0
        assert not tags & set(channel.client.hkeys(channel.unacked_key))  # all acknowledged
        queue(channel).delete()
    assert counted_clients["clients"] <= 3  # kombu's own channel built one per send and per take: 200+


def test_a_channel_whose_pool_is_replaced_gets_a_client_of_the_new_pool():
    url = settings.CELERY_BROKER_URL
    with Connection(url, transport=redis_target.broker_transport(url)) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as again:
            assert first is again and first.connection_pool is channel.pool
        channel._pool = None  # as kombu does when it drops its pools
        with channel.conn_or_acquire() as after:
            assert after is not first and after.connection_pool is channel.pool
            assert after.ping()


@pytest.fixture
def marked():
    """A connection through the project's transport, a queue of its own and the name of a key to
    set with its messages; both deleted afterwards."""
    name = f"with-message-test-{uuid.uuid4().hex}"
    url = settings.CELERY_BROKER_URL
    with Connection(url, transport=redis_target.broker_transport(url)) as connection:
        channel = connection.default_channel
        queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
        yield connection, channel, queue, f"{name}:marker"
        channel.client.delete(name, f"{name}:marker")
        queue(channel).delete()


def test_a_key_carried_by_a_message_is_set_with_it_and_the_message_arrives_without_it(marked):
    connection, channel, queue, key = marked
    headers = {"x-other": "kept", broker_transport.WITH_MESSAGE: [key, "queued", 300]}
    connection.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key=queue.name, declare=[queue],
                                  headers=headers)
    assert channel.client.get(key) == b"queued"
    assert 290 < channel.client.ttl(key) <= 300
    assert broker_transport.WITH_MESSAGE in headers  # not taken from the caller's dict: a retry sends it again
    connection.Producer().publish({"n": 2}, exchange=queue.exchange, routing_key=queue.name, declare=[queue])
    taken = []

    def on_message(body, message):
        taken.append((body["n"], dict(message.headers)))
        message.ack()

    with connection.Consumer(queue, callbacks=[on_message], accept=["json"]):
        while len(taken) < 2:
            connection.drain_events(timeout=5)
    assert taken == [(1, {"x-other": "kept"}), (2, {})]


def test_a_message_that_could_not_go_in_leaves_no_key(marked):
    connection, channel, queue, key = marked
    channel.client.set(queue.name, "not a list")  # the LPUSH fails (WRONGTYPE); MULTI would still SET
    with pytest.raises(redis.ResponseError):
        connection.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key=queue.name, declare=[queue],
                                      headers={broker_transport.WITH_MESSAGE: [key, "queued", 300]}, retry=False)
    assert channel.client.get(key) is None


def test_the_broker_holds_the_markers_only_when_it_is_redis_urls_redis():
    assert redis_target.broker_is_redis_url("", "redis://r:6379/0")  # unset: derived from REDIS_URL
    assert redis_target.broker_is_redis_url("redis://r:6379/0", "redis://r:6379/0")
    assert not redis_target.broker_is_redis_url("redis://other:6379/0", "redis://r:6379/0")
    assert not redis_target.broker_is_redis_url("redis://r:6379/1", "redis://r:6379/0")
