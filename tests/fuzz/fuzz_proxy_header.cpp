// Fuzzes the PROXY protocol parser: the input is a connection's first bytes, parsed in each mode,
// whole and cut at every point up to the bound; and each space-separated token of it through the
// IPv6 text parser, against glibc's inet_pton. Any broken invariant traps.
#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "fuzz_target.hpp"
#include "mqtt_proxy/ingress/proxy_protocol.hpp"

using namespace mqtt_proxy;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

ingress::ParseResult check_mode(ByteSpan in, ingress::Mode mode,
                                const ingress::ProxyProtocolConfig& config) {
  const auto whole = ingress::parse(in, mode, config);
  const std::size_t bound = ingress::max_header_len(mode, config);
  if (const auto* d = std::get_if<ingress::Done>(&whole)) {
    check(d->header_len <= in.size() && d->header_len >= ingress::kV1MinLen);
    check(d->header_len <= bound);
  }
  if (const auto* more = std::get_if<ingress::NeedMore>(&whole)) {
    check(more->at_least > in.size());
    check(in.size() < bound);  // never waits past the bound
  }
  if (const auto* e = std::get_if<ingress::Error>(&whole)) check(!e->reason.empty());
  // However the bytes were cut, the first answer that is not NeedMore is the whole buffer's.
  const std::size_t limit = std::min(in.size(), bound);
  for (std::size_t k = 0; k <= limit; ++k) {
    const auto r = ingress::parse(in.first(k), mode, config);
    if (const auto* more = std::get_if<ingress::NeedMore>(&r)) {
      check(more->at_least > k);
      continue;
    }
    check(r == whole);
    return whole;
  }
  check(std::holds_alternative<ingress::NeedMore>(whole));
  return whole;
}

void check_ipv6(std::string_view token) {
  if (token.size() > 64 || token.find('\0') != std::string_view::npos) return;
  const std::string s(token);
  std::array<std::uint8_t, 16> want{};
  const bool ok = inet_pton(AF_INET6, s.c_str(), want.data()) == 1;
  const auto got = ingress::parse_ipv6(token);
  check(got.has_value() == ok);
  if (got && ok) check(*got == want);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteSpan in{reinterpret_cast<const std::byte*>(data), size};
  const ingress::ProxyProtocolConfig defaults;
  const auto any = check_mode(in, ingress::Mode::Any, defaults);
  const auto v1 = check_mode(in, ingress::Mode::V1, defaults);
  const auto v2 = check_mode(in, ingress::Mode::V2, defaults);
  // Any is v1 or v2, chosen by the first byte.
  if (size > 0 && data[0] == 'P') check(any == v1);
  if (size > 0 && data[0] == 0x0d) check(any == v2);
  // A limit of the input's choosing, below the header's own length as often as not.
  const ingress::ProxyProtocolConfig small{.max_v2_len = size % 512};
  check_mode(in, ingress::Mode::V2, small);

  std::string_view text = as_chars(in);
  check_ipv6(text);
  while (!text.empty()) {
    const std::size_t sp = std::min(text.find(' '), text.size());
    check_ipv6(text.substr(0, sp));
    text.remove_prefix(std::min(sp + 1, text.size()));
  }
  return 0;
}
