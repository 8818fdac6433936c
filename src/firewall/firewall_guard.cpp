#include "mqtt_proxy/firewall/firewall_guard.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace mqtt_proxy::firewall {

namespace {
constexpr std::string_view kLog = "firewall";

std::vector<std::string> iptables(const char* op, const std::vector<std::string>& rule) {
  std::vector<std::string> argv{"iptables", "-w", "5", "-t", "raw", op, "PREROUTING"};
  argv.insert(argv.end(), rule.begin(), rule.end());
  return argv;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) {
    if (!s.empty()) s += ' ';
    s += a.find(' ') == std::string::npos ? a : '"' + a + '"';
  }
  return s;
}
}  // namespace

int run_program(const std::vector<std::string>& argv, std::string& err_output,
                std::string* std_output) {
  err_output.clear();
  if (std_output) std_output->clear();
  int errpipe[2];
  int outpipe[2] = {-1, -1};
  if (::pipe2(errpipe, O_CLOEXEC) < 0) return -1;
  if (std_output && ::pipe2(outpipe, O_CLOEXEC) < 0) {
    ::close(errpipe[0]);
    ::close(errpipe[1]);
    return -1;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {errpipe[0], errpipe[1], outpipe[0], outpipe[1]}) {
      if (fd >= 0) ::close(fd);
    }
    return -1;
  }
  if (pid == 0) {
    // The event loop blocks SIGINT/SIGTERM for its signalfd; the child must not inherit that.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    const int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
    }
    if (outpipe[1] >= 0) ::dup2(outpipe[1], 1);
    ::dup2(errpipe[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    // Debian keeps iptables in /usr/sbin, which a non-login PATH may lack.
    const std::string fallback = std::string("/usr/sbin/") + argv[0];
    ::execv(fallback.c_str(), args.data());
    ::_exit(127);
  }
  ::close(errpipe[1]);
  if (outpipe[1] >= 0) ::close(outpipe[1]);
  // Both pipes are read as data comes, so a child that fills one while we wait on the other
  // cannot block. stderr is kept to 4 KiB, stdout (a rule listing) whole.
  struct Stream {
    int fd;
    std::string* into;
    std::size_t cap;
  };
  std::vector<Stream> open_streams{{errpipe[0], &err_output, 4096}};
  if (std_output) open_streams.push_back({outpipe[0], std_output, std::string::npos});
  char buf[4096];
  while (!open_streams.empty()) {
    std::vector<pollfd> fds;
    for (const auto& st : open_streams) fds.push_back({st.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (std::size_t i = fds.size(); i-- > 0;) {
      if (fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) {
        Stream& st = open_streams[i];
        if (st.into->size() < st.cap) st.into->append(buf, static_cast<std::size_t>(n));
        continue;
      }
      ::close(fds[i].fd);
      open_streams.erase(open_streams.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  for (const auto& st : open_streams) ::close(st.fd);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  while (!err_output.empty() && (err_output.back() == '\n' || err_output.back() == '\r')) {
    err_output.pop_back();
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return -1;
}

namespace {
std::string read_comm(const std::string& path) {
  std::ifstream in(path);
  std::string name;
  std::getline(in, name);
  return name;
}

}  // namespace

// A pid reused by another program does not count. When in doubt, leaving a leftover is better than
// removing a live rule.
bool proxy_runs(std::int64_t pid) {
  if (pid == ::getpid()) return false;
  if (::kill(static_cast<pid_t>(pid), 0) < 0 && errno == ESRCH) return false;
  const std::string ours = read_comm("/proc/self/comm");
  const std::string theirs = read_comm("/proc/" + std::to_string(pid) + "/comm");
  if (ours.empty() || theirs.empty()) return true;
  return theirs == ours;
}

namespace {

Result<std::vector<TaggedRule>> list_ours() {
  std::string out;
  std::string err;
  const int rc = run_program(iptables("-S", {}), err, &out);
  if (rc == 127 || rc < 0) return Error{"cannot run iptables (is the iptables package installed?)"};
  if (rc != 0) return Error{"iptables -t raw -S PREROUTING failed: " + err};
  return tagged_rules(out);
}

bool guards(const TaggedRule& r, const std::vector<std::string>& ifaces, std::uint16_t port) {
  return r.port == port &&
         (ifaces.empty() || std::find(ifaces.begin(), ifaces.end(), r.iface) != ifaces.end());
}

// Deletes the leftovers among `rules`. One that cannot be deleted (another process removed it
// since the listing, say) is logged and skipped: the others still go.
LeftoverCount delete_leftovers(const std::vector<TaggedRule>& rules,
                               const std::vector<std::string>& ifaces, std::uint16_t port,
                               log::Logger& log) {
  LeftoverCount n;
  for (const auto& r : rules) {
    if (!guards(r, ifaces, port)) continue;
    if (r.owner && proxy_runs(*r.owner)) {
      log.info(kLog, "another mqtt_proxy (pid {}) guards {} port {}; its rule stays", *r.owner,
               r.iface, r.port);
      continue;
    }
    std::string err;
    if (run_program(iptables("-D", r.spec), err) != 0) {
      log.warn(kLog, "could not remove the leftover iptables -t raw -A PREROUTING {}{}",
               join(r.spec), err.empty() ? std::string() : ": " + err);
      ++n.failed;
      continue;
    }
    log.info(kLog, "removed a leftover of {}: iptables -t raw -A PREROUTING {}",
             r.owner ? fmt::format("pid {}, which no longer runs", *r.owner)
                     : std::string("an older version"),
             join(r.spec));
    ++n.removed;
  }
  return n;
}
}  // namespace

Result<std::unique_ptr<FirewallGuard>> FirewallGuard::install(
    const std::vector<std::string>& ifaces, std::uint16_t port, log::Logger& log) {
  auto before = list_ours();
  if (!before) return Error{before.error()};
  std::unique_ptr<FirewallGuard> g(new FirewallGuard(log));
  for (const auto& iface : ifaces) {
    const auto rule = drop_rule(iface, port, ::getpid());
    std::string err;
    if (run_program(iptables("-A", rule), err) != 0) {
      // The guard's destructor removes what was added so far.
      return Error{"iptables -t raw -A PREROUTING " + join(rule) + " failed" +
                   (err.empty() ? std::string() : ": " + err)};
    }
    log.info(kLog, "added: iptables -t raw -A PREROUTING {}", join(rule));
    g->added_.push_back(rule);
  }
  // Only now, with our rules in place, do the leftovers go: the port is guarded throughout.
  g->leftovers_removed_ = delete_leftovers(*before, ifaces, port, log).removed;
  return g;
}

Result<LeftoverCount> remove_leftovers(const std::vector<std::string>& ifaces, std::uint16_t port,
                                       log::Logger& log) {
  auto rules = list_ours();
  if (!rules) return Error{rules.error()};
  return delete_leftovers(*rules, ifaces, port, log);
}

bool FirewallGuard::remove_all() {
  bool ok = true;
  for (const auto& rule : added_) {
    std::string err;
    if (run_program(iptables("-D", rule), err) == 0) {
      log_.info(kLog, "removed: iptables -t raw -D PREROUTING {}", join(rule));
    } else {
      ok = false;
      log_.error(kLog, "could not remove: iptables -t raw -D PREROUTING {}: {}", join(rule), err);
    }
  }
  added_.clear();
  return ok;
}

FirewallGuard::~FirewallGuard() {
  remove_all();
}

}  // namespace mqtt_proxy::firewall
