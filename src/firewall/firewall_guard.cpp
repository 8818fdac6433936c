#include "mqtt_proxy/firewall/firewall_guard.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mqtt_proxy::firewall {

namespace {
constexpr std::string_view kLog = "firewall";
constexpr const char* kComment = "mqtt_proxy";

std::vector<std::string> iptables(const char* op, const std::vector<std::string>& rule) {
  std::vector<std::string> argv{"iptables", "-w", "5", "-t", "raw", op, "PREROUTING"};
  argv.insert(argv.end(), rule.begin(), rule.end());
  return argv;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}
}  // namespace

std::vector<std::string> drop_rule(const std::string& iface, std::uint16_t port) {
  return {"-i",        iface,      "-p",         "tcp",   "--dport", std::to_string(port),
          "-m",        "addrtype", "--dst-type", "LOCAL", "-m",      "comment",
          "--comment", kComment,   "-j",         "DROP"};
}

int run_program(const std::vector<std::string>& argv, std::string& err_output) {
  err_output.clear();
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) < 0) return -1;
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipefd[0]);
    ::close(pipefd[1]);
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
    ::dup2(pipefd[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    // Debian keeps iptables in /usr/sbin, which a non-login PATH may lack.
    const std::string fallback = std::string("/usr/sbin/") + argv[0];
    ::execv(fallback.c_str(), args.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(pipefd[0], buf, sizeof(buf));
    if (n > 0) {
      if (err_output.size() < 4096) err_output.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  ::close(pipefd[0]);
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

Result<std::unique_ptr<FirewallGuard>> FirewallGuard::install(
    const std::vector<std::string>& ifaces, std::uint16_t port, log::Logger& log) {
  std::unique_ptr<FirewallGuard> g(new FirewallGuard(log));
  for (const auto& iface : ifaces) {
    const auto rule = drop_rule(iface, port);
    std::string err;
    const int check = run_program(iptables("-C", rule), err);
    if (check == 0) {
      log.info(kLog, "rule already present, left as is: iptables -t raw -A PREROUTING {}",
               join(rule));
      continue;
    }
    if (check == 127 || check < 0) {
      return Error{"cannot run iptables (is the iptables package installed?)"};
    }
    const int add = run_program(iptables("-A", rule), err);
    if (add != 0) {
      // The guard's destructor removes what was added so far.
      return Error{"iptables -t raw -A PREROUTING " + join(rule) + " failed" +
                   (err.empty() ? std::string() : ": " + err)};
    }
    log.info(kLog, "added: iptables -t raw -A PREROUTING {}", join(rule));
    g->added_.push_back(rule);
  }
  return g;
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
