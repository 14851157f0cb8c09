from tests.live import stack_root  # noqa: F401  (fixture)
