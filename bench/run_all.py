"""Run every benchmark; each prints ratios against a baseline measured in the same run."""
import sys

from bench import bench_push, bench_report, bench_socket_storm

if __name__ == "__main__":
    bench_push.main()
    bench_socket_storm.main()
    sys.argv = sys.argv[:1] + ["200000"]  # a quicker size than its 1,000,000 default
    bench_report.main()
