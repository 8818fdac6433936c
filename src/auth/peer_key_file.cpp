#include "mqtt_proxy/auth/peer_key_file.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace mqtt_proxy::auth {

namespace {
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}
}  // namespace

Result<std::vector<Bytes>> parse_peer_keys(std::string_view text) {
  std::vector<Bytes> keys;
  std::size_t line_no = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    const std::string where = "line " + std::to_string(line_no) + ": ";
    auto parsed = parse_hex(line);
    if (!parsed) return Error{where + "a key is hex digits in pairs, nothing else"};
    Bytes key = std::move(*parsed);
    if (key.size() < kMinPeerKeySize) {
      return Error{where + "a key needs at least " + std::to_string(kMinPeerKeySize) + " bytes (" +
                   std::to_string(2 * kMinPeerKeySize) +
                   " hex digits; openssl rand -hex 32 makes one)"};
    }
    if (keys.size() == 2) {
      return Error{where + "at most two keys: the one that signs and the one being rolled out"};
    }
    keys.push_back(std::move(key));
  }
  if (keys.empty()) return Error{"no key in the file"};
  return keys;
}

Result<std::vector<Bytes>> read_peer_key_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) {
    return Error{"--peer-key-file " + path + ": " + std::strerror(errno)};
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Error{"--peer-key-file " + path + " is open to its group or others (mode " + mode +
                 "): chmod 600 " + path};
  }
  std::ifstream in(path);
  if (!in) return Error{"--peer-key-file " + path + ": cannot read it"};
  std::ostringstream text;
  text << in.rdbuf();
  auto keys = parse_peer_keys(text.str());
  if (!keys) return Error{"--peer-key-file " + path + ": " + keys.error()};
  return keys;
}

}  // namespace mqtt_proxy::auth
