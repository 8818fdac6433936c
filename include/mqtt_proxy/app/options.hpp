// Command line (design brief section 2; compatible with the prototype's launch scripts).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::app {

struct Options {
  std::uint16_t tcp_port = 1883;
  std::uint16_t udp_port = 1883;
  std::optional<std::string> username;
  std::optional<std::string> password;
  std::vector<wire::Ipv4Address> forwarders;
  std::vector<std::string> ifaces;
  log::Level log_level = log::Level::Info;
  bool firewall = true;
  bool verify_checksums = false;
  std::string password_file;  // empty: none
  bool allow_anonymous = false;
  std::size_t max_connections = 100000;
  std::size_t max_half_open = 1024;
  std::uint32_t tcp_rcv_buffer = 65535;
  unsigned stall_timeout_seconds = 60;
  std::size_t max_packet_size = 16 * 1024 * 1024;
  std::size_t max_queued_bytes = 4 * 1024 * 1024;
  std::size_t max_retained = 100000;
  unsigned session_expiry_seconds = 3600;
  std::size_t capture_buffer_bytes = 16 * 1024 * 1024;
  unsigned peer_refresh_seconds = 0;
  bool peer_batch = false;
  unsigned stats_interval_seconds = 0;
  unsigned shutdown_grace_ms = 2000;
};

enum class ParseOutcome { Run, Exit0, Error };

// Parses argv. On Exit0 (--help, --version) `message` is the text to print on stdout; on Error it
// is a one-line reason.
ParseOutcome parse_options(int argc, const char* const* argv, Options& out, std::string& message);

}  // namespace mqtt_proxy::app
