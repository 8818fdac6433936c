#!/usr/bin/python3
"""The testbed as a command, with the prototype's options (its topo_mqtt_lora_VM_bridged.py):

  sudo /usr/bin/python3 mininet/topo.py [-f N]... [-d DELAY] [-D DELAY] [-r IFACE -R NODE]
                                        [-v] [-P] [-g | -G | --proxies h1,h4]
                                        [--controller own|m2m|remote:IP:PORT] [--batch CMDS]

A tree of Open vSwitch switches (userspace datapath) with hosts h<i> = 192.168.1.(100+i)/24 at its
leaves, ending in the Mininet CLI, where `pingall`, `xterm h1` and `h2 mosquitto_sub ...` work.
At exit everything it started is stopped by PID and the network is removed with net.stop(); no
`mn -c`.

  -f N      fanout of a level, repeatable, from the root; the last is the number of hosts per edge
            switch (default 2 2: s1 -> s2, s3 -> h1 h2, h3 h4)
  -d DELAY  one-way delay of every host link (20ms, 0.5s, or a number of ms)
  -D DELAY  one-way delay of every switch-to-switch link
  -r IFACE -R NODE  move a real interface into host hX (given 192.168.2.(100+X)/24 unless
            --real-address says otherwise; hX routes between the two networks) or onto switch sX
  -v        verbose (Mininet's info output, and the topology)
  -P        a pcap of every host's interface in the log directory
  -g        h1 is a central broker (mqtt_proxy without peers); every even host runs a subscriber
            and a publisher against it
  -G        a proxy on every odd host, all peered with each other; every even host subscribes and
            publishes through the proxy before it
  --proxies h1,h4  proxies on these hosts, each naming every other one as a peer
  --controller own|m2m|remote:IP:PORT  the project's learning switch (started here); the
            project's MQTT2MULTICAST app (started here, with --observe-links and --m2m-opts), under
            which the proxies of -G and --proxies use the multicast mode (-s 192.168.1.100 -S 11883
            -C 11882, as the prototype's mqtt_proxy_m2m.sh) instead of -F peers; or an OpenFlow
            controller you started yourself (an os-ken/Ryu app)
  --m2m-opts OPTS  with --controller m2m: the app's options, e.g. "--m2m-mode learning"
            (docs/mqtt2multicast.md)
  --batch CMDS  run these CLI commands (separated by ';') instead of the interactive CLI, then exit

Delays use netem where the kernel has it, and otherwise the project's NFQUEUE delay element
(build/mqtt_proxy_delay): it says which.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    import testbed
    from mininet.cli import CLI
    from mininet.log import setLogLevel
except ImportError as _e:  # Mininet imports only in Debian's /usr/bin/python3: main() says so
    testbed = None
    IMPORT_ERROR = str(_e)
PUBLISH_PERIOD_S = 2  # the prototype's start_mqtt_publisher.sh TIMEPERIOD


class Parser(argparse.ArgumentParser):
    """A bad option is one line and exit status 2 (argparse prints the usage too)."""

    def error(self, message):
        self.exit(2, "%s: error: %s\n" % (self.prog, message))


def delay_ms(text):
    """20ms, 0.5s, 1000us or a plain number of milliseconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(us|ms|s)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError("%r is not a delay (examples: 20ms, 0.5s, 10)" % text)
    value = float(m.group(1))
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, None: 1.0}[m.group(2)]


M2M = "m2m"


def controller_arg(text):
    if text == "own":
        return None
    if text == M2M:
        return M2M
    m = re.fullmatch(r"remote:([0-9.]+):([0-9]+)", text)
    if not m:
        raise argparse.ArgumentTypeError("%r: use own, m2m or remote:IP:PORT" % text)
    return (m.group(1), int(m.group(2)))


def parse_args(argv):
    p = Parser(prog="topo.py", description=__doc__.splitlines()[0],
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", dest="fanouts", type=int, action="append", metavar="N",
                   help="fanout of a level, repeatable (default 2 2)")
    p.add_argument("-d", dest="host_delay", type=delay_ms, default=0.0, metavar="DELAY",
                   help="one-way delay of host links")
    p.add_argument("-D", dest="switch_delay", type=delay_ms, default=0.0, metavar="DELAY",
                   help="one-way delay of switch-to-switch links")
    p.add_argument("-r", dest="real_iface", metavar="IFACE", help="a real interface to attach")
    p.add_argument("-R", dest="real_node", metavar="NODE", help="the host or switch it goes to")
    p.add_argument("--real-address", metavar="CIDR",
                   help="its address in host hX (default 192.168.2.(100+X)/24)")
    p.add_argument("-v", dest="verbose", action="store_true", help="verbose")
    p.add_argument("-P", dest="pcap", action="store_true", help="a pcap of every host")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-g", dest="central", action="store_true",
                      help="h1 as a central broker, clients on the even hosts")
    mode.add_argument("-G", dest="edge", action="store_true",
                      help="proxies on the odd hosts, clients on the even hosts")
    mode.add_argument("--proxies", metavar="HOSTS", help="proxies on these hosts, e.g. h1,h4")
    p.add_argument("--controller", type=controller_arg, default=None,
                   metavar="own|m2m|remote:IP:PORT", help="OpenFlow controller (default own)")
    p.add_argument("--m2m-opts", default="", metavar="OPTS",
                   help="with --controller m2m: options of the MQTT2MULTICAST app")
    p.add_argument("--batch", metavar="CMDS", help="CLI commands separated by ';', then exit")
    p.add_argument("--proxy", default=None, help="the mqtt_proxy binary (default build/mqtt_proxy)")
    p.add_argument("--proxy-args", default="", metavar="ARGS",
                   help="more options for every proxy started (-g, -G, --proxies)")
    p.add_argument("--publish-count", type=int, default=300, metavar="N",
                   help="messages each -g/-G publisher sends, one every %d s" % PUBLISH_PERIOD_S)
    p.add_argument("--logs", default=None, help="log directory (default: a new one in /tmp)")
    args = p.parse_args(argv)
    args.fanouts = args.fanouts or [2, 2]
    if min(args.fanouts) < 1:
        p.error("-f: a fanout must be at least 1")
    if bool(args.real_iface) != bool(args.real_node):
        p.error("-r and -R go together")
    if args.real_node and not re.fullmatch(r"[hs][1-9][0-9]*", args.real_node):
        p.error("-R %s: name a host hX or a switch sX" % args.real_node)
    if args.publish_count < 1:
        p.error("--publish-count must be at least 1")
    if args.m2m_opts and args.controller != M2M:
        p.error("--m2m-opts needs --controller m2m")
    return args


def proxy_hosts(args, n_hosts):
    """(proxy host, its peers) for the mode asked, and the hosts with clients (host, server)."""
    names = ["h%d" % i for i in range(1, n_hosts + 1)]
    if args.central:
        return [("h1", [])], [(h, "h1") for h in names[1::2]]
    if args.edge:
        proxies = [h for h in names[0::2] if names.index(h) + 1 < n_hosts]
        clients = [(names[names.index(h) + 1], h) for h in proxies]
        return [(h, [o for o in proxies if o != h]) for h in proxies], clients
    if args.proxies:
        hosts = [h.strip() for h in args.proxies.split(",") if h.strip()]
        unknown = [h for h in hosts if h not in names]
        if unknown:
            raise SystemExit("topo.py: error: --proxies: %s not in this topology (h1..h%d)"
                             % (", ".join(unknown), n_hosts))
        return [(h, [o for o in hosts if o != h]) for h in hosts], []
    return [], []


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("topo.py: error: needs root (sudo /usr/bin/python3 mininet/topo.py ...)",
              file=sys.stderr)
        return 1
    if testbed is None:
        print("topo.py: error: Mininet does not import (%s): run it with /usr/bin/python3, after "
              "scripts/setup.sh" % IMPORT_ERROR, file=sys.stderr)
        return 1
    n_hosts = testbed.tree_hosts(args.fanouts)
    if n_hosts > testbed.MAX_HOSTS:
        print("topo.py: error: fanouts %s make %d hosts; h<i> = 192.168.1.(100+i)/24 has room "
              "for %d" % (" ".join(map(str, args.fanouts)), n_hosts, testbed.MAX_HOSTS),
              file=sys.stderr)
        return 2
    proxies, clients = proxy_hosts(args, n_hosts)
    real = []
    if args.real_iface:
        address = args.real_address
        if address is None and args.real_node.startswith("h"):
            address = "192.168.2.%d/24" % (100 + int(args.real_node[1:]))
        real.append((args.real_iface, args.real_node, address))

    logs = args.logs or tempfile.mkdtemp(prefix="mqtt_proxy-topo-")
    os.makedirs(logs, exist_ok=True)
    multicast = args.controller == M2M
    kwargs = {"fanouts": args.fanouts, "host_delay_ms": args.host_delay,
              "switch_delay_ms": args.switch_delay,
              "controller": None if multicast else args.controller,
              "real_interfaces": real, "verbose": args.verbose}
    if multicast:
        # --user-flags: the app's own options are parsed only when the manager is told where
        # they are declared (os-ken parses its command line before it loads apps).
        kwargs["controller_app"] = testbed.M2M_CONTROLLER_APP
        kwargs["controller_args"] = (["--observe-links", "--user-flags",
                                      testbed.M2M_CONTROLLER_APP] + shlex.split(args.m2m_opts))
    if args.proxy:
        kwargs["proxy_binary"] = os.path.abspath(args.proxy)
    tb = testbed.Testbed(logs, **kwargs)
    if not args.verbose:
        # The CLI's answers (pingall's results, a host command's output) are Mininet's "output"
        # level, which the testbed's quiet "warning" would hide.
        setLogLevel("output")
    if proxies and not os.access(tb.proxy_binary, os.X_OK):
        print("topo.py: error: %s is not built (cmake --preset release && cmake --build build)"
              % tb.proxy_binary, file=sys.stderr)
        return 1
    print("*** Tree: fanouts %s, %d switches, hosts h1..h%d = %s..%s/24"
          % (" ".join(map(str, args.fanouts)), len(testbed.TreeTopo(fanouts=args.fanouts).switches()),
             n_hosts, testbed.host_ip(1), testbed.host_ip(n_hosts)))
    try:
        tb.start()
        print("*** %s" % tb.describe_delays())
        if args.verbose:
            for link in tb.net.links:
                print("    %s <-> %s" % (link.intf1, link.intf2))
        if args.pcap:
            for host in tb.net.hosts:
                tb.capture(host.name)
            print("*** pcaps of every host in %s" % logs)
        for host, peers in proxies:
            extra = shlex.split(args.proxy_args)
            if multicast:
                # The proxies reach each other through the controller's trees, not -F.
                peers, extra = [], testbed.M2M_PROXY_ARGS + extra
            tb.start_proxy(host, peers=[tb.host(p).IP() for p in peers], extra=extra)
            print("*** %s: mqtt_proxy%s%s (log %s)" % (
                host, "".join(" -F %s" % tb.host(p).IP() for p in peers),
                " " + " ".join(testbed.M2M_PROXY_ARGS) if multicast else "",
                os.path.join(logs, "proxy-%s.log" % host)))
        if clients:
            start_client_pairs(tb, clients, args.publish_count, logs)
        if args.batch:
            script = os.path.join(logs, "batch.cli")
            with open(script, "w") as f:
                f.write("\n".join(c.strip() for c in args.batch.split(";") if c.strip()) + "\n")
            CLI(tb.net, script=script)
        else:
            print("*** Logs in %s. Type 'help' for the CLI's commands, 'exit' to stop." % logs)
            CLI(tb.net)
    except (RuntimeError, ValueError, PermissionError) as e:
        print("topo.py: error: %s" % e, file=sys.stderr)
        return 1
    finally:
        tb.stop()
        print("*** Stopped; logs in %s" % logs)
    return 0


def start_client_pairs(tb, clients, count, logs):
    """The prototype's start_mqtt_subscriber.sh and start_mqtt_publisher.sh: on each client host
    a mosquitto_sub on topic1 and a publisher that sends one message every PUBLISH_PERIOD_S
    (`count` of them, each with its own connection, as the prototype's loop did)."""
    auth = "-u %s -P %s" % (testbed.USER, testbed.PASSWORD)
    for host, server in clients:
        ip = tb.host(server).IP()
        sub_log = os.path.join(logs, "sub-%s.log" % host)
        with open(sub_log, "wb") as out:  # the child keeps its own descriptor
            tb.popen(host, ["mosquitto_sub", "-h", ip, "-t", "topic1", "-v"] + auth.split(),
                     stdout=out)
        loop = ("for i in $(seq 1 %d); do mosquitto_pub -h %s -t topic1 %s -m \"%s $i\"; "
                "sleep %d; done" % (count, ip, auth, host, PUBLISH_PERIOD_S))
        tb.popen(host, ["/bin/sh", "-c", loop], stdout=subprocess.DEVNULL)
        print("*** %s: subscriber and publisher (topic1) via %s; received messages in %s"
              % (host, server, sub_log))


if __name__ == "__main__":
    sys.exit(main())
