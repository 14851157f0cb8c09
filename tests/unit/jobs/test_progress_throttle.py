from basic.jobs.publish import ProgressThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_update_passes_then_waits_for_interval():
    clock = FakeClock()
    throttle = ProgressThrottle(min_interval=0.1, clock=clock)
    assert throttle.should_send(1)
    clock.now += 0.05
    assert not throttle.should_send(2)
    clock.now += 0.06
    assert throttle.should_send(3)


def test_same_percent_is_not_resent_even_after_interval():
    clock = FakeClock()
    throttle = ProgressThrottle(min_interval=0.1, clock=clock)
    assert throttle.should_send(5)
    clock.now += 10
    assert not throttle.should_send(5)
    assert throttle.should_send(6)


def test_at_most_ten_a_second_under_a_flood():
    clock = FakeClock()
    throttle = ProgressThrottle(min_interval=0.1, clock=clock)
    sent = 0
    for step in range(10_000):  # 10,000 updates over one simulated second
        clock.now = 100.0 + step / 10_000
        sent += throttle.should_send(step // 100)
    assert 9 <= sent <= 11
