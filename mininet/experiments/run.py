#!/usr/bin/python3
"""Runs one experiment of docs/experiments.md in the Mininet testbed and writes its CSVs, plot
and configuration: latency (against link delay), load (frames against tree size), throughput
(against publishers), receivers (a publisher's cost against receiving proxies), or all four.

  mininet/experiments/run.sh NAME [--reps N] [--quick] [--out DIR] [options]

Every point is measured --reps times (3) per system; --quick is one repetition of few, short
points, what CI runs. The output directory (results/NAME-<timestamp>/ under the repository unless
--out) gets runs.csv (a row per run), summary.csv (median, min and max per point, system and
figure), NAME.png and config.json (everything needed to run it again and what it ran on).
Exit status 0 when every run succeeded, 1 otherwise (the failed runs are rows with an error), 77
when it cannot run here at all (not root, no Mininet or Open vSwitch), as the Mininet suites do.

run.sh holds the testbed's lock, /tmp/mqtt_proxy_mininet.lock, for the whole experiment, so that
it never shares the switches' names or the CPUs with a test suite. This script takes no lock:
call it directly only from something that holds the lock already (CI, under .ci/run), where
run.sh would wait for itself.
"""

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NAMES = ["latency", "load", "throughput", "receivers"]
SKIP = 77


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="run.sh", description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=NAMES + ["all"])
    ap.add_argument("--reps", type=int, default=None,
                    help="repetitions of every point and system (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="one repetition, few points, a few seconds each (for CI)")
    ap.add_argument("--out", help="output directory (default results/NAME-<timestamp>/; with "
                                  "`all`, one subdirectory per experiment)")
    ap.add_argument("--points", type=float, nargs="+", metavar="X",
                    help="the x values instead of the default ones: delays in ms (latency), "
                         "fanouts (load), publisher counts (throughput), receiving proxies "
                         "(receivers)")
    ap.add_argument("--seconds", type=float, help="publishing time per run (default: the "
                                                  "experiment's, shorter with --quick)")
    ap.add_argument("--rate", type=float,
                    help="msgs/s of the publisher (latency: 50, fewer at long delays; load: 100)")
    ap.add_argument("--switch-delay", type=float, default=0, metavar="MS",
                    help="latency: one-way delay of the switch-to-switch links too")
    ap.add_argument("--mosquitto-nagle", action="store_true",
                    help="latency, load, receivers: Mosquitto keeps Nagle's algorithm on (its "
                         "default; off otherwise, see latency.py)")
    ap.add_argument("--modes", nargs="+", metavar="MODE",
                    help="load, receivers: the modes to measure (broker, unicast, multicast)")
    ap.add_argument("--proxy-extra", nargs="*", default=[], metavar="OPTION",
                    help="throughput: options for the proxies beside -F")
    ap.add_argument("--replot", metavar="DIR",
                    help="only draw NAME.png again from DIR/summary.csv (no testbed, no root)")
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "mqtt_proxy"))
    ap.add_argument("--loadgen", default=os.path.join(REPO, "build", "bench", "loadgen"))
    ap.add_argument("--publisher", default=os.path.join(REPO, "build", "bench", "mosq_pub"))
    args = ap.parse_args(argv)
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    if args.replot and args.name == "all":
        ap.error("--replot needs an experiment's name")
    if args.points and args.name == "all":
        ap.error("--points means something else for each experiment: name one")
    if args.points:
        args.points = [int(p) if p == int(p) else p for p in args.points]
    return args


def can_run():
    """None, or why the experiments cannot run on this machine at all (a skip, not a failure)."""
    if os.geteuid() != 0:
        return "needs root (Mininet, capture, iptables)"
    if importlib.util.find_spec("mininet") is None:
        return "Mininet is not installed (scripts/setup.sh; it imports only in /usr/bin/python3)"
    for tool in ("ovs-vsctl", "ovs-ofctl", "mosquitto", "mosquitto_pub", "ping"):
        if shutil.which(tool) is None:
            return "%s is missing (scripts/setup.sh)" % tool
    return None


def stop_on_signals():
    """SIGINT and SIGTERM end the experiment as Ctrl-C does, through every finally block and so
    through the testbed's stop(). Without this, SIGTERM ends Python on the spot and leaves the
    switches, proxies and delay elements behind, and a shell starts a background job with SIGINT
    ignored."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def replot(args):
    """Draws an experiment's plot again from its summary.csv, with the repetitions its
    config.json records."""
    import harness  # pylint: disable=import-outside-toplevel
    experiment = experiments()[args.name]()
    with open(os.path.join(args.replot, "config.json")) as f:
        config = json.load(f)
    args.reps = config["repetitions"]
    if args.name in ("load", "receivers"):
        args.modes = [s["key"] for s in config["systems"]]
    experiment.systems(args)
    plt = harness.pyplot()
    if plt is None:
        print("experiments: python3-matplotlib is not installed", file=sys.stderr)
        return 1
    path = os.path.join(args.replot, "%s.png" % args.name)
    experiment.plot(plt, harness.read_summary(os.path.join(args.replot, "summary.csv")), args,
                    path)
    print("plot: %s" % path)
    return 0


def experiments():
    """The experiments by name. Importing them imports Mininet: only once it is known to be
    there."""
    import latency  # pylint: disable=import-outside-toplevel
    import load  # pylint: disable=import-outside-toplevel
    import receivers  # pylint: disable=import-outside-toplevel
    import throughput  # pylint: disable=import-outside-toplevel
    return {"latency": latency.Latency, "load": load.Load, "throughput": throughput.Throughput,
            "receivers": receivers.Receivers}


def main(argv):
    args = parse_args(argv)
    stop_on_signals()
    if args.replot:
        return replot(args)
    why = can_run()
    if why:
        print("experiments: skipped: %s" % why, file=sys.stderr)
        return SKIP
    import harness  # pylint: disable=import-outside-toplevel
    harness.require_built(args)
    names = NAMES if args.name == "all" else [args.name]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    failed = 0
    for name in names:
        if args.out:
            out = os.path.join(args.out, name) if args.name == "all" else args.out
        else:
            out = os.path.join(REPO, "results", "%s-%s" % (name, stamp))
        out = os.path.abspath(out)
        print("=== %s -> %s" % (name, out), flush=True)
        failed += harness.run(experiments()[name](), args, out)
    if failed:
        print("%d run(s) failed: see the error column of runs.csv" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
