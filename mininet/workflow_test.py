#!/usr/bin/python3
"""End-to-end tests of the researcher's workflow: the topology command (topo.py) and the per-host
launch scripts (scripts/mqtt_proxy1.sh, mqtt_proxy2.sh, mqtt_proxy_as_broker.sh), as a user runs
them.

- topo.py --batch pingall on a three-level tree, under a controller the test starts itself
  (--controller remote:...), and the project's own;
- topo.py -G and -g: the clients they start deliver across the proxies / through the broker;
- topo.py -r/-R: a real interface (a veth the test creates) moved into a host, which routes;
- the launch scripts in the reference testbed: ready, one message from h3 to h2 across h4 and h1,
  and no iptables rule left after SIGTERM.

Exit status 77 (ctest: skipped) when not root or when Mininet / Open vSwitch are missing.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import procs  # this script's directory is first on sys.path

try:
    import testbed
except ImportError:  # Mininet imports only in Debian's /usr/bin/python3: main() skips
    testbed = None

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TOPO = os.path.join(HERE, "topo.py")
ARGS = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Workflow(unittest.TestCase):
    def topo(self, *args, timeout=120):
        """Runs topo.py with `args`; returns (exit status, output)."""
        logs = tempfile.mkdtemp(prefix="topo-", dir=ARGS.artifacts)
        p = subprocess.run(["/usr/bin/python3", TOPO, "--proxy", ARGS.proxy, "--logs", logs]
                           + list(args), capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr, logs

    def test_1_pingall_on_a_three_level_tree_under_the_users_controller(self):
        """The README's "real controller" line: the user starts os-ken with an app, then topo.py
        --controller remote:IP:PORT; 2 x 2 x 2 = 8 hosts under 7 switches ping each other."""
        port = free_port()
        with open(os.path.join(ARGS.artifacts, "user-controller.log"), "wb") as log:
            ctl = subprocess.Popen(["/usr/bin/osken-manager", "--ofp-listen-host", "127.0.0.1",
                                    "--ofp-tcp-listen-port", str(port), testbed.CONTROLLER_APP],
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            rc, out, _ = self.topo("-f", "2", "-f", "2", "-f", "2", "--controller",
                                   "remote:127.0.0.1:%d" % port, "--batch", "pingall")
        finally:
            ctl.terminate()
            ctl.wait(10)
        self.assertEqual(rc, 0, out)
        self.assertIn("7 switches, hosts h1..h8", out)
        self.assertIn("Results: 0% dropped (56/56 received)", out)

    def test_2_what_cannot_work_is_one_clear_line(self):
        """A controller that is not running; a tree beyond the addressing scheme; a bad option."""
        rc, out, _ = self.topo("--controller", "remote:127.0.0.1:%d" % free_port(), "--batch",
                               "pingall", timeout=60)
        self.assertEqual(rc, 1, out)
        self.assertIn("no OpenFlow controller listens on 127.0.0.1", out)
        rc, out, _ = self.topo("-f", "20", "-f", "10", "--batch", "pingall")
        self.assertEqual(rc, 2, out)
        self.assertIn("make 200 hosts; h<i> = 192.168.1.(100+i)/24 has room for 154", out)
        rc, out, _ = self.topo("-d", "soon")
        self.assertEqual(rc, 2, out)
        self.assertEqual(len(out.strip().splitlines()), 1, out)

    def test_3_G_puts_proxies_on_odd_hosts_and_their_clients_deliver_across_them(self):
        """-G on the reference tree: proxies on h1 and h3 (peered), subscriber and publisher on
        h2 (via h1) and h4 (via h3); h2 receives h4's messages, which crossed the peering."""
        rc, out, logs = self.topo("-G", "--publish-count", "5", "--batch", "h2 sleep 8")
        self.assertEqual(rc, 0, out)
        self.assertIn("h1: mqtt_proxy -F 192.168.1.103", out)
        self.assertIn("h3: mqtt_proxy -F 192.168.1.101", out)
        with open(os.path.join(logs, "sub-h2.log")) as f:
            got = f.read()
        self.assertRegex(got, r"topic1 h4 \d", "h2 got nothing from h4:\n%s\n%s" % (got, out))
        self.assertRegex(got, r"topic1 h2 \d")

    def test_3m_G_under_the_m2m_controller_delivers_by_multicast(self):
        """-G --controller m2m, the prototype's -G: proxies with -s on h1 and h3, no -F; h2 gets
        h4's messages, which came over the controller's tree (shown by dump-groups)."""
        rc, out, logs = self.topo("-G", "--controller", "m2m", "--publish-count", "5", "--batch",
                                  "h2 sleep 8; sh ovs-ofctl -O OpenFlow13 dump-groups s1")
        self.assertEqual(rc, 0, out)
        self.assertIn("h1: mqtt_proxy -s 192.168.1.100 -S 11883 -C 11882", out)
        self.assertNotIn(" -F ", out)
        self.assertRegex(out, r"group_id=\d+,type=all", "no tree on s1:\n" + out)
        with open(os.path.join(logs, "sub-h2.log")) as f:
            got = f.read()
        self.assertRegex(got, r"topic1 h4 \d", "h2 got nothing from h4:\n%s\n%s" % (got, out))
        with open(os.path.join(logs, "proxy-h3.log")) as f:
            self.assertIn("multicast via 192.168.1.100:11883", f.read())

    def test_4_g_makes_h1_the_central_broker_of_the_even_hosts(self):
        rc, out, logs = self.topo("-g", "--publish-count", "3", "--batch", "h2 sleep 5")
        self.assertEqual(rc, 0, out)
        self.assertIn("h1: mqtt_proxy (log", out)
        with open(os.path.join(logs, "sub-h2.log")) as f:
            got = f.read()
        self.assertRegex(got, r"topic1 h4 \d", got + out)

    def test_5_a_real_interface_moved_into_a_host_makes_it_a_router(self):
        """-r IFACE -R h1: the interface (here one end of a veth pair the test creates; nothing
        is sent on it) gets 192.168.2.101/24 in h1, and h1 forwards between the networks."""
        a, b = "mqpt%d" % os.getpid(), "mqpu%d" % os.getpid()
        subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
        try:
            rc, out, _ = self.topo("-r", a, "-R", "h1", "--batch",
                                   "h1 ip -4 -o addr show dev %s; h1 sysctl net.ipv4.ip_forward" % a)
        finally:
            # The moved end went away with h1's namespace, and the pair with it.
            subprocess.run(["ip", "link", "del", b], capture_output=True)
        self.assertEqual(rc, 0, out)
        self.assertIn("inet 192.168.2.101/24", out)
        self.assertIn("net.ipv4.ip_forward = 1", out)
        rc, out, _ = self.topo("-r", "mqpt-none", "-R", "h1", "--batch", "pingall")
        self.assertEqual(rc, 1, out)
        self.assertIn("interface mqpt-none does not exist", out)

    def test_6_the_launch_scripts_deliver_and_leave_no_rule(self):
        """The prototype's steps: mqtt_proxy1.sh on h1, mqtt_proxy2.sh on h4, a subscriber on h2
        via h1, a publisher on h3 via h4; then SIGTERM. And mqtt_proxy_as_broker.sh on h1 with
        both clients on it."""
        os.environ["MQTT_PROXY_BIN"] = ARGS.proxy
        scripts = os.path.join(REPO, "scripts")
        with testbed.Testbed(ARGS.artifacts, proxy_binary=ARGS.proxy) as tb:
            before = {h: tb.raw_prerouting_rules(h) for h in ("h1", "h4")}
            p1 = procs.Proxy(tb.host("h1"), os.path.join(scripts, "mqtt_proxy1.sh"), [],
                             os.path.join(ARGS.artifacts, "script-h1.log"),
                             peers=[testbed.host_ip(4)])
            p2 = procs.Proxy(tb.host("h4"), os.path.join(scripts, "mqtt_proxy2.sh"), [],
                             os.path.join(ARGS.artifacts, "script-h4.log"),
                             peers=[testbed.host_ip(1)])
            tb.proxies += [p1, p2]
            p1.wait_ready()
            p2.wait_ready()
            self.assertIn("-F 192.168.1.104", p1.log())
            self.assertIn("-F 192.168.1.101", p2.log())
            self.assertTrue(tb.raw_prerouting_rules("h1"), "the proxy installed no rule")
            self.deliver(tb, "h1", "h4", p2)
            for p, h in ((p1, "h1"), (p2, "h4")):
                self.assertEqual(p.stop(), 0, p.log()[-2000:])
                self.assertEqual(tb.raw_prerouting_rules(h), before[h])
            broker = procs.Proxy(tb.host("h1"), os.path.join(scripts, "mqtt_proxy_as_broker.sh"),
                                 [], os.path.join(ARGS.artifacts, "script-broker.log"))
            tb.proxies.append(broker)
            broker.wait_ready()
            self.assertNotIn(" -F ", broker.log().splitlines()[0])
            self.deliver(tb, "h1", "h1", None)
            self.assertEqual(broker.stop(), 0, broker.log()[-2000:])
            self.assertEqual(tb.raw_prerouting_rules("h1"), before["h1"])

    def test_7_the_m2m_launch_script_delivers_by_multicast(self):
        """mqtt_proxy_m2m.sh on h1 and h4 under the MQTT2MULTICAST app: no -F, and a subscriber
        on h2 via h1 gets what h3 publishes via h4."""
        os.environ["MQTT_PROXY_BIN"] = ARGS.proxy
        script = os.path.join(REPO, "scripts", "mqtt_proxy_m2m.sh")
        with testbed.Testbed(ARGS.artifacts, proxy_binary=ARGS.proxy,
                             controller_app=testbed.M2M_CONTROLLER_APP,
                             controller_args=["--observe-links"]) as tb:
            p1, p4 = (procs.Proxy(tb.host(h), script, [],
                                  os.path.join(ARGS.artifacts, "script-m2m-%s.log" % h))
                      for h in ("h1", "h4"))
            tb.proxies += [p1, p4]
            for p in (p1, p4):
                p.wait_ready()
                self.assertIn("-s 192.168.1.100 -S 11883 -C 11882", p.log())
                self.assertNotIn(" -F ", p.log().splitlines()[0])
            self.deliver(tb, "h1", "h4", None, ready=lambda: p1.wait_log("topic=wf/one has group"))
            for p in (p1, p4):
                self.assertEqual(p.stop(), 0, p.log()[-2000:])

    def deliver(self, tb, sub_via, pub_via, publisher_proxy, ready=None):
        auth = ["-u", testbed.USER, "-P", testbed.PASSWORD]
        sub = tb.popen("h2", ["mosquitto_sub", "-h", tb.host(sub_via).IP(), "-t", "wf/one", "-C",
                              "1", "-W", "20"] + auth)
        if ready is not None:
            self.assertTrue(ready())
        elif publisher_proxy is not None:
            self.assertTrue(publisher_proxy.wait_peer_interest("wf/one"))
        else:
            time.sleep(0.5)  # same broker: the subscription is in place once SUBACK went
        rc, _, err = tb.run("h3", ["mosquitto_pub", "-h", tb.host(pub_via).IP(), "-t", "wf/one",
                                   "-m", "hello"] + auth)
        self.assertEqual(rc, 0, err)
        out, _ = sub.communicate(timeout=20)
        self.assertEqual(out.decode().strip(), "hello")


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "mqtt_proxy"))
    ap.add_argument("--artifacts", default=os.path.join(REPO, "build", "workflow-artifacts"))
    ap.add_argument("-k", dest="pattern", default=None, help="run only tests matching this")
    ARGS = ap.parse_args()
    ARGS.proxy = os.path.abspath(ARGS.proxy)
    return procs.run_suite("workflow", Workflow, ARGS, testbed is not None)


if __name__ == "__main__":
    sys.exit(main())
