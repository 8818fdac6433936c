// The shared key of the peer protocol's authentication (--peer-key-file; docs/peering.md,
// "Authentication"): one key per line in hex (`openssl rand -hex 32`), at least 16 bytes; blank
// lines and lines starting with '#' are skipped. The first key signs; a second one, while a new
// key is rolled out, is accepted too. At most two.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::auth {

inline constexpr std::size_t kMinPeerKeySize = 16;  // 128 bits, the truncated MAC's strength

// The keys in a key file's text; an error names the line and what is wrong with it.
Result<std::vector<Bytes>> parse_peer_keys(std::string_view text);

// Reads and parses the file; refuses one that its group or others may read or write, as ssh
// refuses a private key: a key others can read authenticates nothing.
Result<std::vector<Bytes>> read_peer_key_file(const std::string& path);

}  // namespace mqtt_proxy::auth
