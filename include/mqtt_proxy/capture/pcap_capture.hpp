// Live capture of inbound MQTT segments on one interface through libpcap: immediate mode
// (TPACKET_V2, no 1 s block timeout), an explicit ring size, non-blocking, drained from the event
// loop.
#pragma once

#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <string>

#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::capture {

struct CaptureConfig {
  std::string iface;
  std::string filter;  // BPF, e.g. "tcp dst port 1883 and dst host 192.168.1.101"
  int buffer_bytes = 16 * 1024 * 1024;
  int snaplen = 262144;  // whole TSO/GRO super-frames, not just 64 KiB
};

struct CaptureStats {
  std::uint64_t received = 0;
  std::uint64_t dropped = 0;  // ring full
  std::uint64_t if_dropped = 0;
};

enum class OpenError { None, PermissionDenied, NoSuchDevice, Other };

class PcapCapture {
 public:
  static std::unique_ptr<PcapCapture> open(const CaptureConfig& cfg, OpenError& kind,
                                           std::string& error);
  ~PcapCapture();
  PcapCapture(const PcapCapture&) = delete;
  PcapCapture& operator=(const PcapCapture&) = delete;

  int fd() const { return fd_; }
  const std::string& iface() const { return iface_; }

  // Calls fn(ByteSpan frame) for every frame waiting now. Returns the number of frames, or -1 on a
  // capture error (the message is in last_error()).
  template <typename Fn>
  int drain(Fn&& fn) {
    int total = 0;
    for (;;) {
      const int n = pcap_dispatch(
          handle_, -1,
          [](u_char* user, const pcap_pkthdr* h, const u_char* bytes) {
            (*reinterpret_cast<Fn*>(user))(
                ByteSpan{reinterpret_cast<const std::byte*>(bytes), h->caplen});
          },
          reinterpret_cast<u_char*>(&fn));
      if (n < 0) return -1;
      if (n == 0) return total;
      total += n;
    }
  }

  CaptureStats stats() const;
  std::string last_error() const;

 private:
  PcapCapture() = default;
  pcap_t* handle_ = nullptr;
  int fd_ = -1;
  std::string iface_;
};

}  // namespace mqtt_proxy::capture
