// What a listener with the PROXY protocol admits: trusted sources, the TLS and certificate
// requirements, and the client the broker is told about.
#include "mqtt_proxy/ingress/admission.hpp"

#include <gtest/gtest.h>

namespace mqtt_proxy::test {
namespace {

using ingress::Admitted;
using ingress::Command;
using ingress::Family;
using ingress::ProxyHeader;
using ingress::ProxyProtocolPolicy;
using ingress::Refused;
using ingress::Transport;
using wire::Ipv4Address;

const wire::SocketAddress kBalancer{Ipv4Address{0x0a000001}, 40000};

ProxyHeader tcp4(std::uint8_t version = 2) {
  ProxyHeader h;
  h.version = version;
  h.family = Family::Inet;
  h.transport = Transport::Stream;
  h.source.ipv4 = Ipv4Address{0xc0a80105};
  h.source.port = 5555;
  return h;
}

ProxyHeader over_tls(std::uint8_t client, std::uint32_t verify, std::string cn = {}) {
  ProxyHeader h = tcp4();
  h.ssl.present = true;
  h.ssl.client = client;
  h.ssl.verify = verify;
  h.ssl.cn = std::move(cn);
  return h;
}

Admitted admitted(const ProxyProtocolPolicy& p, const ProxyHeader& h) {
  const auto v = ingress::admit(p, h, kBalancer);
  const auto* a = std::get_if<Admitted>(&v);
  EXPECT_TRUE(a) << std::get<Refused>(v).reason;
  return a ? *a : Admitted{};
}

std::string refused(const ProxyProtocolPolicy& p, const ProxyHeader& h) {
  const auto v = ingress::admit(p, h, kBalancer);
  const auto* r = std::get_if<Refused>(&v);
  EXPECT_TRUE(r) << "admitted";
  return r ? r->reason : "";
}

TEST(ProxyAdmission, AnEmptySourceListTrustsEveryoneAListOnlyItsAddresses) {
  ProxyProtocolPolicy p;
  EXPECT_TRUE(ingress::is_trusted_source(p, Ipv4Address{0x01020304}));
  p.trusted_sources = {Ipv4Address{0x0a000001}, Ipv4Address{0x0a000002}};
  EXPECT_TRUE(ingress::is_trusted_source(p, Ipv4Address{0x0a000002}));
  EXPECT_FALSE(ingress::is_trusted_source(p, Ipv4Address{0x0a000003}));
}

TEST(ProxyAdmission, TheHeadersSourceNamesTheClient) {
  const auto a = admitted({}, tcp4());
  EXPECT_EQ(fmt::format("{}", a.origin.address), "192.168.1.5:5555");
  EXPECT_FALSE(a.origin.tls);
  EXPECT_FALSE(a.local);
}

TEST(ProxyAdmission, AnIpv6SourceIsKeptAndAMappedIpv4OneIsIpv4) {
  ProxyHeader h = tcp4();
  h.family = Family::Inet6;
  h.source.ipv6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42};
  EXPECT_EQ(fmt::format("{}", admitted({}, h).origin.address), "[2001:db8::42]:5555");
  // An IPv4-mapped address (a dual-stack listener's name for an IPv4 client) is the IPv4 client.
  h.source.ipv6 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7};
  EXPECT_EQ(fmt::format("{}", admitted({}, h).origin.address), "198.51.100.7:5555");
  // Only ::ffff:0:0/96: the deprecated IPv4-compatible form ::a.b.c.d stays IPv6.
  h.source.ipv6 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 198, 51, 100, 7};
  EXPECT_EQ(fmt::format("{}", admitted({}, h).origin.address), "[::198.51.100.7]:5555");
}

TEST(ProxyAdmission, LocalUnknownUnspecAndUnixKeepTheTcpPeer) {
  ProxyHeader local;
  local.version = 2;
  local.command = Command::Local;
  const auto a = admitted({}, local);
  EXPECT_TRUE(a.local);
  EXPECT_EQ(a.origin.address, wire::ClientAddress(kBalancer));

  ProxyHeader unknown;  // v1 UNKNOWN
  EXPECT_EQ(admitted({}, unknown).origin.address, wire::ClientAddress(kBalancer));

  ProxyHeader unix_socket = tcp4();
  unix_socket.family = Family::Unix;
  unix_socket.source.unix_path = "/run/haproxy.sock";
  EXPECT_EQ(admitted({}, unix_socket).origin.address, wire::ClientAddress(kBalancer));
}

TEST(ProxyAdmission, RequiredTlsRefusesV1AndPlainV2AndAcceptsTheSslBit) {
  ProxyProtocolPolicy p;
  p.require_tls = true;
  EXPECT_EQ(refused(p, tcp4(1)), "TLS required, and a v1 header cannot report TLS");
  EXPECT_EQ(refused(p, tcp4()), "TLS required, and the header reports a plain connection");
  // An SSL TLV whose client field lacks PP2_CLIENT_SSL: HAProxy's way of saying "not TLS".
  EXPECT_EQ(refused(p, over_tls(0x00, 0)),
            "TLS required, and the header reports a plain connection");
  const auto a = admitted(p, over_tls(0x01, 0));
  EXPECT_TRUE(a.origin.tls);
  EXPECT_TRUE(a.origin.certificate_cn.empty());
}

TEST(ProxyAdmission, RequiredCertificateMeansPresentedAndVerified) {
  ProxyProtocolPolicy p;
  p.require_certificate = true;  // implies TLS, even if require_tls was not set
  EXPECT_NE(refused(p, tcp4()).find("TLS required"), std::string::npos);
  EXPECT_EQ(refused(p, over_tls(0x01, 0, "alice")),
            "a client certificate is required, and the client presented none");
  EXPECT_EQ(refused(p, over_tls(0x03, 10, "alice")),
            "a client certificate is required, and it did not verify");
  EXPECT_EQ(admitted(p, over_tls(0x03, 0, "alice")).origin.certificate_cn, "alice");
  // A certificate from the resumed TLS session counts too (PP2_CLIENT_CERT_SESS).
  EXPECT_EQ(admitted(p, over_tls(0x05, 0, "bob")).origin.certificate_cn, "bob");
}

TEST(ProxyAdmission, OnlyAVerifiedCertificatesCnBecomesAnIdentity) {
  // Without a requirement the connection is served, but a CN that did not verify is no identity.
  EXPECT_TRUE(admitted({}, over_tls(0x03, 20, "mallory")).origin.certificate_cn.empty());
  EXPECT_TRUE(admitted({}, over_tls(0x01, 0, "mallory")).origin.certificate_cn.empty());
  EXPECT_EQ(admitted({}, over_tls(0x03, 0, "alice")).origin.certificate_cn, "alice");
}

}  // namespace
}  // namespace mqtt_proxy::test
