#include "mqtt_proxy/capture/pcap_capture.hpp"

#include <linux/if_packet.h>
#include <sys/socket.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

namespace mqtt_proxy::capture {

std::unique_ptr<PcapCapture> PcapCapture::open(const CaptureConfig& cfg, OpenError& kind,
                                               std::string& error) {
  kind = OpenError::None;
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p = pcap_create(cfg.iface.c_str(), errbuf);
  if (!p) {
    kind = OpenError::Other;
    error = errbuf;
    return nullptr;
  }
  std::unique_ptr<PcapCapture> c(new PcapCapture());
  c->handle_ = p;
  c->iface_ = cfg.iface;

  pcap_set_snaplen(p, cfg.snaplen);
  pcap_set_promisc(p, 0);
  pcap_set_immediate_mode(p, 1);
  pcap_set_buffer_size(p, cfg.buffer_bytes);
  const int rc = pcap_activate(p);
  if (rc < 0) {
    kind = (rc == PCAP_ERROR_PERM_DENIED)      ? OpenError::PermissionDenied
           : (rc == PCAP_ERROR_NO_SUCH_DEVICE) ? OpenError::NoSuchDevice
                                               : OpenError::Other;
    error = pcap_geterr(p);
    if (error.empty()) error = pcap_statustostr(rc);
    return nullptr;
  }
  if (pcap_datalink(p) != DLT_EN10MB) {
    kind = OpenError::Other;
    error = "not an Ethernet interface";
    return nullptr;
  }
  bpf_program prog{};
  if (pcap_compile(p, &prog, cfg.filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) < 0 ||
      pcap_setfilter(p, &prog) < 0) {
    kind = OpenError::Other;
    error = std::string("BPF filter \"") + cfg.filter + "\": " + pcap_geterr(p);
    pcap_freecode(&prog);
    return nullptr;
  }
  pcap_freecode(&prog);
  if (pcap_setdirection(p, PCAP_D_IN) < 0 || pcap_setnonblock(p, 1, errbuf) < 0) {
    kind = OpenError::Other;
    error = pcap_geterr(p);
    return nullptr;
  }
  c->fd_ = pcap_get_selectable_fd(p);
  if (c->fd_ < 0) {
    kind = OpenError::Other;
    error = "no selectable file descriptor";
    return nullptr;
  }
  // Our own frames must never come back to us; on loopback PCAP_D_IN alone does not hide them.
  // Best effort: kernels before 4.20 lack the option and the port filter still excludes them.
  const int one = 1;
  (void)setsockopt(c->fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
  return c;
}

PcapCapture::~PcapCapture() {
  if (handle_) pcap_close(handle_);
}

CaptureStats PcapCapture::stats() const {
  pcap_stat s{};
  if (pcap_stats(handle_, &s) < 0) return {};
  return CaptureStats{s.ps_recv, s.ps_drop, s.ps_ifdrop, truncated_};
}

std::string PcapCapture::last_error() const {
  return pcap_geterr(handle_);
}

}  // namespace mqtt_proxy::capture
