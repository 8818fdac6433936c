"""What the experiments share: the plan of runs, the output directory (CSV of every run, CSV of the
summary, config.json, the plot), the testbed with its emulated delays, and a few measurements.

An experiment (latency.py, load.py, throughput.py) says which points it measures, which systems,
how to start a system and how to measure one run; run() here does the rest, the same way for all,
so every figure in docs/experiments.md comes out of one command and can be reproduced from its
config.json.

Importing it puts mininet/ and bench/ on sys.path: the experiments reuse the testbed, the processes
and the load generators of the benchmarks instead of carrying copies. Runs only under Debian's
/usr/bin/python3, as root.
"""

import csv
import datetime
import inspect
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "mininet"))

import common  # noqa: E402  pylint: disable=wrong-import-position  (bench/common.py)
import testbed  # noqa: E402  pylint: disable=wrong-import-position



class Point:
    """One x value of an experiment: `values` go into the CSV columns, `label` into the progress
    line, `testbed` are the Testbed arguments it needs (points that need the same testbed share
    one, so it is built once for all their runs)."""

    def __init__(self, values, label, testbed_args):
        self.values = values
        self.label = label
        self.testbed = testbed_args


class Experiment:
    """The hooks run() calls; an experiment overrides what it needs.

    name, columns (the figures of a run, CSV columns after the point's), metrics (those
    summarised), points(args) and systems(args) (pairs of CSV key and label) describe it;
    measure() does one run and returns its figures."""

    name = ""
    columns = []
    metrics = []

    def points(self, args):
        raise NotImplementedError

    def systems(self, args):
        raise NotImplementedError

    def config(self, args):
        """What config.json records of this experiment beside what every one records."""
        return {}

    def prepare(self, tb, args):
        """Once per testbed, before its first run."""

    def at_point(self, tb, point, args):
        """Once per point, before its runs; returns figures to add to each of its rows."""
        return {}

    def measure(self, tb, system, point, rep, args, workdir):
        raise NotImplementedError

    def check(self, row):
        """Why a run's figures mean nothing (nothing arrived, say), or None. Such a run counts as
        failed: a quick run in CI then fails instead of plotting zeros."""
        return None

    def describe(self, row):
        """One line on the terminal after a run."""
        return ", ".join("%s=%s" % (c, fmt(row[c])) for c in self.metrics if c in row)

    def plot(self, plt, summary, args, path):
        raise NotImplementedError

    def print_summary(self, summary):
        pass


class RunProcesses:
    """The processes started in the testbed during one run, killed at its end if still running:
    a run that failed halfway must not leave a client behind to disturb the next."""

    def __init__(self, tb):
        self.tb = tb

    def __enter__(self):
        self.first = len(self.tb.processes)
        return self

    def __exit__(self, *exc):
        for p in self.tb.processes[self.first:]:
            if p.poll() is None:
                p.kill()
                p.wait()


# -- the testbed and its delays ------------------------------------------------------------------

# The controllers a point's testbed may name (its `controller`): the app and its options. The
# MQTT2MULTICAST app's trees need the topology app's links (--observe-links); its L2 forwarding
# is its default (shortest path).
CONTROLLERS = {"m2m": (testbed.M2M_CONTROLLER_APP, ["--observe-links"])}


def make_testbed(artifacts, proxy, depth=2, fanout=2, host_delay_ms=0, switch_delay_ms=0,
                 controller=None, tree=None):
    """A testbed.Testbed with the delays asked for, under the project's learning switch or a
    controller of CONTROLLERS, a uniform tree or `tree` (fanouts per level, "3x3x2"). A testbed
    that cannot emulate delays (no host_delay_ms argument) is used for delay 0 only: a figure
    labelled "50 ms" measured without the delay would be wrong without anything showing it."""
    kwargs = dict(depth=depth, fanout=fanout, proxy_binary=proxy)
    if tree:
        kwargs["fanouts"] = [int(f) for f in tree.split("x")]
    if controller:
        kwargs["controller_app"], args = CONTROLLERS[controller]
        kwargs["controller_args"] = list(args)
    params = inspect.signature(testbed.Testbed.__init__).parameters
    if "host_delay_ms" in params:
        kwargs.update(host_delay_ms=host_delay_ms, switch_delay_ms=switch_delay_ms)
    elif host_delay_ms or switch_delay_ms:
        raise RuntimeError("mininet/testbed.py cannot emulate link delays yet (no host_delay_ms); "
                           "only delay 0 can run")
    return testbed.Testbed(artifacts, **kwargs)


def delay_mode(tb):
    """How the testbed emulates delays ("none", "netem" or "nfqueue"); "none" for a testbed that
    predates delay emulation."""
    return getattr(tb, "delay_mode", "none")


def check_delay(tb, host_delay_ms, switch_delay_ms):
    if (host_delay_ms or switch_delay_ms) and delay_mode(tb) == "none":
        raise RuntimeError("delay %s/%s ms asked for, but the testbed emulates none"
                           % (host_delay_ms, switch_delay_ms))


def one_way_ms(tb, src, dst_ip, count=10, interval=0.2):
    """Half the median ping round trip from host `src` to `dst_ip`, ms: what the network alone
    takes one way, the floor under any latency measured over that leg (emulated delays included,
    since the pings cross them like any other packet). -U: the round trip as ping itself sees
    it; without it ping takes the kernel's receive timestamp, which the delay element's ingress
    hold comes after (docs/testbed-delay.md)."""
    _, out, err = tb.run(src, ["ping", "-U", "-n", "-c", str(count), "-i", str(interval), "-W",
                               "10", dst_ip], timeout=count * interval + 30)
    rtts = [float(w.split("=")[1]) for w in out.split() if w.startswith("time=")]
    if not rtts:
        raise RuntimeError("ping %s -> %s: no replies (%s %s)" % (src, dst_ip, out, err))
    return statistics.median(rtts) / 2


# -- the switches ---------------------------------------------------------------------------------

def switch_port_counters(tb):
    """{switch: (frames received, frames sent)} over the switch's ports (LOCAL left out), from the
    switches' own port statistics (OpenFlow port stats).

    Frames received by the switches' ports count every frame once per switch it enters, which is
    the load the network carries (the prototype summed its flows' packet counters for the same
    figure). Sent frames also count the controller's packet-outs and floods."""
    out = {}
    for sw in tb.net.switches:
        res = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-ports", sw.name],
                             capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            raise RuntimeError("ovs-ofctl dump-ports %s: %s" % (sw.name, res.stderr))
        rx = tx = 0
        port = None
        for line in res.stdout.splitlines():
            line = line.strip()
            if line.startswith("port"):
                port = line.split(":")[0].split()[1]
                field = line.split(":", 1)[1].strip()
            else:
                field = line
            if port == "LOCAL":
                continue
            if field.startswith("rx pkts="):
                rx += int(field.split("=")[1].split(",")[0])
            elif field.startswith("tx pkts="):
                tx += int(field.split("=")[1].split(",")[0])
        out[sw.name] = (rx, tx)
    return out


# -- the output directory -------------------------------------------------------------------------

def git_commit():
    """The commit the tree is at, with "-dirty" when it has changes: a figure from a dirty tree
    says so in its config.json."""
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (rev or "unknown") + ("-dirty" if dirty else "")


def program_version(args):
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "unavailable (%s)" % e
    return (res.stdout + res.stderr).strip().splitlines()[0] if (res.stdout + res.stderr).strip() \
        else "unavailable"


def machine():
    """What the figures depend on besides the code: kernel, CPUs, memory, the switch and broker
    versions."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except OSError:
        mem_kib = 0
    return {
        "kernel": platform.release(),
        "os": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024.0 / 1024.0, 1),
        "python": platform.python_version(),
        "openvswitch": program_version(["ovs-vswitchd", "--version"]),
        "mosquitto": program_version(["mosquitto", "-h"]),
    }


class Output:
    """The experiment's directory: runs.csv grows by a row per run as it finishes (an interrupted
    experiment keeps what it measured), config.json is written first and completed at the end."""

    def __init__(self, path, name, columns):
        self.path = path
        self.name = name
        os.makedirs(path, exist_ok=True)
        self.columns = columns
        self.runs_path = os.path.join(path, "runs.csv")
        with open(self.runs_path, "w", newline="") as f:
            csv.writer(f).writerow(columns)

    def add_run(self, row):
        with open(self.runs_path, "a", newline="") as f:
            csv.writer(f).writerow([fmt(row.get(c, "")) for c in self.columns])

    def write_config(self, config):
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=False)
            f.write("\n")


def fmt(v):
    if isinstance(v, float):
        return "%.6g" % v
    return v


def summarise(rows, point_columns, metrics):
    """One summary row per point, system and metric: the number of runs that measured it, median,
    min and max. Runs that failed (an "error") are left out, and counted."""
    groups = {}
    for row in rows:
        key = tuple(row[c] for c in point_columns) + (row["system"],)
        groups.setdefault(key, []).append(row)
    out = []
    for key, group in groups.items():
        good = [r for r in group if not r.get("error")]
        for m in metrics:
            values = [r[m] for r in good if isinstance(r.get(m), (int, float))]
            out.append(dict(zip(point_columns + ["system"], key), metric=m, runs=len(values),
                            failed=len(group) - len(good),
                            median=statistics.median(values) if values else "",
                            min=min(values) if values else "",
                            max=max(values) if values else ""))
    return out


def write_summary(path, summary, point_columns):
    columns = point_columns + ["system", "metric", "runs", "failed", "median", "min", "max"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in summary:
            w.writerow([fmt(row[c]) for c in columns])


def read_summary(path):
    """summary.csv as write_summary() wrote it, numbers as numbers: the plot again from a run's
    directory without running it again (run.py --replot)."""
    def number(v):
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if f == int(f) else f

    with open(path, newline="") as f:
        return [{k: number(v) if k not in ("system", "metric") else v for k, v in row.items()}
                for row in csv.DictReader(f)]


def series(summary, x_column, system, metric):
    """(xs, medians, lower errors, upper errors) of one metric of one system, for errorbar()."""
    rows = sorted((r for r in summary if r["system"] == system and r["metric"] == metric
                   and r["runs"]), key=lambda r: r[x_column])
    xs = [r[x_column] for r in rows]
    med = [r["median"] for r in rows]
    return (xs, med, [m - r["min"] for m, r in zip(med, rows)],
            [r["max"] - m for m, r in zip(med, rows)])


def pyplot():
    """matplotlib's pyplot with the Agg backend (no display here), or None when python3-matplotlib
    is missing: the CSVs are the result, the plot is a view of them."""
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
        return plt
    except ImportError:
        return None


# -- the runner -----------------------------------------------------------------------------------

def run(experiment, args, out_dir):
    """Runs every point of `experiment` args.reps times for each of its systems, writing into
    out_dir; returns the number of runs that failed.

    Order: points sharing a testbed are measured on one testbed; within a point every repetition
    measures all systems one after the other, so a slow phase of the machine hits them alike
    instead of one system's whole series."""
    points = experiment.points(args)
    systems = experiment.systems(args)
    total = len(points) * len(systems) * args.reps
    point_columns = list(points[0].values)
    columns = point_columns + ["system", "rep"] + experiment.columns + ["seconds", "error"]
    output = Output(out_dir, experiment.name, columns)
    config = {
        "experiment": experiment.name,
        # As typed through run.sh (which runs run.py with the same arguments).
        "command": "mininet/experiments/run.sh " + shlex.join(sys.argv[1:]),
        "cwd": os.getcwd(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "proxy_binary": os.path.abspath(args.proxy),
        "proxy_version": program_version([args.proxy, "--version"]),
        "loadgen": os.path.abspath(args.loadgen),
        "publisher": os.path.abspath(args.publisher),
        "repetitions": args.reps,
        "quick": args.quick,
        "points": [p.values for p in points],
        "systems": [{"key": k, "label": label} for k, label in systems],
        "testbeds": [],
        "machine": machine(),
    }
    config.update(experiment.config(args))
    output.write_config(config)
    work = os.path.join(out_dir, "artifacts")
    rows = []
    failed = 0
    n = 0
    groups = []
    for p in points:
        if groups and groups[-1][0] == p.testbed:
            groups[-1][1].append(p)
        else:
            groups.append((p.testbed, [p]))
    for tb_args, group in groups:
        tag = "-".join("%s%s" % (k, v) for k, v in sorted(tb_args.items()))
        artifacts = os.path.join(work, tag)
        os.makedirs(artifacts, exist_ok=True)
        started = time.monotonic()
        tb = make_testbed(artifacts, args.proxy, **tb_args)
        try:
            try:
                tb.start()
                check_delay(tb, tb_args.get("host_delay_ms", 0),
                            tb_args.get("switch_delay_ms", 0))
                config["testbeds"].append(dict(tb_args, delay_mode=delay_mode(tb),
                                               start_seconds=round(time.monotonic() - started, 1)))
                output.write_config(config)
                experiment.prepare(tb, args)
            except Exception as e:  # pylint: disable=broad-except
                # No testbed, no runs on it: each is a failed row, and the other testbeds go on.
                traceback.print_exc()
                for p in group:
                    for rep in range(1, args.reps + 1):
                        for key, label in systems:
                            n += 1
                            failed += 1
                            row = dict(p.values, system=key, rep=rep,
                                       error="testbed: %s: %s" % (type(e).__name__, e))
                            print("[run %d/%d] %s: %s, %s, rep %d/%d: no testbed (%s)"
                                  % (n, total, experiment.name, p.label, label, rep, args.reps,
                                     row["error"]), flush=True)
                            output.add_run(row)
                            rows.append(row)
                continue
            for p in group:
                extra = experiment.at_point(tb, p, args) or {}
                for rep in range(1, args.reps + 1):
                    for key, label in systems:
                        n += 1
                        print("[run %d/%d] %s: %s, %s, rep %d/%d" % (n, total, experiment.name,
                                                                    p.label, label, rep, args.reps),
                              flush=True)
                        row = dict(p.values, system=key, rep=rep)
                        row.update(extra)
                        t0 = time.monotonic()
                        errors = []
                        try:
                            row.update(experiment.measure(tb, key, p, rep, args, artifacts))
                            problem = experiment.check(row)
                            if problem:
                                raise RuntimeError(problem)
                        except Exception as e:  # pylint: disable=broad-except
                            # One failed run must not cost the others: it is recorded, counted,
                            # and the exit status says so.
                            errors.append("%s: %s" % (type(e).__name__, e))
                            traceback.print_exc()
                        row["seconds"] = time.monotonic() - t0
                        try:
                            # The run's connections are gone before the next one starts.
                            common.wait_tcp_closed(tb, range(1, len(tb.net.hosts) + 1))
                        except RuntimeError as e:
                            errors.append(str(e))
                        if errors:
                            failed += 1
                            row["error"] = "; ".join(errors)
                            print("  failed: %s" % row["error"], flush=True)
                        else:
                            print("  " + experiment.describe(row), flush=True)
                        output.add_run(row)
                        rows.append(row)
        finally:
            tb.stop()
    summary = summarise(rows, point_columns, experiment.metrics)
    write_summary(os.path.join(out_dir, "summary.csv"), summary, point_columns)
    plt = pyplot()
    plot_path = os.path.join(out_dir, "%s.png" % experiment.name)
    if plt is None:
        print("plot: skipped (python3-matplotlib is not installed)")
        plot_path = None
    else:
        experiment.plot(plt, summary, args, plot_path)
        plt.close("all")
    config["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    config["runs"] = n
    config["failed_runs"] = failed
    output.write_config(config)
    experiment.print_summary(summary)
    print("runs: %s" % output.runs_path)
    print("summary: %s" % os.path.join(out_dir, "summary.csv"))
    if plot_path:
        print("plot: %s" % plot_path)
    print("config: %s" % os.path.join(out_dir, "config.json"))
    return failed


def print_table(summary, x_column, metrics, systems):
    """The medians (min-max) of `metrics` per point and system, for the terminal."""
    for m, fmt_ in metrics:
        print("%s (median, min-max):" % m)
        xs = sorted({r[x_column] for r in summary})
        for key, label in systems:
            cells = []
            for x in xs:
                for r in summary:
                    if r[x_column] == x and r["system"] == key and r["metric"] == m and r["runs"]:
                        cells.append("%s=%s: %s (%s-%s)" % (x_column, x, fmt_ % r["median"],
                                                             fmt_ % r["min"], fmt_ % r["max"]))
            print("  %-20s %s" % (label, "; ".join(cells)))


def require_built(args):
    """Exits with a message when a binary the runs measure is not built: better now than after
    the testbed came up."""
    missing = [path for path in (args.proxy, args.loadgen, args.publisher)
               if not os.access(path, os.X_OK)]
    if missing:
        sys.exit("experiments: %s not built (cmake --build build -j2)" % ", ".join(missing))
