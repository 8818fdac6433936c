"""Throughput and loss against the number of publishers: mqtt_proxy on h1 and h4 against two
Mosquittos bridged over TCP, flat out.

Scenario: the reference tree (depth 2, fanout 2), the servers on h1 and h4 exactly as
bench/compare.py runs them (its systems(): the proxies with the README's launch line and default
options, peered; Mosquitto on h1 and h4 with compare.py's configuration, h4 bridged to h1, the
bridge checked to carry messages both ways before the run). N publisher connections (one
build/bench/mosq_pub process on h3 with --clients N, connected to h4) publish as fast as
libmosquitto lets them: a new PUBLISH whenever the library has written the last one, for
--seconds; one subscriber (build/bench/loadgen) on h2 connected to h1 receives. The run itself is
compare.py's Bench.scenario, so the figures mean what they mean in docs/benchmarks.md:
msgs_per_s is what the subscriber received divided by --seconds, loss_pct the share of what the
publishers' application published that never arrived.
"""

import argparse

import harness
from harness import testbed

H1 = testbed.host_ip(1)
PUBLISHERS, QUICK_PUBLISHERS = [1, 2, 4, 8], [1, 2]
SECONDS, QUICK_SECONDS = 5.0, 2.0
LABELS = {"mqtt_proxy": "edge proxies", "mosquitto": "bridged mosquitto"}


def compare_module():
    import compare  # pylint: disable=import-outside-toplevel  (bench/compare.py)
    return compare


class Throughput(harness.Experiment):
    name = "throughput"
    columns = ["sent", "delivered", "msgs_per_s", "sent_per_s", "loss_pct", "p50_ms", "p99_ms",
               "cpu_s_per_10k", "switch_cpu_per_10k", "client_cpu_per_10k",
               "switch_frames_per_msg", "peak_rss_kib"]
    metrics = ["msgs_per_s", "loss_pct", "p50_ms", "p99_ms", "cpu_s_per_10k"]

    def __init__(self):
        self.bench = None
        self.factories = {}

    def points(self, args):
        counts = args.points or (QUICK_PUBLISHERS if args.quick else PUBLISHERS)
        return [harness.Point({"publishers": int(n)}, "publishers=%d" % n,
                              {"depth": 2, "fanout": 2})
                for n in counts]

    def systems(self, args):
        self.factories = dict(compare_module().systems(args.proxy_extra))
        return [(name, LABELS.get(name, name)) for name in self.factories]

    def seconds(self, args):
        return args.seconds or (QUICK_SECONDS if args.quick else SECONDS)

    def config(self, args):
        compare = compare_module()
        return {"topology": "tree depth 2 fanout 2 (h1,h2 on s2; h3,h4 on s3)",
                "depth": 2, "fanout": 2, "host_delay_ms": 0, "switch_delay_ms": 0,
                "rate_msgs_per_s": 0, "rate": "flat out (mosq_pub --rate 0)",
                "seconds_per_run": self.seconds(args), "payload_bytes": 64,
                "publishers": [p.values["publishers"] for p in self.points(args)],
                "scenario": "publishers: one mosq_pub on h3 with N connections to h4; one "
                            "loadgen subscriber on h2 connected to h1",
                "mosquitto_config": compare.MOSQUITTO,
                "mosquitto_bridge": "h4 bridged to h1, topic bench/# both 0 (bench/common.py "
                                    "MosquittoSystem)",
                "proxy_options": args.proxy_extra or "defaults"}

    def prepare(self, tb, args):
        # compare.Bench widens the client hosts' port range; its scenario() is the run.
        self.bench = compare_module().Bench(tb, argparse.Namespace(loadgen=args.loadgen,
                                                                   publisher=args.publisher))

    def measure(self, tb, system_key, point, rep, args, workdir):
        n = point.values["publishers"]
        seconds = self.seconds(args)
        topic = "bench/exp/throughput/%d/%d" % (n, rep)
        system = self.factories[system_key](tb, workdir)
        try:
            with harness.RunProcesses(tb):
                fig = self.bench.scenario(system, topic, 0, n, [("h2", H1, 1)], seconds)
        finally:
            system.stop()
        return {
            "sent": fig["sent"], "delivered": fig["delivered"], "msgs_per_s": fig["msgs_per_s"],
            "sent_per_s": fig["sent"] / seconds, "loss_pct": fig["loss_pct"],
            "p50_ms": fig["p50_us"] / 1000.0, "p99_ms": fig["p99_us"] / 1000.0,
            "cpu_s_per_10k": fig["cpu_s_per_10k"],
            "switch_cpu_per_10k": fig["switch_cpu_per_10k"],
            "client_cpu_per_10k": fig["client_cpu_per_10k"],
            "switch_frames_per_msg": fig["switch_frames_per_msg"],
            "peak_rss_kib": fig["peak_rss_kib"],
        }

    def check(self, row):
        return None if row["delivered"] else "nothing delivered (%d sent)" % row["sent"]

    def describe(self, row):
        return ("%d of %d delivered: %.0f msgs/s, loss %.2f%%, p99 %.1f ms"
                % (row["delivered"], row["sent"], row["msgs_per_s"], row["loss_pct"],
                   row["p99_ms"]))

    def plot(self, plt, summary, args, path):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        colors = {"mqtt_proxy": "tab:orange", "mosquitto": "tab:blue"}
        for ax, metric, ylabel in ((axes[0], "msgs_per_s", "delivered msgs/s"),
                                   (axes[1], "loss_pct", "loss (%)")):
            for key, label in self.systems(args):
                xs, med, lo, hi = harness.series(summary, "publishers", key, metric)
                if xs:
                    ax.errorbar(xs, med, yerr=[lo, hi], fmt="o-",
                                color=colors.get(key), capsize=3, label=label)
            counts = sorted({r["publishers"] for r in summary})
            ax.set_xscale("log", base=2)
            ax.set_xticks(counts)
            ax.set_xticklabels([str(c) for c in counts])
            ax.set_xlabel("publisher connections (flat out)")
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("Throughput and loss against publishers (median of %d run%s, bars: min-max)"
                     % (args.reps, "" if args.reps == 1 else "s"), fontsize=10)
        fig.savefig(path, dpi=120, bbox_inches="tight")

    def print_summary(self, summary):
        harness.print_table(summary, "publishers", [("msgs_per_s", "%.0f"), ("loss_pct", "%.2f"),
                                                    ("p99_ms", "%.1f")],
                            [(k, LABELS.get(k, k)) for k in self.factories])
