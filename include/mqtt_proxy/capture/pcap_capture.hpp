// Live capture of inbound MQTT segments on one interface through libpcap: immediate mode
// (TPACKET_V2, no 1 s block timeout), an explicit ring size, non-blocking, drained from the event
// loop.
#pragma once

#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::capture {

struct CaptureConfig {
  std::string iface;
  std::string filter;  // BPF, e.g. "tcp dst port 1883 and (dst host 192.168.1.101)"
  int buffer_bytes = 16 * 1024 * 1024;
  // libpcap sizes every ring slot for the snap length (64 KiB+ whenever any offload is on), so a
  // snap length near the MTU makes the ring hold ~35x more frames. Use 262144 where the receive
  // path merges frames (GRO/LRO): then super-frames must fit whole.
  int snaplen = 262144;
};

class PcapCapture {
 public:
  // The error says what failed, naming the interface, and whether root is what is missing.
  static Result<std::unique_ptr<PcapCapture>> open(const CaptureConfig& cfg);
  ~PcapCapture();
  PcapCapture(const PcapCapture&) = delete;
  PcapCapture& operator=(const PcapCapture&) = delete;

  int fd() const { return fd_; }
  const std::string& iface() const { return iface_; }

  // Calls fn(ByteSpan frame) for every frame waiting now. Returns the number of frames, or -1 on a
  // capture error (the message is in last_error()). One pcap_dispatch() empties the ring; asking
  // again would only cost a poll() that finds nothing, and frames that arrive meanwhile keep the
  // descriptor readable for the next turn.
  template <typename Fn>
  int drain(Fn&& fn) {
    using F = std::remove_reference_t<Fn>;
    callback_ = &fn;
    const int n = pcap_dispatch(
        handle_, -1,
        [](u_char* user, const pcap_pkthdr* h, const u_char* bytes) {
          auto* self = reinterpret_cast<PcapCapture*>(user);
          if (h->caplen < h->len) ++self->truncated_;
          (*static_cast<F*>(self->callback_))(
              ByteSpan{reinterpret_cast<const std::byte*>(bytes), h->caplen});
        },
        reinterpret_cast<u_char*>(this));
    return n < 0 ? -1 : n;
  }

  // Adds this capture's figures to the capture_* fields: libpcap's drop counts (ring full, and
  // the interface's own) and the frames cut to the snap length.
  void add_counters(metrics::Counters& c) const;
  std::uint64_t truncated() const { return truncated_; }
  // After the interface went down libpcap raises no readiness; it asks to be polled instead, and
  // the next drain() then reports the error.
  bool needs_polling() const { return pcap_get_required_select_timeout(handle_) != nullptr; }
  std::string last_error() const;

 private:
  PcapCapture() = default;
  pcap_t* handle_ = nullptr;
  void* callback_ = nullptr;  // the functor of the drain() in progress
  std::uint64_t truncated_ = 0;
  int fd_ = -1;
  std::string iface_;
};

}  // namespace mqtt_proxy::capture
