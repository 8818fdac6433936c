#!/usr/bin/python3
"""End-to-end tests of mqtt_proxy's metrics in the reference Mininet testbed: a real Prometheus
scrapes it, a real InfluxDB 1.x receives its pushes, stock clients read its $SYS topics.

Proxies run on h1 and h4, each naming the other as its peer (as in e2e_test.py). h1 serves
/metrics on its address (--metrics), pushes to InfluxDB on h2 every second (--influxdb,
--metrics-interval 1) and publishes $SYS every second (--sys-interval 1); h4 publishes no $SYS
(--sys-interval 0). Prometheus runs on h3 with docs/prometheus/prometheus.yml (only the target
replaced by h1's address) and docs/prometheus/alerts.yml beside it. Every figure is checked
against a count the test made: the tests read the proxy's own /metrics before their traffic and
wait, with a deadline, until Prometheus, InfluxDB or $SYS shows the count plus what they sent.

Prometheus's, InfluxDB's and the proxies' logs, the rendered configuration and the /metrics bodies
stay in the artifacts directory when a test fails.

Exit status 77 (ctest: skipped) when not root, when Mininet / Open vSwitch / the Mosquitto clients
are missing, or when prometheus, promtool, influxd or curl are (scripts/setup.sh installs them).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import procs
from procs import Lines, wait_for

try:
    import testbed
except ImportError:  # Mininet imports only in Debian's /usr/bin/python3: main() skips
    testbed = None
else:
    H1, H2, H3, H4 = (testbed.host_ip(i) for i in (1, 2, 3, 4))

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
EXAMPLES = os.path.join(REPO, "docs", "prometheus")
EXAMPLE_TARGET = "192.0.2.10:9234"  # the target written in docs/prometheus/prometheus.yml
ARGS = None

METRICS_PORT = 9234
PROMETHEUS_PORT = 9090
INFLUX_PORT, INFLUX_RPC_PORT = 8086, 8088
INFLUX_AUTH_PORT, INFLUX_AUTH_RPC_PORT = 8087, 8089
DATABASE = "mqtt_proxy"
SYS_TOPICS = [
    "$SYS/broker/version", "$SYS/broker/uptime", "$SYS/broker/clients/connected",
    "$SYS/broker/clients/total", "$SYS/broker/messages/received", "$SYS/broker/messages/sent",
    "$SYS/broker/publish/messages/received", "$SYS/broker/publish/messages/sent",
    "$SYS/broker/bytes/received", "$SYS/broker/bytes/sent", "$SYS/broker/subscriptions/count",
    "$SYS/broker/retained messages/count",
]
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(body):
    """The samples of a Prometheus text exposition: {(name, frozenset(labels)): value}."""
    out = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def require(ok, message):
    """assertTrue for the helpers that setUpClass uses too."""
    if not ok:
        raise AssertionError(message)


class Daemon:
    """A server (Prometheus, influxd) in a Mininet host, its output in a log file; stopped by
    PID."""

    def __init__(self, host, args, log_path):
        self.host = host
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = host.popen(list(args), stdout=self._log, stderr=subprocess.STDOUT)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def running(self):
        return self.proc.poll() is None

    def stop(self, timeout=10):
        rc = procs.terminate(self.proc, timeout)
        if not self._log.closed:
            self._log.close()
        return rc


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemons = []
        cls.scratch = tempfile.mkdtemp(prefix="mqtt-proxy-metrics-")
        cls.tb = testbed.Testbed(ARGS.artifacts, proxy_binary=ARGS.proxy)
        try:
            cls.tb.start()
            influx = cls.start_influxd("h2", H2, INFLUX_PORT, INFLUX_RPC_PORT)
            cls.prometheus_config = cls.render_prometheus_config()
            cls.prometheus = cls.start_prometheus("h3", H3)
            cls.wait_influxd(influx, H2, INFLUX_PORT)
            # Before h1 pushes: its first write then finds the database.
            status, body = cls.http("h2", "http://%s:%d/query" % (H2, INFLUX_PORT),
                                    form={"q": "CREATE DATABASE %s" % DATABASE}, method="POST")
            require(status == 200, "CREATE DATABASE: %s %s" % (status, body))
            cls.h1 = cls.tb.start_proxy("h1", peers=[H4], extra=[
                "--metrics", "%s:%d" % (H1, METRICS_PORT),
                "--influxdb", "http://%s:%d/%s" % (H2, INFLUX_PORT, DATABASE),
                "--metrics-interval", "1", "--sys-interval", "1"])
            cls.h4 = cls.tb.start_proxy("h4", peers=[H1], extra=["--sys-interval", "0"])
            cls.h4_started = time.monotonic()
            ready = wait_for(lambda: cls.http("h3", "http://%s:%d/-/ready"
                                              % (H3, PROMETHEUS_PORT))[0] == 200, 30, 0.25)
            require(ready, "Prometheus did not become ready:\n%s" % cls.prometheus.log()[-3000:])
        except BaseException:
            cls.stop_all()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stop_all()

    @classmethod
    def stop_all(cls):
        if cls.tb.net is not None and getattr(cls, "h1", None) is not None and \
                cls.h1.proc.poll() is None:
            status, body = cls.http("h2", cls.metrics_url())
            if status == 200:
                with open(os.path.join(ARGS.artifacts, "metrics-h1-final.txt"), "w") as f:
                    f.write(body)
        for d in reversed(cls.daemons):
            d.stop()
        cls.daemons = []
        cls.tb.stop()
        shutil.rmtree(cls.scratch, ignore_errors=True)

    # -- servers -----------------------------------------------------------------------------

    @classmethod
    def start_daemon(cls, host_name, args, log_name):
        d = Daemon(cls.tb.host(host_name), args, os.path.join(ARGS.artifacts, log_name))
        cls.daemons.append(d)
        return d

    @classmethod
    def render_prometheus_config(cls):
        """docs/prometheus/prometheus.yml with h1's endpoint as its one target, alerts.yml as it
        is beside it (the example loads it by a relative path)."""
        with open(os.path.join(EXAMPLES, "prometheus.yml")) as f:
            text = f.read()
        require(text.count(EXAMPLE_TARGET) == 1,
                "docs/prometheus/prometheus.yml must name the target %s once" % EXAMPLE_TARGET)
        conf_dir = os.path.join(ARGS.artifacts, "prometheus")
        os.makedirs(conf_dir, exist_ok=True)
        path = os.path.join(conf_dir, "prometheus.yml")
        with open(path, "w") as f:
            f.write(text.replace(EXAMPLE_TARGET, "%s:%d" % (H1, METRICS_PORT)))
        shutil.copy(os.path.join(EXAMPLES, "alerts.yml"), os.path.join(conf_dir, "alerts.yml"))
        return path

    @classmethod
    def start_prometheus(cls, host_name, ip):
        return cls.start_daemon(host_name, [
            "prometheus", "--config.file=%s" % cls.prometheus_config,
            "--storage.tsdb.path=%s" % os.path.join(cls.scratch, "prometheus-data"),
            "--web.listen-address=%s:%d" % (ip, PROMETHEUS_PORT), "--web.enable-lifecycle",
            "--log.level=info"], "prometheus-%s.log" % host_name)

    @classmethod
    def start_influxd(cls, host_name, ip, port, rpc_port, auth=False):
        """influxd 1.x with its files in the scratch directory, listening on the host's address
        only, reporting and its own _internal statistics off."""
        base = os.path.join(cls.scratch, "influxdb-%d" % port)
        for sub in ("meta", "data", "wal"):
            os.makedirs(os.path.join(base, sub), exist_ok=True)
        conf = os.path.join(ARGS.artifacts, "influxdb-%d.conf" % port)
        with open(conf, "w") as f:
            f.write("""reporting-enabled = false
bind-address = "{ip}:{rpc}"

[meta]
  dir = "{base}/meta"
  logging-enabled = true

[data]
  dir = "{base}/data"
  wal-dir = "{base}/wal"
  query-log-enabled = true

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{ip}:{port}"
  auth-enabled = {auth}
  log-enabled = true
  pprof-enabled = false

[continuous_queries]
  enabled = false
""".format(ip=ip, port=port, rpc=rpc_port, base=base, auth="true" if auth else "false"))
        return cls.start_daemon(host_name, ["influxd", "-config", conf],
                                "influxd-%s-%d.log" % (host_name, port))

    @classmethod
    def wait_influxd(cls, daemon, ip, port):
        # /ping answers 204 once the HTTP service is up.
        up = wait_for(lambda: not daemon.running() or
                      cls.http(daemon.host.name, "http://%s:%d/ping" % (ip, port))[0] == 204,
                      30, 0.25)
        require(up and daemon.running(), "influxd did not start:\n%s" % daemon.log()[-3000:])

    # -- HTTP from inside the hosts (the test's own namespace has no route to them) -----------

    @classmethod
    def http(cls, host_name, url, params=None, form=None, method="GET", user=None, timeout=5):
        """(status, body) of a request that curl makes in a host; status 0 when it failed
        (refused, timed out). `params` go in the query string, `form` in a POST body, both
        URL-encoded."""
        args = ["curl", "-sS", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code}", "-X", method]
        if user:
            args += ["-u", "%s:%s" % user]
        if params:
            args.append("-G")
        for k, v in (params or form or {}).items():
            args += ["--data-urlencode", "%s=%s" % (k, v)]
        rc, out, err = cls.tb.run(host_name, args + [url], timeout + 5)
        body, _, code = out.rpartition("\n")
        try:
            return int(code), body
        except ValueError:
            return 0, out + err

    @classmethod
    def metrics_url(cls):
        return "http://%s:%d/metrics" % (H1, METRICS_PORT)

    def scrape(self):
        """h1's /metrics, parsed, fetched from h2."""
        status, body = self.http("h2", self.metrics_url())
        self.assertEqual(status, 200, body)
        return parse_exposition(body)

    def sample(self, name, samples=None, **labels):
        """One sample's value, from `samples` or a fresh scrape; fails when it is missing."""
        key = (name, frozenset(labels.items()))
        samples = self.scrape() if samples is None else samples
        self.assertIn(key, samples, "h1's /metrics has no %s%s" % (name, labels or ""))
        return samples[key]

    def prometheus_api(self, path, **params):
        status, body = self.http("h3", "http://%s:%d%s" % (H3, PROMETHEUS_PORT, path), params)
        self.assertEqual(status, 200, body)
        reply = json.loads(body)
        self.assertEqual(reply["status"], "success", body)
        return reply["data"]

    def prometheus_value(self, expr):
        """The value of an instant query that has one series, or None."""
        result = self.prometheus_api("/api/v1/query", query=expr)["result"]
        if len(result) != 1:
            return None
        return float(result[0]["value"][1])

    def wait_prometheus(self, expr, expected, timeout=20):
        got = []

        def reached():
            got.append(self.prometheus_value(expr))
            return got[-1] == expected

        ok = wait_for(reached, timeout, 0.25)
        self.assertTrue(ok, "Prometheus: %s is %s, expected %s" % (expr, got[-1], expected))

    def influx_query(self, q, port=INFLUX_PORT, db=DATABASE, user=None):
        status, body = self.http("h2", "http://%s:%d/query" % (H2, port), {"db": db, "q": q},
                                 user=user)
        self.assertEqual(status, 200, body)
        return json.loads(body)["results"][0]

    def influx_value(self, q, **kwargs):
        series = self.influx_query(q, **kwargs).get("series")
        if not series:
            return None
        return series[0]["values"][0][1]

    def wait_influx(self, q, expected, timeout=20, **kwargs):
        got = []

        def reached():
            got.append(self.influx_value(q, **kwargs))
            return got[-1] == expected

        ok = wait_for(reached, timeout, 0.25)
        self.assertTrue(ok, "InfluxDB: %s is %s, expected %s" % (q, got[-1], expected))

    # -- MQTT ------------------------------------------------------------------------------------

    def auth(self):
        return ["-u", testbed.USER, "-P", testbed.PASSWORD]

    def subscriber(self, host, broker, topics, count=None, port=1883, fmt="%t\t%p"):
        """mosquitto_sub printing each message as TOPIC<tab>PAYLOAD (topics may hold spaces:
        "$SYS/broker/retained messages/count")."""
        args = ["mosquitto_sub", "-h", broker, "-p", str(port), "-W", "60", "-F", fmt]
        if count is not None:
            args += ["-C", str(count)]
        for t in topics:
            args += ["-t", t]
        p = self.tb.popen(host, args + self.auth())
        return p, Lines(p.stdout)

    def publish(self, host, broker, topic, messages, port=1883):
        rc, out, err = self.tb.run(host, ["mosquitto_pub", "-h", broker, "-p", str(port), "-t",
                                          topic, "-l"] + self.auth(), 30,
                                   input_text="\n".join(messages) + "\n")
        self.assertEqual(rc, 0, "mosquitto_pub failed: %s %s" % (out, err))

    def wait_no_clients(self):
        """Until h1 counts no client online: the next test's baseline is then settled."""
        ok = wait_for(lambda: self.sample("mosquitto_clients_online") == 0, 10, 0.2)
        self.assertTrue(ok, "h1 still has %s clients" % self.sample("mosquitto_clients_online"))

    # -- tests -----------------------------------------------------------------------------------

    def test_01_prometheus_scrapes_the_counts(self):
        n = 20
        topic = "metrics/prometheus"
        peer = {"peer": H4}
        before = self.scrape()
        received = self.sample("mosquitto_mqtt_publish_received_total", before)
        sent = self.sample("mosquitto_mqtt_publish_sent_total", before)
        forwarded = self.sample("mqtt_proxy_per_peer_publish_out_total", before, **peer)
        local, local_lines = self.subscriber("h2", H1, [topic], n)  # via h1
        remote, remote_lines = self.subscriber("h3", H4, [topic], n)  # via the peer h4
        self.assertTrue(self.h4.wait_peer_interest(topic), "h4 never heard h1's SUBSCRIBE")
        self.assertTrue(self.h1.wait_peer_interest(topic), "h1 never heard h4's SUBSCRIBE")
        msgs = ["m%02d" % i for i in range(n)]
        self.publish("h2", H1, topic, msgs)
        expected = ["%s\t%s" % (topic, m) for m in msgs]
        self.assertEqual([local_lines.next(20) for _ in msgs], expected)
        self.assertEqual([remote_lines.next(20) for _ in msgs], expected)
        self.assertEqual(local.wait(10), 0)
        self.assertEqual(remote.wait(10), 0)

        self.wait_prometheus("mosquitto_mqtt_publish_received_total", received + n)
        self.wait_prometheus("mosquitto_mqtt_publish_sent_total", sent + n)
        self.wait_prometheus('mqtt_proxy_per_peer_publish_out_total{peer="%s"}' % H4,
                             forwarded + n)
        after = self.scrape()  # Prometheus has what the endpoint says
        self.assertEqual(self.sample("mosquitto_mqtt_publish_received_total", after), received + n)
        self.assertEqual(self.sample("mosquitto_mqtt_publish_sent_total", after), sent + n)
        self.assertEqual(self.sample("mqtt_proxy_per_peer_publish_out_total", after, **peer),
                         forwarded + n)
        self.wait_prometheus('mqtt_proxy_per_peer_up{peer="%s"}' % H4, 1)

        # The target: up, healthy, labelled as the example has it.
        instance = "%s:%d" % (H1, METRICS_PORT)
        up = self.prometheus_api("/api/v1/query", query='up{job="mqtt_proxy"}')["result"]
        self.assertEqual(len(up), 1, up)
        self.assertEqual(up[0]["metric"].get("instance"), instance)
        self.assertEqual(up[0]["metric"].get("role"), "edge")
        self.assertEqual(up[0]["value"][1], "1")
        targets = self.prometheus_api("/api/v1/targets", state="active")["activeTargets"]
        self.assertEqual([(t["labels"]["job"], t["labels"]["instance"], t["health"],
                           t["lastError"]) for t in targets],
                         [("mqtt_proxy", instance, "up", "")])
        self.assertEqual(targets[0]["scrapeUrl"], "http://%s/metrics" % instance)
        self.wait_no_clients()

    def test_02_alert_rules_load_and_evaluate(self):
        with open(os.path.join(EXAMPLES, "alerts.yml")) as f:
            names = re.findall(r"^\s*- alert:\s*(\S+)", f.read(), re.M)
        self.assertGreater(len(names), 0)
        rules = []

        def evaluated():
            groups = self.prometheus_api("/api/v1/rules")["groups"]
            rules[:] = [r for g in groups for r in g["rules"]]
            return len(rules) == len(names) and all(r["health"] == "ok" for r in rules)

        ok = wait_for(evaluated, 20, 0.25)
        self.assertTrue(ok, [(r["name"], r["health"], r.get("lastError")) for r in rules])
        self.assertEqual(sorted(r["name"] for r in rules), sorted(names))
        self.assertTrue(all(r["type"] == "alerting" for r in rules))
        # A healthy proxy sets none off.
        alerts = self.prometheus_api("/api/v1/alerts")["alerts"]
        self.assertEqual([a for a in alerts if a["state"] == "firing"], [])

    def test_03_promtool_accepts_the_live_exposition_and_the_examples(self):
        args = ["curl", "-sS", "-m", "5", "-D", "-", self.metrics_url()]
        rc, out, err = self.tb.run("h3", args, 10)
        self.assertEqual(rc, 0, err)
        head, _, body = out.replace("\r\n", "\n").partition("\n\n")
        with open(os.path.join(ARGS.artifacts, "metrics-h1.txt"), "w") as f:
            f.write(body)
        self.assertRegex(head, r"^HTTP/1\.[01] 200")
        self.assertRegex(head.lower(), r"content-type: text/plain; version=0\.0\.4")
        samples = parse_exposition(body)
        for family in ("mosquitto_mqtt_publish_received_total", "mosquitto_clients_online",
                       "process_cpu_seconds_total", "process_resident_memory_bytes"):
            self.assertIn((family, frozenset()), samples, family)
        self.assertTrue([k for k in samples if k[0] == "mqtt_proxy_build_info"])
        # Every family the example rules name is one the proxy exports (a misspelt one would
        # evaluate fine, to nothing, and never fire).
        with open(os.path.join(EXAMPLES, "alerts.yml")) as f:
            named = set(re.findall(r"\b((?:mosquitto|mqtt_proxy|process)_[a-z0-9_]+)", f.read()))
        exported = set(name for name, _ in samples)
        self.assertGreater(len(named), 5)
        self.assertEqual(sorted(named - exported), [])
        check = subprocess.run(["promtool", "check", "metrics"], input=body, text=True,
                               capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        for what, path in (("config", os.path.join(EXAMPLES, "prometheus.yml")),
                           ("config", self.prometheus_config),
                           ("rules", os.path.join(EXAMPLES, "alerts.yml"))):
            check = subprocess.run(["promtool", "check", what, path], text=True,
                                   capture_output=True, timeout=30)
            self.assertEqual(check.returncode, 0, "%s %s: %s %s" % (what, path, check.stdout,
                                                                    check.stderr))
        status, _ = self.http("h3", "http://%s:%d/other" % (H1, METRICS_PORT))
        self.assertEqual(status, 404)

    def test_04_influxdb_receives_the_counts(self):
        n = 15
        received = self.sample("mosquitto_mqtt_publish_received_total")
        self.publish("h2", H1, "metrics/influx", ["i%02d" % i for i in range(n)])
        ok = wait_for(lambda: self.sample("mosquitto_mqtt_publish_received_total") ==
                      received + n, 10, 0.2)
        self.assertTrue(ok, "h1 did not count the %d PUBLISH" % n)
        self.wait_influx("SELECT last(mosquitto_mqtt_publish_received) FROM mqtt_proxy",
                         received + n)
        # Per-peer lines carry a peer tag; the fields have Mosquitto's bare names and are integers.
        forwarded = self.sample("mqtt_proxy_per_peer_datagrams_out_total", peer=H4)
        q = "SELECT last(mqtt_proxy_per_peer_datagrams_out) FROM mqtt_proxy WHERE peer = '%s'" % H4
        ok = wait_for(lambda: (self.influx_value(q) or 0) >= forwarded, 10, 0.25)
        self.assertTrue(ok, "%s: %s, expected at least %s" % (q, self.influx_value(q), forwarded))
        fields = self.influx_query("SHOW FIELD KEYS FROM mqtt_proxy")["series"][0]["values"]
        types = dict((k, t) for k, t in fields)
        self.assertEqual(types.get("mosquitto_mqtt_publish_received"), "integer", types)
        self.assertEqual(types.get("mosquitto_clients_online"), "integer", types)
        self.assertNotIn("mosquitto_mqtt_publish_received_total", types)
        hosts = self.influx_query('SHOW TAG VALUES FROM mqtt_proxy WITH KEY = "host"')
        self.assertTrue(hosts.get("series"), hosts)
        self.assertNotIn("InfluxDB write", self.h1.log())  # no write failed

    def test_05_influxdb_with_credentials(self):
        """An InfluxDB with authentication, a writer user that may only write, and a third proxy
        (on h3, port 1884) whose --influxdb-database and --influxdb-password override the URL's."""
        influx = self.start_influxd("h2", H2, INFLUX_AUTH_PORT, INFLUX_AUTH_RPC_PORT, auth=True)
        try:
            self.wait_influxd(influx, H2, INFLUX_AUTH_PORT)
            url = "http://%s:%d/query" % (H2, INFLUX_AUTH_PORT)
            admin = ("admin", "admin-pw")
            password = "wr&te pw:1"  # escaped in the write's query string
            for q, user in (("CREATE USER admin WITH PASSWORD '%s' WITH ALL PRIVILEGES" % admin[1],
                             None),  # the first user needs no credentials
                            ("CREATE DATABASE secured", admin),
                            ("CREATE USER writer WITH PASSWORD '%s'" % password, admin),
                            ("GRANT WRITE ON secured TO writer", admin)):
                status, body = self.http("h2", url, form={"q": q}, method="POST", user=user)
                self.assertEqual(status, 200, "%s: %s" % (q, body))
                self.assertNotIn('"error"', body, q)
            status, _ = self.http("h2", url, {"q": "SHOW DATABASES"})
            self.assertEqual(status, 401)  # auth is on
            proxy = self.tb.start_proxy("h3", port=1884, extra=[
                "--influxdb", "http://writer:wrong@%s:%d/wrongdb" % (H2, INFLUX_AUTH_PORT),
                "--influxdb-database", "secured", "--influxdb-password", password,
                "--metrics-interval", "1", "--sys-interval", "0"])
            try:
                # The options replaced the URL's database and password.
                self.assertIn("influxdb http://%s:%d db secured" % (H2, INFLUX_AUTH_PORT),
                              proxy.log())
                n = 7
                self.publish("h2", H3, "metrics/influx-auth", ["a%d" % i for i in range(n)],
                             port=1884)
                self.wait_influx("SELECT last(mosquitto_mqtt_publish_received) FROM mqtt_proxy",
                                 n, port=INFLUX_AUTH_PORT, db="secured", user=admin)
            finally:
                self.assertEqual(proxy.stop(), 0, proxy.log()[-2000:])
                self.tb.proxies.remove(proxy)
            self.assertNotIn("wr&te", proxy.log())  # the password is never logged
            self.assertNotIn("wrongdb", influx.log())
        finally:
            influx.stop()
            self.daemons.remove(influx)

    def test_06_sys_topics(self):
        n = 12
        received = self.sample("mosquitto_mqtt_publish_received_total")
        sys_sub, sys_lines = self.subscriber("h2", H1, ["$SYS/broker/#"])
        values = {}

        def drain():
            while not sys_lines.q.empty():
                line = sys_lines.q.get_nowait()
                if line is None:
                    raise AssertionError("the $SYS subscriber ended: %s" % sys_sub.stderr.read())
                topic, _, payload = line.partition("\t")
                values[topic] = payload
            return values

        def sys_value(topic):
            return drain().get(topic)

        self.publish("h2", H1, "metrics/sys", ["s%02d" % i for i in range(n)])
        topic = "$SYS/broker/publish/messages/received"
        ok = wait_for(lambda: sys_value(topic) == str(int(received + n)), 10, 0.1)
        self.assertTrue(ok, "%s is %s, expected %d" % (topic, sys_value(topic), received + n))
        ok = wait_for(lambda: sys_value("$SYS/broker/clients/connected") == "1", 5, 0.1)
        self.assertTrue(ok, "$SYS/broker/clients/connected is %s with one client (the $SYS "
                        "subscriber)" % sys_value("$SYS/broker/clients/connected"))
        # The figures are the exposition's, under Mosquitto's $SYS names (quiet now: only the
        # $SYS subscriber is connected, and it sends nothing).
        for sys_topic, family in (("messages/received", "mosquitto_mqtt_packets_received_total"),
                                  ("bytes/received", "mosquitto_bytes_received_total"),
                                  ("subscriptions/count", "mosquitto_subscriptions"),
                                  ("retained messages/count", "mosquitto_retained_messages"),
                                  ("clients/total", "mosquitto_sessions")):
            want = []

            def same():
                want.append("%d" % self.sample(family))
                return sys_value("$SYS/broker/" + sys_topic) == want[-1]

            self.assertTrue(wait_for(same, 5, 0.2), "$SYS/broker/%s is %s, %s is %s" % (
                sys_topic, sys_value("$SYS/broker/" + sys_topic), family, want[-1]))
        drain()
        missing = [t for t in SYS_TOPICS if t not in values]
        self.assertEqual(missing, [], sorted(values))
        self.assertTrue(values["$SYS/broker/version"].startswith("mqtt_proxy"), values)
        self.assertRegex(values["$SYS/broker/uptime"], r"^\d+ seconds$")
        for t in SYS_TOPICS[2:]:
            self.assertRegex(values[t], DECIMAL, t)
        for window in ("1min", "5min", "15min"):
            load = [t for t in values if t.startswith("$SYS/broker/load/") and
                    t.endswith("/" + window)]
            self.assertTrue(load, "no $SYS/broker/load/.../%s in %s" % (window, sorted(values)))
            for t in load:
                self.assertRegex(values[t], DECIMAL, t)
        self.assertGreaterEqual(int(values["$SYS/broker/clients/total"]), 1)
        self.assertGreater(int(values["$SYS/broker/bytes/received"]), 0)
        self.assertGreater(int(values["$SYS/broker/messages/sent"]), 0)
        # Retained, as Mosquitto's: a later subscriber gets the version at once, retain flag set.
        rc, out, err = self.tb.run("h3", ["mosquitto_sub", "-h", H1, "-t", "$SYS/broker/version",
                                          "-C", "1", "-W", "10", "-F", "%r %p"] + self.auth(), 20)
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith("1 mqtt_proxy"), out)

        # Local only: a subscriber via the peer h4 (which publishes none, --sys-interval 0) gets
        # none of h1's, while h1 publishes them every second.
        forwarded = self.sample("mqtt_proxy_per_peer_publish_out_total", peer=H4)
        sentinel = "metrics/sys-sentinel"
        remote, remote_lines = self.subscriber("h3", H4, ["$SYS/#", sentinel])
        self.assertTrue(self.h1.wait_peer_interest(sentinel), "h1 never heard h4's SUBSCRIBE")
        uptime = sys_value("$SYS/broker/uptime")
        for _ in range(2):  # two rounds of h1's $SYS after h4's interest reached h1
            ok = wait_for(lambda: sys_value("$SYS/broker/uptime") != uptime, 5, 0.1)
            self.assertTrue(ok, "h1's $SYS/broker/uptime stays %s" % uptime)
            uptime = sys_value("$SYS/broker/uptime")
        self.publish("h2", H1, sentinel, ["sentinel"])
        self.assertEqual(remote_lines.next(20), "%s\tsentinel" % sentinel)  # and nothing before
        self.assertEqual(self.sample("mqtt_proxy_per_peer_publish_out_total", peer=H4),
                         forwarded + 1)  # the sentinel, none of h1's $SYS
        for p in (sys_sub, remote):
            p.kill()
            p.wait(5)
        self.wait_no_clients()

    def test_07_sys_interval_zero_publishes_nothing(self):
        # h4 runs with --sys-interval 0. Past the default interval (10 s) from its start, a $SYS
        # round would have been published and retained: a new subscriber would get it at once.
        left = 11 - (time.monotonic() - self.h4_started)
        if left > 0:
            time.sleep(left)
        sentinel = "metrics/nosys-sentinel"
        sub, lines = self.subscriber("h3", H4, ["$SYS/#", sentinel])
        self.assertTrue(self.h1.wait_peer_interest(sentinel), "h1 never heard h4's SUBSCRIBE")
        self.publish("h3", H4, sentinel, ["sentinel"])
        self.assertEqual(lines.next(20), "%s\tsentinel" % sentinel)  # no $SYS message before it
        sub.kill()
        sub.wait(5)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "mqtt_proxy"))
    ap.add_argument("--artifacts", default=os.path.join(REPO, "build", "metrics-artifacts"))
    ap.add_argument("-k", dest="pattern", default=None, help="run only tests matching this")
    ARGS = ap.parse_args()
    missing = [t for t in ("prometheus", "promtool", "influxd", "curl") if shutil.which(t) is None]
    if missing and os.geteuid() == 0:
        print("metrics: skipped: %s missing (scripts/setup.sh)" % ", ".join(missing),
              file=sys.stderr)
        return procs.SKIP
    return procs.run_suite("metrics", Metrics, ARGS, testbed is not None)


if __name__ == "__main__":
    sys.exit(main())
