#!/usr/bin/python3
"""The shipped plugins (docs/plugins.md), acl_file and topic_rewrite, in the reference Mininet
testbed, against stock mosquitto_pub and mosquitto_sub in MQTT 3.1.1 and 5.0 (-V mqttv311,
-V mqttv5).

The proxy runs on h1 with a Mosquitto password file (mosquitto_passwd) and --allow-anonymous, so
usernames are authenticated and anonymous clients are let in; subscribers run on h2, publishers
on h3. Every test starts its own proxy (--log-level debug, for the plugins' refusal lines) and
stops it by PID, then reads the counters it logs at exit. What is asserted:

- acl_file, write: a user may write only sensors/<username>/# (`pattern write sensors/%u/#`); a
  QoS 1 PUBLISH elsewhere gets PUBACK reason 0x87 in 5.0 (mosquitto_pub -d prints "RC:135"), a
  plain PUBACK in 3.1.1, and reaches no subscriber, while the allowed one sent after it does.
- acl_file, read: of two subscribers on the same filter, the one whose user may not read a topic
  gets nothing of it, the other gets it.
- acl_file, anonymous: a client without a username gets the topic lines before the first `user`
  line, and a named user does not.
- acl_file, retained: the retained messages sent on SUBSCRIBE are only those the subscriber may
  read, and a refused retained PUBLISH does not replace the stored message.
- topic_rewrite: prefix=local:site1/local rewrites topics and filters by whole levels; a payload
  over max_payload is refused (0x97), one that is not UTF-8 with require_utf8=1 too (0x99), and
  neither is delivered; a payload of exactly max_payload is.
- Both plugins: the log names both at start, in the order given, and they run in that order
  (rewrite then acl_file: the ACL authorises the rewritten topic, and a rewrite refusal stops the
  chain; given the other way round the ACL sees the original topic).
- A bad plugin option, a missing or invalid ACL file, a missing or foreign shared object: the
  proxy exits non-zero with one line (run in a network namespace of its own, outside Mininet).
- The counters the proxy logs at exit (mqtt_publish_refused, mqtt_retained_sent, ...) count
  exactly the refusals and deliveries the test made.

Exit status 77 (ctest: skipped) when not root, when Mininet, Open vSwitch or the Mosquitto clients
(mosquitto_pub, mosquitto_sub, mosquitto_passwd) are missing. On failure the proxies' logs, the
ACL files and the password file stay in the artifacts directory.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import unittest

import procs  # this script's directory is first on sys.path

try:
    import testbed
except ImportError:  # Mininet imports only in Debian's /usr/bin/python3: main() skips
    testbed = None
else:
    H1 = testbed.host_ip(1)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ARGS = None

VERSIONS = ("mqttv311", "mqttv5")
USERS = ("admin", "alice", "bob", "eve", "carol")

# MQTT 5 reason codes the plugins answer with (include/mqtt_proxy/plugin.h).
NOT_AUTHORIZED = 0x87
QUOTA_EXCEEDED = 0x97
PAYLOAD_FORMAT_INVALID = 0x99

# Mosquitto's acl_file format. bob has no user section: only the pattern applies to him.
ACL = """\
# Anonymous clients (no username): the lines before the first "user" line.
topic read public/#
topic write public/anon/#

user admin
topic readwrite #

user alice
topic read sensors/#

user eve
topic read sensors/alice/#

# Every user may write under sensors/<username>/.
pattern write sensors/%u/#
"""

# For the chain of both plugins: carol's "local/#" would let her write anything under local/ if
# the ACL saw the topic as the client sent it; it sees it as topic_rewrite left it.
CHAIN_ACL = """\
user admin
topic readwrite #

user carol
topic write local/#
topic write site1/local/carol/#
"""

REWRITE_OPTS = ["prefix=local:site1/local", "max_payload=16", "require_utf8=1"]
PAYLOAD_16 = "sixteen-bytes-ok"
PAYLOAD_17 = "seventeen-bytes!!"
NOT_UTF8 = b"\xff\xfe bad"

PUBACK = re.compile(r"received PUBACK \(Mid: \d+, RC:(\d+)\)")


def password(user):
    return "pw-" + user


def short(version):
    return "5" if version == "mqttv5" else "4"


class Plugins(testbed.ProxyChecks if testbed else object, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        assert len(PAYLOAD_16.encode()) == 16 and len(PAYLOAD_17.encode()) == 17
        cls.password_file = os.path.join(ARGS.artifacts, "passwords")
        for i, user in enumerate(USERS):
            subprocess.run(["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else [])
                           + [cls.password_file, user, password(user)], check=True, timeout=30,
                           capture_output=True)
        cls.acl = cls.write_file("acl", ACL)
        cls.chain_acl = cls.write_file("chain.acl", CHAIN_ACL)
        cls.not_utf8 = cls.write_file("not-utf8.bin", NOT_UTF8)
        cls.tb = testbed.Testbed(ARGS.artifacts, proxy_binary=ARGS.proxy)
        cls.tb.start()

    @classmethod
    def tearDownClass(cls):
        cls.tb.stop()

    @staticmethod
    def write_file(name, content):
        path = os.path.join(ARGS.artifacts, name)
        with open(path, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        return path

    # -- the proxy -----------------------------------------------------------------------------

    def tag(self):
        return self._testMethodName.split("_")[1]

    def start_proxy(self, plugins, suffix=""):
        """The proxy for this test on h1, with `plugins` ((path, [NAME=VALUE, ...]) in order), the
        password file and anonymous clients allowed; stopped at the test's end."""
        extra = ["--password-file", self.password_file, "--allow-anonymous", "--log-level",
                 "debug"]
        for path, options in plugins:
            extra += ["--plugin", path]
            for o in options:
                extra += ["--plugin-opt", o]
        proxy = self.tb.start_proxy("h1", extra=extra, auth=False,
                                    log_suffix="-%s%s" % (self.tag(), suffix))
        self.addCleanup(self.stop_proxy, proxy)
        return proxy

    def loaded(self, proxy):
        """The plugins the proxy logged as loaded, in order: [(name, path, option count)]."""
        return [(m.group(1), m.group(2), int(m.group(3))) for m in re.finditer(
            r"plugin (\S+) loaded from (\S+) with (\d+) option\(s\)", proxy.log())]

    def assert_refused(self, proxy, client_id, topic, plugin, reason):
        """The proxy logged the refusal of `client_id`'s QoS 1 PUBLISH to `topic` (as the client
        sent it) by `plugin` with `reason`."""
        self.assertRegex(proxy.log(), r"PUBLISH refused client=\S+ id=%s topic=%s qos=1: hook %s "
                         r"said 0x%02x\n" % (re.escape(client_id), re.escape(topic), plugin,
                                             reason))

    # -- clients -------------------------------------------------------------------------------

    @staticmethod
    def client_args(version, user):
        args = ["-h", H1, "-p", "1883", "-V", version]
        if user:
            args += ["-u", user, "-P", password(user)]
        return args

    def publish(self, version, user, topic, message=None, client_id=None, retain=False,
                payload_file=None, expect_rc=0):
        """A QoS 1 mosquitto_pub -d from h3 (user None: anonymous). Returns the reason code of its
        PUBACK as mosquitto_pub printed it, after checking it is `expect_rc`, as 5.0 has it, or 0
        in 3.1.1, whose PUBACK carries no reason."""
        args = ["mosquitto_pub", "-d", "-q", "1", "-t", topic, "-i", client_id]
        args += ["-f", payload_file] if payload_file else ["-m", message]
        if retain:
            args.append("-r")
        rc, out, err = self.tb.run("h3", args + self.client_args(version, user), timeout=15)
        output = out + err
        self.assertIsNotNone(rc, "mosquitto_pub still ran after 15 s:\n" + output)
        codes = [int(c) for c in PUBACK.findall(output)]
        self.assertEqual(len(codes), 1, "PUBACKs of %s:\n%s" % (client_id, output))
        want = expect_rc if version == "mqttv5" else 0
        self.assertEqual(codes[0], want, "PUBACK reason of %s to %s:\n%s"
                         % (client_id, topic, output))
        if want >= 0x80:
            self.assertIn("Warning: Publish 1 failed", output)
        else:
            self.assertEqual(rc, 0, output)
            self.assertNotIn("failed", output)
        return codes[0]

    def subscribe(self, proxy, version, user, topics, client_id, count, fmt="%t %p"):
        """mosquitto_sub on h2 for `count` messages, printed as `fmt` (%r: the retain flag), once
        the proxy logged its SUBSCRIBE of every filter in `topics`."""
        args = ["mosquitto_sub", "-C", str(count), "-W", "20", "-i", client_id, "-F", fmt]
        for t in topics:
            args += ["-t", t]
        p = self.tb.popen("h2", args + self.client_args(version, user))
        self.addCleanup(self._end, p)
        needle = re.compile(r"SUBSCRIBE client=\S+ id=%s topic=" % re.escape(client_id))

        def subscribed():
            return len(needle.findall(proxy.log())) >= len(topics)

        # It may have its count and be gone already (retained messages come with the SUBACK).
        procs.wait_for(lambda: subscribed() or p.poll() is not None, 10)
        if not subscribed():
            if p.poll() is not None:
                self.fail("mosquitto_sub %s ended: %s" % (client_id, p.communicate()))
            self.fail("no SUBSCRIBE of %s:\n%s" % (client_id, proxy.log()[-3000:]))
        return p

    def received(self, sub):
        """What a mosquitto_sub printed, once it got its -C count (exit 0; 27 is -W's timeout)."""
        try:
            out, err = sub.communicate(timeout=25)
        except subprocess.TimeoutExpired:
            self.fail("mosquitto_sub still runs after its -W")
        text = out.decode(errors="replace")
        self.assertEqual(sub.returncode, 0, "mosquitto_sub exited %s (27: timed out before its "
                         "count); it printed %r, %r" % (sub.returncode, text,
                                                        err.decode(errors="replace")))
        return text.splitlines()

    @staticmethod
    def _end(p):
        if p.poll() is None:
            p.kill()
            p.wait()

    # -- tests -----------------------------------------------------------------------------------

    def test_00_a_plugin_that_cannot_start_stops_the_proxy_with_one_line(self):
        # Outside Mininet, in a network namespace of its own with only lo (up, for -i lo): the
        # plugins load before any I/O, and should one load after all, what the proxy would do
        # to lo's sysctls and iptables stays in that namespace.
        for tool in ("unshare", "ip"):
            if shutil.which(tool) is None:
                self.skipTest("%s is not installed" % tool)
        acl, rewrite = ARGS.acl_plugin, ARGS.rewrite_plugin
        invalid = self.write_file("invalid.acl", "user alice\ntopic rw sensors/#\n")
        missing = os.path.join(ARGS.artifacts, "no-such.acl")
        libc = "/lib/x86_64-linux-gnu/libc.so.6"
        cases = [
            ([acl, "acl_file=" + missing], acl,
             "init failed: acl_file %s: No such file or directory" % missing),
            ([acl, "acl_file=" + invalid], acl,
             "init failed: acl_file %s: line 2: invalid topic access type \"rw\" (read, write, "
             "readwrite or deny)" % invalid),
            ([acl], acl, "init failed: acl_file=PATH is required"),
            ([acl, "acl_file=" + self.acl, "acl_fiel=x"], acl,
             "init failed: unknown option \"acl_fiel\" (acl_file=PATH)"),
            ([rewrite, "prefix=local"], rewrite,
             "init failed: prefix=local: expected FROM:TO, each whole topic levels"),
            ([rewrite, "prefix=local/#:site1"], rewrite, "init failed: prefix=local/#:site1: "),
            ([rewrite, "max_payload=1k"], rewrite,
             "init failed: max_payload=1k: expected a number of bytes"),
            ([rewrite, "require_utf8=yes"], rewrite, "init failed: require_utf8=yes: expected 1 or 0"),
            ([rewrite, "max_size=1"], rewrite, "init failed: unknown option \"max_size\""),
            ([os.path.join(ARGS.artifacts, "missing.so")], os.path.join(ARGS.artifacts, "missing.so"),
             "cannot open shared object file: No such file or directory"),
        ]
        if os.path.exists(libc):
            cases.append(([libc], libc, "does not export mqtt_proxy_plugin_entry (not a plugin?)"))
        for plugin, path, expected in cases:
            with self.subTest(plugin=plugin):
                rc, lines = self.run_isolated(plugin)
                self.assertEqual(rc, 1, lines)
                self.assertEqual(len(lines), 1, lines)
                self.assertTrue(lines[0].startswith("mqtt_proxy: plugin %s: " % path), lines)
                self.assertIn(expected, lines[0])
        # The second plugin fails: one error line still, and the first one, which had started,
        # is cleaned up (topic_rewrite logs its figures from cleanup()).
        rc, lines = self.run_isolated([rewrite, "prefix=local:site1/local"], [acl])
        self.assertEqual(rc, 1, lines)
        errors = [line for line in lines if line.startswith("mqtt_proxy: ")]
        self.assertEqual(errors, ["mqtt_proxy: plugin %s: init failed: acl_file=PATH is required"
                                  % acl], lines)
        self.assertTrue(any("plugin topic_rewrite loaded" in line for line in lines), lines)
        self.assertTrue(any("rewrote 0 topics and filters, refused 0 payloads" in line
                            for line in lines), lines)
        # --plugin-opt needs a --plugin before it, and NAME=VALUE: usage errors (exit 2).
        for args, expected in ((["--plugin-opt", "acl_file=" + self.acl],
                                "--plugin-opt acl_file=%s: no --plugin before it" % self.acl),
                               (["--plugin", acl, "--plugin-opt", "acl_file"],
                                "--plugin-opt acl_file: expected NAME=VALUE")):
            with self.subTest(args=args):
                rc, lines = self.run_isolated(raw=args)
                self.assertEqual(rc, 2, lines)
                self.assertEqual(len(lines), 1, lines)
                self.assertIn(expected, lines[0])

    def run_isolated(self, *plugins, raw=None):
        """The proxy with `plugins` ([path, NAME=VALUE...] each) or the `raw` arguments, in a new
        network namespace; (exit status, output lines)."""
        args = list(raw or [])
        for p in plugins:
            args += ["--plugin", p[0]]
            for o in p[1:]:
                args += ["--plugin-opt", o]
        cmd = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
               ARGS.proxy, "-i", "lo", "-t", "1883"] + args
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out = p.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            p.kill()
            out = p.communicate()[0]
            self.fail("the proxy was still running 10 s after %s:\n%s"
                      % (cmd, out.decode(errors="replace")))
        return p.returncode, out.decode(errors="replace").splitlines()

    def test_01_acl_a_publish_outside_the_users_topics_is_refused(self):
        proxy = self.start_proxy([(ARGS.acl_plugin, ["acl_file=" + self.acl])])
        self.assertEqual(self.loaded(proxy), [("acl_file", ARGS.acl_plugin, 1)])
        # (The anonymous lines are counted as a user section of their own: 3 or 4.)
        self.assertRegex(proxy.log(), r"acl_file %s: [34] user sections \(with anonymous\), "
                         r"1 patterns\n" % re.escape(self.acl))
        for version in VERSIONS:
            with self.subTest(version=version):
                v = short(version)
                sub = self.subscribe(proxy, version, "admin", ["sensors/#"], "w-admin-" + v, 1)
                # alice may read sensors/# but write only sensors/alice/# (the pattern).
                self.publish(version, "alice", "sensors/bob/t", "forged", "w-alice-bad-" + v,
                             expect_rc=NOT_AUTHORIZED)
                self.publish(version, "alice", "sensors/alice/t", "own", "w-alice-ok-" + v)
                # The refused message would have come first.
                self.assertEqual(self.received(sub), ["sensors/alice/t own"])
                self.assert_refused(proxy, "w-alice-bad-" + v, "sensors/bob/t", "acl_file",
                                    NOT_AUTHORIZED)
                self.assertIn('denied PUBLISH to "sensors/bob/t" to client "w-alice-bad-%s" '
                              '(user "alice")' % v, proxy.log())
        self.assertNotIn("w-alice-ok-5 topic=sensors/alice/t qos=1: hook", proxy.log())
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("mqtt_publish_refused", 0), 2, counters)
        self.assertEqual(counters.get("mqtt_publish_delivered", 0), 2, counters)

    def test_02_acl_a_subscriber_gets_only_what_its_user_may_read(self):
        proxy = self.start_proxy([(ARGS.acl_plugin, ["acl_file=" + self.acl])])
        for version in VERSIONS:
            with self.subTest(version=version):
                v = short(version)
                # The same filter for both; alice may read sensors/#, eve sensors/alice/# only.
                alice = self.subscribe(proxy, version, "alice", ["sensors/#"], "r-alice-" + v, 2)
                eve = self.subscribe(proxy, version, "eve", ["sensors/#"], "r-eve-" + v, 1)
                self.publish(version, "bob", "sensors/bob/x", "from-bob", "r-bob-" + v)
                self.publish(version, "alice", "sensors/alice/y", "from-alice", "r-pub-" + v)
                self.assertEqual(self.received(alice),
                                 ["sensors/bob/x from-bob", "sensors/alice/y from-alice"])
                self.assertEqual(self.received(eve), ["sensors/alice/y from-alice"])
                self.assertIn('denied delivery of "sensors/bob/x" to client "r-eve-%s" '
                              '(user "eve")' % v, proxy.log())
                self.assertNotIn('denied delivery of "sensors/bob/x" to client "r-alice-%s"' % v,
                                 proxy.log())
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        # Nothing refused at PUBLISH; three copies delivered per version, the fourth skipped.
        self.assertEqual(counters.get("mqtt_publish_refused", 0), 0, counters)
        self.assertEqual(counters.get("mqtt_publish_delivered", 0), 6, counters)

    def test_03_acl_anonymous_clients_get_the_lines_before_the_first_user(self):
        proxy = self.start_proxy([(ARGS.acl_plugin, ["acl_file=" + self.acl])])
        for version in VERSIONS:
            with self.subTest(version=version):
                v = short(version)
                anon = self.subscribe(proxy, version, None, ["#"], "a-anon-" + v, 2)
                alice = self.subscribe(proxy, version, "alice", ["#"], "a-alice-" + v, 2)
                self.assertRegex(proxy.log(), r"CONNECT client=\S+ id=a-anon-%s user= " % v)
                # Anonymous may write public/anon/# only: not sensors/alice/..., which alice reads.
                self.publish(version, None, "sensors/alice/anon", "anon-forged", "a-pub-bad-" + v,
                             expect_rc=NOT_AUTHORIZED)
                self.publish(version, "admin", "sensors/alice/t", "s1", "a-admin-1-" + v)
                self.publish(version, "admin", "public/news", "news", "a-admin-2-" + v)
                self.publish(version, "admin", "sensors/alice/u", "s2", "a-admin-3-" + v)
                self.publish(version, None, "public/anon/x", "anon-ok", "a-pub-ok-" + v)
                # Anonymous reads public/# and nothing of sensors/; alice, a named user, the
                # other way round: the anonymous lines are not hers.
                self.assertEqual(self.received(anon), ["public/news news", "public/anon/x anon-ok"])
                self.assertEqual(self.received(alice), ["sensors/alice/t s1", "sensors/alice/u s2"])
                self.assert_refused(proxy, "a-pub-bad-" + v, "sensors/alice/anon", "acl_file",
                                    NOT_AUTHORIZED)
                self.assertIn('denied PUBLISH to "sensors/alice/anon" to client "a-pub-bad-%s"\n'
                              % v, proxy.log())
                self.assertIn('denied delivery of "public/news" to client "a-alice-%s" '
                              '(user "alice")' % v, proxy.log())
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("mqtt_publish_refused", 0), 2, counters)

    def test_04_acl_retained_messages_are_sent_only_to_readers(self):
        proxy = self.start_proxy([(ARGS.acl_plugin, ["acl_file=" + self.acl])])
        for version in VERSIONS:
            with self.subTest(version=version):
                v = short(version)
                bob_topic, alice_topic = "sensors/bob/v%s/state" % v, "sensors/alice/v%s/state" % v
                self.publish(version, "bob", bob_topic, "bob-state", "k-bob-" + v, retain=True)
                self.publish(version, "alice", alice_topic, "alice-state", "k-alice-" + v,
                             retain=True)
                # eve may read alice's topic but not write it: her retained message is refused
                # and does not replace alice's.
                self.publish(version, "eve", alice_topic, "eve-forged", "k-eve-bad-" + v,
                             retain=True, expect_rc=NOT_AUTHORIZED)
                flt = "sensors/+/v%s/#" % v
                alice = self.subscribe(proxy, version, "alice", [flt], "k-alice-sub-" + v, 2,
                                       fmt="%r %t %p")
                self.assertEqual(sorted(self.received(alice)),
                                 ["1 %s alice-state" % alice_topic, "1 %s bob-state" % bob_topic])
                # eve: only alice's retained message, then a live one (after every retained one
                # the SUBSCRIBE was answered with).
                eve = self.subscribe(proxy, version, "eve", [flt], "k-eve-sub-" + v, 2,
                                     fmt="%r %t %p")
                live = "sensors/alice/v%s/live" % v
                self.publish(version, "alice", live, "now", "k-alice-live-" + v)
                self.assertEqual(self.received(eve),
                                 ["1 %s alice-state" % alice_topic, "0 %s now" % live])
                self.assertIn('denied delivery of "%s" to client "k-eve-sub-%s" (user "eve")'
                              % (bob_topic, v), proxy.log())
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("mqtt_publish_refused", 0), 2, counters)
        self.assertEqual(counters.get("mqtt_retained_sent", 0), 6, counters)  # 2 + 1 per version

    def test_05_topic_rewrite_prefixes_and_payload_limits(self):
        proxy = self.start_proxy([(ARGS.rewrite_plugin, REWRITE_OPTS)])
        self.assertEqual(self.loaded(proxy), [("topic_rewrite", ARGS.rewrite_plugin, 3)])
        self.assertIn("1 prefix rules, max_payload set, require_utf8 on", proxy.log())
        for version in VERSIONS:
            with self.subTest(version=version):
                v = short(version)
                # In TO (left alone), and under FROM-like names that are not FROM's levels.
                broker_side = self.subscribe(proxy, version, "admin", ["site1/#", "localX/#"],
                                             "t-site-" + v, 3)
                # In FROM: subscribed as site1/local/# (and delivered under the broker's names).
                local_side = self.subscribe(proxy, version, "admin", ["local/#"], "t-local-" + v, 2)
                self.assertRegex(proxy.log(), r"SUBSCRIBE client=\S+ id=t-local-%s "
                                 r"topic=site1/local/# qos=0\n" % v)
                self.publish(version, "alice", "local/t1", PAYLOAD_16, "t-16-" + v)
                self.publish(version, "alice", "local/t1", PAYLOAD_17, "t-17-" + v,
                             expect_rc=QUOTA_EXCEEDED)
                self.publish(version, "alice", "local/t1", client_id="t-utf8-" + v,
                             payload_file=self.not_utf8, expect_rc=PAYLOAD_FORMAT_INVALID)
                self.publish(version, "alice", "localX/t1", "whole-levels", "t-x-" + v)
                self.publish(version, "alice", "local", "bare", "t-bare-" + v)
                self.assertEqual(self.received(broker_side),
                                 ["site1/local/t1 " + PAYLOAD_16, "localX/t1 whole-levels",
                                  "site1/local bare"])
                self.assertEqual(self.received(local_side),
                                 ["site1/local/t1 " + PAYLOAD_16, "site1/local bare"])
                self.assert_refused(proxy, "t-17-" + v, "local/t1", "topic_rewrite",
                                    QUOTA_EXCEEDED)
                self.assert_refused(proxy, "t-utf8-" + v, "local/t1", "topic_rewrite",
                                    PAYLOAD_FORMAT_INVALID)
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("mqtt_publish_refused", 0), 4, counters)
        self.assertEqual(counters.get("mqtt_publish_delivered", 0), 10, counters)
        # Per version: the filter local/#, and the PUBLISHes to local/t1 and local.
        self.assertIn("rewrote 6 topics and filters, refused 4 payloads", proxy.log())

    def test_06_two_plugins_run_in_the_order_given(self):
        rewrite = (ARGS.rewrite_plugin, ["prefix=local:site1/local", "max_payload=16"])
        acl = (ARGS.acl_plugin, ["acl_file=" + self.chain_acl])
        proxy = self.start_proxy([rewrite, acl])
        self.assertEqual(self.loaded(proxy), [("topic_rewrite", ARGS.rewrite_plugin, 2),
                                              ("acl_file", ARGS.acl_plugin, 1)])
        for version in VERSIONS:
            with self.subTest(version=version):
                v = short(version)
                sub = self.subscribe(proxy, version, "admin", ["site1/#"], "c-admin-" + v, 1)
                # The ACL is asked about site1/local/dave/t, which carol may not write (her
                # local/# would have let local/dave/t through).
                self.publish(version, "carol", "local/dave/t", "x", "c-dave-" + v,
                             expect_rc=NOT_AUTHORIZED)
                # topic_rewrite refuses first, and the chain stops: the ACL, which would refuse
                # with 0x87, is not asked.
                self.publish(version, "carol", "local/dave/big", PAYLOAD_17, "c-big-" + v,
                             expect_rc=QUOTA_EXCEEDED)
                self.publish(version, "carol", "local/carol/t", "ok", "c-ok-" + v)
                self.assertEqual(self.received(sub), ["site1/local/carol/t ok"])
                self.assert_refused(proxy, "c-dave-" + v, "local/dave/t", "acl_file",
                                    NOT_AUTHORIZED)
                self.assert_refused(proxy, "c-big-" + v, "local/dave/big", "topic_rewrite",
                                    QUOTA_EXCEEDED)
                self.assertIn('denied PUBLISH to "site1/local/dave/t" to client "c-dave-%s"' % v,
                              proxy.log())
        self.assertNotIn("dave/big\" to client", proxy.log())
        self.no_errors(proxy)
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("mqtt_publish_refused", 0), 4, counters)

        # The other way round, the ACL sees the topic as carol sent it, and local/# lets it in.
        proxy = self.start_proxy([acl, rewrite], suffix="-reversed")
        self.assertEqual([name for name, _, _ in self.loaded(proxy)],
                         ["acl_file", "topic_rewrite"])
        sub = self.subscribe(proxy, "mqttv5", "admin", ["site1/#"], "c-admin-r", 1)
        self.publish("mqttv5", "carol", "local/dave/t", "x", "c-dave-r")
        self.assertEqual(self.received(sub), ["site1/local/dave/t x"])
        counters = self.stop_and_count(proxy)
        self.assertEqual(counters.get("mqtt_publish_refused", 0), 0, counters)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "mqtt_proxy"))
    ap.add_argument("--acl-plugin",
                    default=os.path.join(REPO, "build", "plugins", "mqtt_proxy_acl_file.so"))
    ap.add_argument("--rewrite-plugin",
                    default=os.path.join(REPO, "build", "plugins", "mqtt_proxy_topic_rewrite.so"))
    ap.add_argument("--artifacts", default=os.path.join(REPO, "build", "plugins-artifacts"))
    ap.add_argument("-k", dest="pattern", default=None, help="run only tests matching this")
    ARGS = ap.parse_args()
    ARGS.acl_plugin = os.path.abspath(ARGS.acl_plugin)
    ARGS.rewrite_plugin = os.path.abspath(ARGS.rewrite_plugin)
    if testbed is not None and os.geteuid() == 0:
        for tool in ("mosquitto_sub", "mosquitto_passwd"):
            if shutil.which(tool) is None:
                print("plugins: skipped: %s is not installed (scripts/setup.sh)" % tool,
                      file=sys.stderr)
                return procs.SKIP
        for plugin in (ARGS.acl_plugin, ARGS.rewrite_plugin):
            if not os.path.isfile(plugin):
                print("plugins: %s is not built" % plugin, file=sys.stderr)
                return 1
    return procs.run_suite("plugins", Plugins, ARGS, testbed is not None)


if __name__ == "__main__":
    sys.exit(main())
