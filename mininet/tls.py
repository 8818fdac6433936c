"""A throw-away certificate authority for the tests behind HAProxy (proxy_protocol_test.py).

Made with the `openssl` command line at test time, in a directory the caller gives (the
artifacts), so no key outlives the run and nothing is checked in: a CA, a server certificate for
HAProxy's TLS frontend (with the addresses clients dial as subjectAltNames, because
mosquitto_pub checks the server's name against -h) and client certificates whose subject CN is
the identity HAProxy reports with send-proxy-v2-ssl-cn.

The commands are those docs/deployment.md prints ("Making the CA and the certificates"), with a
shorter lifetime, so what the document tells a reader to run is what the tests run. Keys are P-256: as good as RSA for
this and made in milliseconds instead of a second or more each on a small machine.

Nothing here imports Mininet.
"""

import os
import subprocess

# -pkeyopt needs the algorithm first: `-newkey ec` alone would want an existing parameter file.
KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
DAYS = "2"  # the certificates live for one test run; two days survive a run across midnight


def _openssl(args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=30)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), p.stderr.strip()))


class Certificates:
    """The files of one CA and what it signed, in `directory`:

    - ca.crt / ca.key: the CA (HAProxy's `ca-file` for client certificates, the clients' --cafile);
    - haproxy.pem: the server certificate followed by its key, as HAProxy's `crt` wants them;
    - NAME.crt / NAME.key for each client made with client().
    """

    def __init__(self, directory, ca_name="mqtt_proxy test CA"):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca_crt = os.path.join(directory, "ca.crt")
        self.ca_key = os.path.join(directory, "ca.key")
        # basicConstraints and keyUsage spelled out: the defaults come from the system's
        # openssl.cnf, which differs between distributions.
        _openssl(["req", "-x509"] + KEY + ["-days", DAYS, "-subj", "/CN=" + ca_name,
                                           "-addext", "basicConstraints=critical,CA:TRUE",
                                           "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                                           "-keyout", "ca.key", "-out", "ca.crt"], directory)
        self.server_pem = None

    def _sign(self, name, cn, extensions):
        """NAME.key and NAME.crt: a key, a request with subject CN `cn`, and the CA's signature
        with the given X.509v3 extensions (an -extfile: `openssl x509 -req` drops whatever
        extensions the request asked for)."""
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("".join(line + "\n" for line in extensions))
        _openssl(["req"] + KEY + ["-subj", "/CN=" + cn, "-keyout", name + ".key",
                                  "-out", name + ".csr"], self.dir)
        _openssl(["x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                  "-CAcreateserial", "-days", DAYS, "-extfile", name + ".ext",
                  "-out", name + ".crt"], self.dir)
        return os.path.join(self.dir, name + ".crt"), os.path.join(self.dir, name + ".key")

    def server(self, ips=(), dns=("localhost",), cn="mqtt_proxy HAProxy"):
        """haproxy.pem for the addresses (and names) clients connect to."""
        alt = ["IP:%s" % ip for ip in ips] + ["DNS:%s" % d for d in dns]
        crt, key = self._sign("server", cn, ["subjectAltName=" + ",".join(alt),
                                             "extendedKeyUsage=serverAuth",
                                             "keyUsage=critical,digitalSignature"])
        self.server_pem = os.path.join(self.dir, "haproxy.pem")
        with open(self.server_pem, "w") as out:
            for part in (crt, key):
                with open(part) as f:
                    out.write(f.read())
        os.chmod(self.server_pem, 0o600)
        return self.server_pem

    def client(self, name, cn=None):
        """NAME.crt and NAME.key: a client certificate whose subject CN is `cn` (default: name),
        the identity HAProxy's send-proxy-v2-ssl-cn passes on."""
        return self._sign(name, cn or name, ["extendedKeyUsage=clientAuth",
                                             "keyUsage=critical,digitalSignature"])

    def subject_cn(self, crt):
        """The subject CN of a certificate, as openssl reads it (a check of what was made)."""
        p = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-subject", "-nameopt",
                            "RFC2253"], capture_output=True, text=True, check=True, timeout=30)
        subject = p.stdout.strip().partition("=")[2]  # "subject=CN=alice"
        for rdn in subject.split(","):
            key, _, value = rdn.partition("=")
            if key == "CN":
                return value
        return None
