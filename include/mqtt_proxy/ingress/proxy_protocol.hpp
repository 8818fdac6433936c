// The PROXY protocol, versions 1 and 2 (HAProxy's doc/proxy-protocol.txt, revision 2020/03/05):
// the header a load balancer such as HAProxy puts in front of a connection's first byte, so that
// the receiver learns the client's address (and, in v2, its TLS identity) although the TCP peer is
// the load balancer.
//
//   v1: "PROXY TCP4 192.168.0.1 192.168.0.11 56324 1883\r\n" (TCP6, or UNKNOWN), at most 107 bytes
//   v2: signature:12 | version 2, command:1 | family, transport:1 | len:2 | addresses | TLVs
//
// parse() is incremental: hand it every byte received so far on the connection; it says how many
// more it needs, or where the header ends (the rest is the application's), or why the bytes cannot
// be a header. It never reads past what it was given, fails as soon as the bytes received cannot
// begin a valid header, and never asks for more than the bound (107 bytes for v1, the configured
// limit for v2), so a connection cannot keep it waiting for a header that never ends. The result
// does not depend on how the bytes were cut: feeding them one at a time gives the same result as
// one call with all of them. Pure: no I/O, no clock.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::ingress {

// Section 2.1: the longest v1 line, "PROXY UNKNOWN <two IPv6> 65535 65535\r\n", CRLF included.
inline constexpr std::size_t kV1MaxLen = 107;
// The shortest v1 line, "PROXY UNKNOWN\r\n": the least a caller must read before a v1 header can
// be complete.
inline constexpr std::size_t kV1MinLen = 15;
// Section 2.2: the fixed part of a v2 header; its 16-bit length field counts the bytes after it.
inline constexpr std::size_t kV2HeaderLen = 16;
inline constexpr std::size_t kV2MaxLen = kV2HeaderLen + 0xffff;
// A v2 header with every TLV HAProxy sends (SSL with a long CN and cipher, ALPN, authority, a
// unique ID) stays far below this; a larger one is refused before its bytes are waited for.
inline constexpr std::size_t kV2DefaultMaxLen = 4096;
// Section 2.2.5.
inline constexpr std::size_t kUniqueIdMaxLen = 128;

// Section 2.2: the registered TLV types, and the SSL TLV's sub-types (2.2.6).
namespace pp2_type {
inline constexpr std::uint8_t kAlpn = 0x01;
inline constexpr std::uint8_t kAuthority = 0x02;
inline constexpr std::uint8_t kCrc32c = 0x03;
inline constexpr std::uint8_t kNoop = 0x04;
inline constexpr std::uint8_t kUniqueId = 0x05;
inline constexpr std::uint8_t kSsl = 0x20;
inline constexpr std::uint8_t kSslVersion = 0x21;
inline constexpr std::uint8_t kSslCn = 0x22;
inline constexpr std::uint8_t kSslCipher = 0x23;
inline constexpr std::uint8_t kSslSigAlg = 0x24;
inline constexpr std::uint8_t kSslKeyAlg = 0x25;
inline constexpr std::uint8_t kNetns = 0x30;
}  // namespace pp2_type

// Section 2.2.6: the bits of the SSL TLV's `client` field.
namespace pp2_client {
inline constexpr std::uint8_t kSsl = 0x01;       // the client connected over TLS
inline constexpr std::uint8_t kCertConn = 0x02;  // it presented a certificate on this connection
inline constexpr std::uint8_t kCertSess = 0x04;  // ... or once in the TLS session it resumed
}  // namespace pp2_client

// Which versions the listener accepts. Any tells them apart by the first byte ('P' or CR), as
// VerneMQ does; the protocol itself is never optional (section 5: a listener that guessed whether
// a header is present would let any client claim any address).
enum class Mode : std::uint8_t { V1, V2, Any };
enum class Command : std::uint8_t { Local, Proxy };
enum class Family : std::uint8_t { Unspec, Inet, Inet6, Unix };
enum class Transport : std::uint8_t { Unspec, Stream, Dgram };

std::string_view command_name(Command c);
std::string_view family_name(Family f);
std::string_view transport_name(Transport t);

// Network byte order, as on the wire.
using wire::Ipv6Address;

// One end of the proxied connection; the field of the header's family is set.
struct Address {
  wire::Ipv4Address ipv4;  // Family::Inet
  Ipv6Address ipv6{};      // Family::Inet6
  // Family::Unix: sun_path up to its first NUL; an abstract address (a NUL first) keeps that NUL
  // and runs to the next one.
  std::string unix_path;
  std::uint16_t port = 0;  // Family::Inet and Inet6
  friend bool operator==(const Address&, const Address&) = default;
};

// The PP2_TYPE_SSL TLV. Strings are empty when their sub-TLV was absent.
struct SslInfo {
  bool present = false;
  std::uint8_t client = 0;  // pp2_client bits, as sent (unknown bits kept)
  std::uint32_t verify = 0;
  std::string version;  // PP2_SUBTYPE_SSL_VERSION, "TLSv1.3"
  std::string cn;       // PP2_SUBTYPE_SSL_CN: the client certificate's Common Name; never a NUL
  std::string cipher;   // PP2_SUBTYPE_SSL_CIPHER
  std::string sig_alg;  // PP2_SUBTYPE_SSL_SIG_ALG
  std::string key_alg;  // PP2_SUBTYPE_SSL_KEY_ALG

  // A client certificate was presented (on this connection or in the resumed session) and
  // verified. `verify` alone does not say so: HAProxy sends the TLS library's verify result,
  // which is 0 ("ok") also when the client sent no certificate at all.
  bool verified_client_certificate() const {
    return present && (client & (pp2_client::kCertConn | pp2_client::kCertSess)) != 0 &&
           verify == 0;
  }
  friend bool operator==(const SslInfo&, const SslInfo&) = default;
};

struct ProxyHeader {
  std::uint8_t version = 1;  // 1 or 2
  Command command = Command::Proxy;
  Family family = Family::Unspec;
  Transport transport = Transport::Unspec;
  // As sent, for a v2 PROXY command whose family is Inet, Inet6 or Unix, or a v1 TCP4/TCP6 line;
  // zero otherwise. Use them only when carries_addresses().
  Address source;
  Address destination;
  // The v2 TLVs (PROXY command only); empty when absent. Bytes as sent: only the authority is
  // checked (no NUL), as a host name that goes into logs.
  std::string alpn;             // PP2_TYPE_ALPN
  std::string authority;        // PP2_TYPE_AUTHORITY (the TLS SNI)
  std::string unique_id;        // PP2_TYPE_UNIQUE_ID, at most 128 bytes
  std::string netns;            // PP2_TYPE_NETNS
  bool crc32c_checked = false;  // a PP2_TYPE_CRC32C TLV was present, and matched
  SslInfo ssl;

  // The header names the client: the caller uses `source` instead of the TCP peer. False for a
  // LOCAL command (a health check from the load balancer itself), v1 UNKNOWN, and a v2 UNSPEC
  // family or transport: the spec says to keep the real connection's addresses then.
  bool carries_addresses() const {
    return command == Command::Proxy && family != Family::Unspec && transport != Transport::Unspec;
  }
  friend bool operator==(const ProxyHeader&, const ProxyHeader&) = default;
};

// More bytes are needed; the header is at least `at_least` bytes long in total (a lower bound
// for v1, whose length is known only at its CRLF; exact for v2 once its 16 fixed bytes are in).
struct NeedMore {
  std::size_t at_least = 0;
  friend bool operator==(const NeedMore&, const NeedMore&) = default;
};
// The header is the first `header_len` bytes; whatever follows belongs to the application.
struct Done {
  std::size_t header_len = 0;
  ProxyHeader header;
  friend bool operator==(const Done&, const Done&) = default;
};
// Not a valid header: close the connection and log `reason` (one line; bytes from the network in
// it are escaped).
struct Error {
  std::string reason;
  friend bool operator==(const Error&, const Error&) = default;
};
using ParseResult = std::variant<NeedMore, Done, Error>;

struct ProxyProtocolConfig {
  // The largest v2 header accepted, its 16 fixed bytes included; at most kV2MaxLen matters.
  std::size_t max_v2_len = kV2DefaultMaxLen;
};

// `received`: every byte of the connection so far, from its first. Call again with more bytes
// after NeedMore; the bytes given before must be given again, unchanged.
ParseResult parse(ByteSpan received, Mode mode, const ProxyProtocolConfig& config = {});

// The most bytes parse() can return NeedMore for: past this it has answered Done or Error.
std::size_t max_header_len(Mode mode, const ProxyProtocolConfig& config = {});

// CRC-32C (Castagnoli, RFC 4960 appendix B; reflected polynomial 0x82f63b78), as the v2
// PP2_TYPE_CRC32C TLV carries it.
std::uint32_t crc32c(ByteSpan b);

// An IPv6 address in the text forms of RFC 4291 2.2, exactly those glibc's inet_pton(AF_INET6)
// accepts: 1-4 hex digits per group (either case), one "::" for one or more zero groups, an IPv4
// dotted-decimal tail (no leading zeros), no zone index, no brackets, nothing around it.
std::optional<Ipv6Address> parse_ipv6(std::string_view text);

}  // namespace mqtt_proxy::ingress
