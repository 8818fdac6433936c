// mqtt_proxy_delay: delays the packets an iptables NFQUEUE rule hands it, by destination address,
// then lets them go on (docs/testbed-delay.md; mininet/delay.py installs the rule and starts it).
//
//   iptables -t mangle -A POSTROUTING -o h1-eth0 -j NFQUEUE --queue-num 1
//   mqtt_proxy_delay --queue 1 --delay 192.168.1.103=10 --default-delay 0
//
// or on what the host receives, by source (--match source; iptables PREROUTING -i h1-eth0).
// The latter keeps TCP's throughput: a packet held on the way out still counts against its
// socket's send allowance (TCP Small Queues lets a flow have about two packets below it), while
// netem orphans the packets it delays and a received packet belongs to no socket yet
// (docs/testbed-delay.md, Limits).
//
// Why this is hand-written: the testbed's links need a delay (the prototype gave host links -d and
// switch links -D through Mininet's TCLink, which is netem), and this kernel has no netem and no
// loadable modules (environment.md). Everything Debian 12 packages for delaying packets drives
// netem (tc, Mininet's TCLink, pumba, comcast), the other qdiscs here (HTB, TBF, pfifo) shape rate,
// not latency, and fq, whose departure times a BPF program could set, is not built in either.
// NFQUEUE is built in; libnetfilter-queue gives the packets to user space, where holding a verdict
// is holding the packet. Only the packets' ids live here: the kernel keeps the packets.
//
// One thread, one epoll loop over the queue's netlink socket, a timerfd on CLOCK_MONOTONIC armed
// for the earliest release, and a signalfd for SIGTERM/SIGINT. The holding and ordering is the
// pure DelayLine (include/mqtt_proxy/delay/delay_line.hpp), tested on virtual time.
#include <arpa/inet.h>
#include <fcntl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/program_options.hpp>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "mqtt_proxy/delay/delay_line.hpp"
#include "mqtt_proxy/os/fd.hpp"

namespace {

using namespace mqtt_proxy;
using delay::DelayLine;
using delay::DelayTable;
namespace po = boost::program_options;

// Enough of each packet for the largest IPv4 header (IHL 15): the destination is all that is
// read, and the header length check needs the header whole. The kernel copies no more.
constexpr unsigned kCopyBytes = 60;
// The kernel queue must not be the limit that acts first: its own drops are silent to us, ours
// are counted. It holds what we hold plus what waits in the socket, hence the headroom.
constexpr std::uint32_t kKernelHeadroom = 4096;
// Bursts wait in the socket while the loop issues verdicts; a message here is about 200 bytes.
// Beyond the buffer the kernel drops the packet (counted below as `lost`, from the id gaps).
constexpr unsigned kSocketBuffer = 16u << 20;
// Messages read per wakeup before due packets are released, so a flood cannot hold back the
// verdicts of packets whose time has come.
constexpr int kReadBatch = 32;
constexpr std::size_t kDefaultMaxPackets = 50000;

struct Options {
  std::uint16_t queue = 0;
  bool match_source = false;  // --match source: the table is keyed by the packets' sources
  std::vector<std::string> delays;
  std::string default_delay = "0";
  std::size_t max_packets = kDefaultMaxPackets;
};

enum class Parse { Run, Exit0, Error };

template <typename T>
bool to_number(const std::string& s, T max, T& out) {
  T v{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || v > max) return false;
  out = v;
  return true;
}

Parse parse_options(int argc, const char* const* argv, Options& out, DelayTable& table,
                    std::string& message) {
  std::string queue = "0";
  std::string max_packets = std::to_string(kDefaultMaxPackets);
  std::string match = "destination";
  po::options_description desc(
      "Usage: mqtt_proxy_delay [options]\n"
      "Holds the packets of NFQUEUE queue N for a delay chosen by their destination address, then\n"
      "accepts them. Prints \"ready\" once the queue is bound; SIGTERM/SIGINT accepts what is "
      "held\nand exits.\n\nOptions");
  // clang-format off
  desc.add_options()
    ("help,h", "show this help and exit")
    ("queue", po::value<std::string>(&queue)->default_value(queue), "NFQUEUE queue number, 0..65535")
    ("delay", po::value<std::vector<std::string>>(&out.delays)->composing(),
     "IP=MS: delay packets to IP (from IP with --match source) by MS milliseconds (fractions "
     "allowed); repeatable")
    ("default-delay", po::value<std::string>(&out.default_delay)->default_value(out.default_delay),
     "delay of packets to (from) every other address, in milliseconds")
    ("max-packets", po::value<std::string>(&max_packets)->default_value(max_packets),
     "packets held at once; beyond, packets are dropped and counted (as netem's limit does)")
    ("match", po::value<std::string>(&match)->default_value(match),
     "destination: IP in --delay is the packets' destination (a rule on a host's output); "
     "source: their source (a rule on its input)");
  // clang-format on
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    message = e.what();
    return Parse::Error;
  }
  if (vm.count("help")) {
    std::ostringstream s;
    s << desc << "\nExample: mqtt_proxy_delay --queue 1 --delay 192.168.1.103=10 --delay "
      << "192.168.1.104=2.5\n";
    message = s.str();
    return Parse::Exit0;
  }
  // Parsed here rather than by Boost: its unsigned conversion takes "-1" as the largest value.
  if (!to_number<std::uint16_t>(queue, std::numeric_limits<std::uint16_t>::max(), out.queue)) {
    message = "--queue must be 0..65535, not \"" + queue + "\"";
    return Parse::Error;
  }
  if (!to_number<std::size_t>(max_packets, std::numeric_limits<std::uint32_t>::max() / 2,
                              out.max_packets) ||
      out.max_packets == 0) {
    message = "--max-packets must be 1..2147483647, not \"" + max_packets + "\"";
    return Parse::Error;
  }
  if (match != "destination" && match != "source") {
    message = "--match must be destination or source, not \"" + match + "\"";
    return Parse::Error;
  }
  out.match_source = match == "source";
  auto default_delay = delay::parse_delay_ms(out.default_delay);
  if (!default_delay) {
    message = "--default-delay: " + default_delay.error();
    return Parse::Error;
  }
  auto parsed = delay::parse_delay_table(out.delays, *default_delay);
  if (!parsed) {
    message = "--delay " + parsed.error();
    return Parse::Error;
  }
  table = std::move(*parsed);
  return Parse::Run;
}

TimePoint monotonic_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return TimePoint{std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)};
}

std::string errno_text() {
  return std::strerror(errno);
}

// The queue, its packets' ids and the counters the loop keeps beside the DelayLine's.
class Element {
 public:
  Element(DelayTable table, std::size_t max_packets, bool match_source)
      : line_(std::move(table), max_packets), match_source_(match_source) {}
  Element(const Element&) = delete;
  Element& operator=(const Element&) = delete;
  ~Element() {
    if (queue_ != nullptr) nfq_destroy_queue(queue_);
    if (handle_ != nullptr) nfq_close(handle_);
  }

  // Empty on success, else the line to print.
  std::string bind(std::uint16_t num) {
    handle_ = nfq_open();
    if (handle_ == nullptr) return "cannot open a netfilter queue socket: " + errno_text();
    queue_ = nfq_create_queue(handle_, num, &Element::on_message, this);
    if (queue_ == nullptr) {
      const int e = errno;
      std::string hint;
      // The kernel answers EPERM both without CAP_NET_ADMIN and when another socket holds the
      // queue (queues are per network namespace).
      if (e == EPERM) {
        hint = ::geteuid() == 0 ? " (another program holds this queue in this network namespace)"
                                : " (needs root: CAP_NET_ADMIN)";
      }
      return "cannot bind NFQUEUE queue " + std::to_string(num) + ": " + std::strerror(e) + hint;
    }
    if (nfq_set_mode(queue_, NFQNL_COPY_PACKET, kCopyBytes) < 0) {
      return "cannot set the copy mode of queue " + std::to_string(num) + ": " + errno_text();
    }
    const auto max = static_cast<std::uint32_t>(line_.max_packets()) + kKernelHeadroom;
    if (nfq_set_queue_maxlen(queue_, max) < 0) {
      return "cannot set the length of queue " + std::to_string(num) + ": " + errno_text();
    }
    // GSO packets queued whole instead of segmented first: they are only accepted, never read
    // beyond the header, so segmenting them would only cost time. Older kernels refuse the
    // flag; segmented packets are delayed just the same.
    (void)nfq_set_queue_flags(queue_, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO);
    (void)nfnl_rcvbufsiz(nfq_nfnlh(handle_), kSocketBuffer);
    fd_ = nfq_fd(handle_);
    const int flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) < 0) {
      return "cannot make the queue socket non-blocking: " + errno_text();
    }
    return {};
  }

  int fd() const { return fd_; }

  // Reads up to `limit` messages; false on a socket error other than "nothing more" and "buffer
  // overrun" (the latter is counted: the kernel dropped those packets).
  bool drain(int limit) {
    for (int n = 0; n < limit; ++n) {
      const ssize_t got = ::recv(fd_, buffer_.data(), buffer_.size(), 0);
      if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        if (errno == EINTR) continue;
        if (errno == ENOBUFS) {
          ++socket_overruns_;
          continue;
        }
        error_ = "reading the queue socket: " + errno_text();
        return false;
      }
      now_ = monotonic_now();
      // Verdict errors (an id the kernel no longer holds) come back as error messages and make
      // this return -1; there is nothing to do about them.
      (void)nfq_handle_packet(handle_, buffer_.data(), static_cast<int>(got));
    }
    return true;
  }

  void release_due(TimePoint now) {
    due_.clear();
    line_.release_due(now, due_);
    accept(due_);
  }

  void release_all() {
    due_.clear();
    line_.release_all(due_);
    accept(due_);
  }

  std::optional<TimePoint> next_release() const { return line_.next_release(); }
  const std::string& error() const { return error_; }

  void print_counters() const {
    const auto& s = line_.stats();
    const auto us = [](Duration d) {
      return static_cast<long long>(std::chrono::duration_cast<microseconds>(d).count());
    };
    const auto on_time = static_cast<std::int64_t>(s.released - s.flushed);
    const auto late_mean = on_time > 0 ? s.late_total / on_time : Duration::zero();
    std::printf(
        "counters: packets=%llu released=%llu flushed=%llu max_held=%zu overflowed=%llu "
        "unparsed=%llu lost=%llu socket_overruns=%llu verdict_errors=%llu late_mean_us=%lld "
        "late_max_us=%lld\n",
        static_cast<unsigned long long>(s.packets), static_cast<unsigned long long>(s.released),
        static_cast<unsigned long long>(s.flushed), s.max_held,
        static_cast<unsigned long long>(s.overflowed), static_cast<unsigned long long>(unparsed_),
        static_cast<unsigned long long>(lost_), static_cast<unsigned long long>(socket_overruns_),
        static_cast<unsigned long long>(verdict_errors_), us(late_mean), us(s.late_max));
    std::fflush(stdout);
  }

 private:
  static int on_message(nfq_q_handle* /*queue*/, nfgenmsg* /*msg*/, nfq_data* data, void* self) {
    static_cast<Element*>(self)->on_packet(data);
    return 0;
  }

  void on_packet(nfq_data* data) {
    const nfqnl_msg_packet_hdr* header = nfq_get_msg_packet_hdr(data);
    if (header == nullptr) return;
    const std::uint32_t id = ntohl(header->packet_id);
    // The kernel numbers a queue's packets 1, 2, 3, ... and takes the number before it tries
    // our socket; a packet it could not deliver (socket full) is dropped there, so a gap is
    // exactly the packets lost that way.
    if (seen_any_) lost_ += static_cast<std::uint32_t>(id - expected_id_);
    seen_any_ = true;
    expected_id_ = id + 1;
    unsigned char* payload = nullptr;
    const int length = nfq_get_payload(data, &payload);
    std::optional<wire::Ipv4Address> addr;
    if (length > 0 && payload != nullptr) {
      const ByteSpan packet{reinterpret_cast<const std::byte*>(payload),
                            static_cast<std::size_t>(length)};
      addr = match_source_ ? delay::ipv4_source(packet) : delay::ipv4_destination(packet);
    }
    bool held = false;
    if (addr) {
      held = line_.push(id, *addr, now_);
    } else {
      // Only IPv4 reaches an iptables rule; count it anyway and give it the default.
      ++unparsed_;
      held = line_.push_for(id, line_.table().default_delay(), now_);
    }
    if (!held) verdict(id, NF_DROP);
  }

  void accept(const std::vector<std::uint32_t>& ids) {
    for (const auto id : ids) verdict(id, NF_ACCEPT);
  }

  void verdict(std::uint32_t id, std::uint32_t what) {
    if (nfq_set_verdict(queue_, id, what, 0, nullptr) < 0) ++verdict_errors_;
  }

  DelayLine line_;
  bool match_source_;
  nfq_handle* handle_ = nullptr;
  nfq_q_handle* queue_ = nullptr;
  int fd_ = -1;
  std::vector<char> buffer_ = std::vector<char>(65536);
  std::vector<std::uint32_t> due_;
  TimePoint now_{};
  std::uint32_t expected_id_ = 0;
  bool seen_any_ = false;
  std::uint64_t unparsed_ = 0;
  std::uint64_t lost_ = 0;
  std::uint64_t socket_overruns_ = 0;
  std::uint64_t verdict_errors_ = 0;
  std::string error_;
};

bool arm(int timer, std::optional<TimePoint> at) {
  itimerspec spec{};  // all zero: disarmed
  if (at) {
    const auto ns = at->time_since_epoch().count();
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
    // A zero value would disarm; the clock is far past its epoch, but never rely on that.
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
  }
  return ::timerfd_settime(timer, TFD_TIMER_ABSTIME, &spec, nullptr) == 0;
}

int run(const Options& opt, DelayTable table) {
  const std::size_t entries = table.size();
  const auto default_ms = std::chrono::duration<double, std::milli>(table.default_delay()).count();
  // Blocked before anything else, so the signals are only ever read from the signalfd.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  if (::sigprocmask(SIG_BLOCK, &signals, nullptr) < 0) {
    std::fprintf(stderr, "mqtt_proxy_delay: sigprocmask: %s\n", errno_text().c_str());
    return 1;
  }
  const os::Fd signal_fd(::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC));
  const os::Fd timer_fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  const os::Fd epoll_fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!signal_fd.valid() || !timer_fd.valid() || !epoll_fd.valid()) {
    std::fprintf(stderr, "mqtt_proxy_delay: %s\n", errno_text().c_str());
    return 1;
  }
  Element element(std::move(table), opt.max_packets, opt.match_source);
  if (const auto failed = element.bind(opt.queue); !failed.empty()) {
    std::fprintf(stderr, "mqtt_proxy_delay: %s\n", failed.c_str());
    return 1;
  }
  for (const int fd : {element.fd(), timer_fd.get(), signal_fd.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
      std::fprintf(stderr, "mqtt_proxy_delay: epoll_ctl: %s\n", errno_text().c_str());
      return 1;
    }
  }
  std::fprintf(stderr,
               "mqtt_proxy_delay: queue %u bound: %zu %s(s) with their own delay, %.3f ms for "
               "the others, at most %zu packets held\n",
               unsigned{opt.queue}, entries, opt.match_source ? "source" : "destination",
               default_ms, opt.max_packets);
  std::puts("ready");
  std::fflush(stdout);

  bool stopping = false;
  while (!stopping) {
    std::array<epoll_event, 4> events{};
    const int n = ::epoll_wait(epoll_fd.get(), events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "mqtt_proxy_delay: epoll_wait: %s\n", errno_text().c_str());
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[static_cast<std::size_t>(i)].data.fd;
      if (fd == element.fd()) {
        if (!element.drain(kReadBatch)) {
          std::fprintf(stderr, "mqtt_proxy_delay: %s\n", element.error().c_str());
          return 1;
        }
      } else if (fd == timer_fd.get()) {
        std::uint64_t expirations = 0;
        (void)::read(timer_fd.get(), &expirations, sizeof expirations);
      } else if (fd == signal_fd.get()) {
        signalfd_siginfo info{};
        (void)::read(signal_fd.get(), &info, sizeof info);
        stopping = true;
      }
    }
    element.release_due(monotonic_now());
    if (!arm(timer_fd.get(), element.next_release())) {
      std::fprintf(stderr, "mqtt_proxy_delay: timerfd_settime: %s\n", errno_text().c_str());
      return 1;
    }
  }
  // What already waits in the socket is taken in too, so it is accepted rather than dropped
  // when the queue is unbound (mininet/delay.py removes the iptables rule first, so nothing new
  // arrives).
  // Bounded: should something else still feed the queue, the element exits all the same.
  (void)element.drain(static_cast<int>(
      std::min<std::size_t>(opt.max_packets + kKernelHeadroom, std::numeric_limits<int>::max())));
  element.release_all();
  element.print_counters();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  DelayTable table;
  std::string message;
  try {
    switch (parse_options(argc, argv, opt, table, message)) {
      case Parse::Exit0:
        std::fputs(message.c_str(), stdout);
        return 0;
      case Parse::Error:
        std::fprintf(stderr, "mqtt_proxy_delay: %s (see mqtt_proxy_delay --help)\n",
                     message.c_str());
        return 2;
      case Parse::Run:
        break;
    }
    return run(opt, std::move(table));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mqtt_proxy_delay: %s\n", e.what());
    return 1;
  }
}
