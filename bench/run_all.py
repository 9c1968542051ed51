"""Run every benchmark, one daemon each, and print a summary table.

Usage: ``python bench/run_all.py [--quick]`` (``--quick``: 2 s runs, 2,000 VMs
for the pool benchmark, 1,000 VMs on 100 hosts for the scheduler; for a smoke
test, not for figures). Other options go to each benchmark as in its own
``--help`` (e.g. ``--spy /tmp/spy``).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_ec2  # noqa: E402
import bench_load  # noqa: E402
import bench_realvm  # noqa: E402
import bench_s3  # noqa: E402
import bench_scheduler  # noqa: E402
import bench_vm_info  # noqa: E402
import bench_vmpool_info  # noqa: E402
import common  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    args, rest = parser.parse_known_args(argv)
    rows = []
    started = time.monotonic()
    benches = [
        ("bench_vm_info", bench_vm_info, ["--seconds", "2"] if args.quick else []),
        ("bench_vmpool_info", bench_vmpool_info,
         ["--vms", "2000", "--repeat", "3"] if args.quick else []),
        ("bench_load", bench_load,
         ["--vms", "2000", "--seconds", "4"] if args.quick else []),
        ("bench_scheduler", bench_scheduler,
         ["--hosts", "100", "--vms", "1000"] if args.quick else []),
        ("bench_ec2", bench_ec2,
         ["--instances", "300", "--seconds", "2", "--runs", "100"] if args.quick else []),
        ("bench_s3", bench_s3,
         ["--objects", "1000", "--large-mib", "128", "--moto-large-mib", "64"]
         if args.quick else []),
        # real VMs on the lab (tests/hvlab.py); prints a skip and adds one row without it
        ("bench_realvm", bench_realvm,
         ["--runs", "2", "--migrations", "2", "--clone-mib", "256"] if args.quick else []),
    ]
    for name, module, extra in benches:
        print(f"=== {name}")
        t0 = time.monotonic()
        rows += module.run(extra + rest)
        print(f"({name}: {time.monotonic() - t0:.0f} s)\n")
    print(f"=== summary ({common.machine_note()}; {time.monotonic() - started:.0f} s in all)")
    print(common.table(("figure", "measured", "target"), rows))


if __name__ == "__main__":
    main()
