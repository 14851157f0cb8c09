"""Run every benchmark; each prints ratios against a baseline measured in the same run."""
from bench import bench_push, bench_socket_storm

if __name__ == "__main__":
    bench_push.main()
    bench_socket_storm.main()
