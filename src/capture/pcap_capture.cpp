#include "mqtt_proxy/capture/pcap_capture.hpp"

#include <linux/if_packet.h>
#include <sys/socket.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

namespace mqtt_proxy::capture {

Result<std::unique_ptr<PcapCapture>> PcapCapture::open(const CaptureConfig& cfg) {
  auto fail = [&](std::string why) -> Result<std::unique_ptr<PcapCapture>> {
    return Error{"cannot capture on " + cfg.iface + ": " + why};
  };
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p = pcap_create(cfg.iface.c_str(), errbuf);
  if (!p) return fail(errbuf);
  std::unique_ptr<PcapCapture> c(new PcapCapture());
  c->handle_ = p;
  c->iface_ = cfg.iface;

  pcap_set_snaplen(p, cfg.snaplen);
  pcap_set_promisc(p, 0);
  pcap_set_immediate_mode(p, 1);
  pcap_set_buffer_size(p, cfg.buffer_bytes);
  const int rc = pcap_activate(p);
  if (rc < 0) {
    std::string why = pcap_geterr(p);
    if (why.empty()) why = pcap_statustostr(rc);
    if (rc == PCAP_ERROR_PERM_DENIED) {
      return Error{"capturing on " + cfg.iface +
                   " needs root (or CAP_NET_RAW and CAP_NET_ADMIN): " + why};
    }
    return fail(why);
  }
  if (pcap_datalink(p) != DLT_EN10MB) return fail("not an Ethernet interface");
  bpf_program prog{};
  if (pcap_compile(p, &prog, cfg.filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) < 0 ||
      pcap_setfilter(p, &prog) < 0) {
    const std::string why = std::string("BPF filter \"") + cfg.filter + "\": " + pcap_geterr(p);
    pcap_freecode(&prog);
    return fail(why);
  }
  pcap_freecode(&prog);
  if (pcap_setdirection(p, PCAP_D_IN) < 0 || pcap_setnonblock(p, 1, errbuf) < 0) {
    return fail(pcap_geterr(p));
  }
  c->fd_ = pcap_get_selectable_fd(p);
  if (c->fd_ < 0) return fail("no selectable file descriptor");
  // Our own frames must never come back to us; on loopback PCAP_D_IN alone does not hide them.
  // Best effort: kernels before 4.20 lack the option and the port filter still excludes them.
  const int one = 1;
  (void)setsockopt(c->fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
  return c;
}

PcapCapture::~PcapCapture() {
  if (handle_) pcap_close(handle_);
}

void PcapCapture::add_counters(metrics::Counters& c) const {
  pcap_stat s{};
  if (pcap_stats(handle_, &s) == 0) {
    c.capture_dropped += s.ps_drop;
    c.capture_if_dropped += s.ps_ifdrop;
  }
  c.capture_truncated += truncated_;
}

std::string PcapCapture::last_error() const {
  return pcap_geterr(handle_);
}

}  // namespace mqtt_proxy::capture
