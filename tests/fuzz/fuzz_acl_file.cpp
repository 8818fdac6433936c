// Fuzzes the acl_file parser (plugins/acl_file/acl.hpp) on any text, then the checks on what
// parsed, with identities and topics taken from the text itself so that they hit its entries. A
// parse either fails with one line "line N: ..." or yields an ACL whose checks are deterministic;
// any broken invariant traps.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "acl.hpp"
#include "fuzz_target.hpp"

using namespace mqtt_proxy;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// The last space-separated word of each line: the topics, usernames and patterns of the file.
std::vector<std::string_view> words(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty() && out.size() < 16) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    const std::size_t sp = line.rfind(' ');
    out.push_back(sp == std::string_view::npos ? line : line.substr(sp + 1));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);  // NOLINT: bytes as text
  const auto acl = acl_file::Acl::parse(text);
  if (!acl) {
    const std::string& e = acl.error();
    check(e.rfind("line ", 0) == 0 && e.find('\n') == std::string::npos);
    return 0;
  }
  const std::vector<std::string_view> w = words(text);
  const std::string_view ids[] = {"", "c1", "a/b", "+", "#"};
  for (const std::string_view topic : w) {
    for (const std::string_view user : w) {
      for (const std::string_view id : ids) {
        const bool r = acl->may_read(id, user, topic);
        const bool wr = acl->may_write(id, user, topic);
        check(r == acl->may_read(id, user, topic));
        check(wr == acl->may_write(id, user, topic));
        // Nothing with a wildcard is ever published or delivered.
        if (topic.find_first_of("+#") != std::string_view::npos || topic.empty()) {
          check(!r && !wr);
        }
      }
    }
  }
  return 0;
}
