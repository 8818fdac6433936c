#include "mqtt_proxy/firewall/loopback.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>

#include "mqtt_proxy/firewall/firewall_guard.hpp"
#include "mqtt_proxy/os/fd.hpp"

namespace mqtt_proxy::firewall {

namespace {
constexpr std::string_view kLog = "firewall";

std::string trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return std::string(s);
}

std::string sysctl_path(const LoopbackPaths& p, std::string_view name) {
  return p.sysctl_dir + "/" + std::string(name);
}

Result<std::string> read_sysctl(const LoopbackPaths& p, std::string_view name) {
  std::ifstream in(sysctl_path(p, name));
  std::string v;
  if (!in || !std::getline(in, v)) return Error{"cannot read " + sysctl_path(p, name)};
  return trim(v);
}

Status write_sysctl(const LoopbackPaths& p, std::string_view name, const std::string& value) {
  const std::string path = sysctl_path(p, name);
  const os::Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  const std::string line = value + "\n";
  if (!fd.valid() || ::write(fd.get(), line.data(), line.size()) < 0) {
    return Error{"cannot write " + value + " to " + path + ": " + std::strerror(errno)};
  }
  return {};
}

std::string state_path(const LoopbackPaths& p) {
  std::string ns = p.netns;
  if (ns.empty()) {
    struct stat st {};
    ns = ::stat("/proc/self/ns/net", &st) == 0 ? std::to_string(st.st_ino) : "unknown";
  }
  return p.state_dir + "/lo-net-" + ns;
}

// The state file, open and locked. A file another proxy removed between our open() and our lock
// is opened again, so that no one writes into an unlinked file.
Result<os::Fd> lock_state(const std::string& path, bool create) {
  for (int attempt = 0; attempt < 10; ++attempt) {
    os::Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600));
    if (!fd.valid()) return Error{"cannot open " + path + ": " + std::strerror(errno)};
    if (::flock(fd.get(), LOCK_EX) < 0)
      return Error{"cannot lock " + path + ": " + std::strerror(errno)};
    struct stat held {
    }, named{};
    if (::fstat(fd.get(), &held) == 0 && ::stat(path.c_str(), &named) == 0 &&
        held.st_ino == named.st_ino && held.st_dev == named.st_dev) {
      return fd;
    }
  }
  return Error{path + " keeps being replaced"};
}

std::string read_all(int fd) {
  std::string s;
  char buf[512];
  ssize_t n;
  off_t off = 0;
  while ((n = ::pread(fd, buf, sizeof(buf), off)) > 0) {
    s.append(buf, static_cast<std::size_t>(n));
    off += n;
  }
  return s;
}

Status write_all(int fd, const std::string& text, const std::string& path) {
  if (::ftruncate(fd, 0) < 0 ||
      ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    return Error{"cannot write " + path + ": " + std::strerror(errno)};
  }
  return {};
}

std::string describe(const std::map<std::string, std::string>& values) {
  std::string s;
  for (const auto& name : kLoopbackSysctls) {
    const auto it = values.find(std::string(name));
    s += fmt::format("{}{}={}", s.empty() ? "" : " ", name, it == values.end() ? "?" : it->second);
  }
  return s;
}

void keep_running_owners(LoopbackState& s) {
  std::erase_if(s.owners, [](std::int64_t pid) { return !proxy_runs(pid); });
}

// Puts the originals back and removes the record; the caller holds the lock.
bool restore(const LoopbackPaths& p, const LoopbackState& s, const std::string& path,
             log::Logger& log) {
  bool ok = true;
  for (const auto& [name, value] : s.original) {
    if (auto w = write_sysctl(p, name, value); !w) {
      log.error(kLog, "{}", w.error());
      ok = false;
    }
  }
  ::unlink(path.c_str());
  if (ok) log.info(kLog, "lo: restored {}", describe(s.original));
  return ok;
}
}  // namespace

std::string render_loopback_state(const LoopbackState& s) {
  std::string out;
  for (const auto& [name, value] : s.original) out += name + "=" + value + "\n";
  out += "owners=";
  for (std::size_t k = 0; k < s.owners.size(); ++k) {
    out += (k ? " " : "") + std::to_string(s.owners[k]);
  }
  return out + "\n";
}

std::optional<LoopbackState> parse_loopback_state(std::string_view text) {
  LoopbackState s;
  bool owners_seen = false;
  while (!text.empty()) {
    const auto eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    if (line.empty()) continue;
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) return std::nullopt;
    const std::string_view name = line.substr(0, eq);
    std::string_view value = line.substr(eq + 1);
    if (name == "owners") {
      owners_seen = true;
      while (!value.empty()) {
        const auto sp = value.find(' ');
        const std::string_view word = value.substr(0, sp);
        value = sp == std::string_view::npos ? std::string_view{} : value.substr(sp + 1);
        if (word.empty()) continue;
        std::int64_t pid = 0;
        const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), pid);
        if (ec != std::errc{} || end != word.data() + word.size() || pid <= 0) return std::nullopt;
        s.owners.push_back(pid);
      }
    } else {
      if (value.empty()) return std::nullopt;
      s.original[std::string(name)] = std::string(value);
    }
  }
  for (const auto& name : kLoopbackSysctls) {
    if (!s.original.contains(std::string(name))) return std::nullopt;
  }
  if (!owners_seen) return std::nullopt;
  return s;
}

Result<std::unique_ptr<LoopbackSysctls>> LoopbackSysctls::apply(log::Logger& log,
                                                                LoopbackPaths paths) {
  if (::mkdir(paths.state_dir.c_str(), 0700) < 0 && errno != EEXIST) {
    return Error{"cannot create " + paths.state_dir + ": " + std::strerror(errno)};
  }
  const std::string path = state_path(paths);
  auto fd = lock_state(path, true);
  if (!fd) return Error{fd.error()};
  const std::string text = read_all(fd->get());
  LoopbackState state;
  if (text.empty()) {
    for (const auto& name : kLoopbackSysctls) {
      auto v = read_sysctl(paths, name);
      if (!v) return Error{v.error()};
      state.original[std::string(name)] = *v;
    }
  } else {
    auto parsed = parse_loopback_state(text);
    if (!parsed) {
      return Error{path +
                   " is not a state file of ours; check lo's route_localnet and accept_local, "
                   "then remove it"};
    }
    state = std::move(*parsed);
    const std::size_t recorded = state.owners.size();
    keep_running_owners(state);
    if (state.owners.empty() && recorded > 0) {
      log.info(kLog, "lo: taking over from proxies that no longer run; the originals were {}",
               describe(state.original));
    }
  }
  state.owners.push_back(::getpid());
  // Recorded before anything changes, so that a crash in between still leaves the originals.
  if (auto w = write_all(fd->get(), render_loopback_state(state), path); !w) {
    return Error{w.error()};
  }
  std::unique_ptr<LoopbackSysctls> l(new LoopbackSysctls(log, std::move(paths)));
  l->held_ = true;  // from here on, a failure releases what was recorded
  for (const auto& name : kLoopbackSysctls) {
    if (auto w = write_sysctl(l->paths_, name, "1"); !w) {
      fd->reset();  // unlocked first: destroying `l` releases, which locks again
      return Error{w.error()};
    }
  }
  // The lock is held until here, so that a proxy leaving at the same time cannot restore the
  // originals between our record and our writes.
  log.info(kLog,
           "lo: route_localnet=1 accept_local=1 while we run (were {}), so that the kernel "
           "accepts the segments the proxy injects on lo",
           describe(state.original));
  return l;
}

bool LoopbackSysctls::release() {
  if (!held_) return true;
  held_ = false;
  const std::string path = state_path(paths_);
  auto fd = lock_state(path, false);
  if (!fd) {
    log_.error(kLog, "lo's sysctls not restored: {}", fd.error());
    return false;
  }
  auto state = parse_loopback_state(read_all(fd->get()));
  if (!state) {
    log_.error(kLog, "lo's sysctls not restored: {} is not a state file of ours", path);
    return false;
  }
  std::erase(state->owners, static_cast<std::int64_t>(::getpid()));
  keep_running_owners(*state);
  if (state->owners.empty()) return restore(paths_, *state, path, log_);
  log_.info(kLog, "lo: route_localnet and accept_local stay at 1 for {} other proxy(ies)",
            state->owners.size());
  if (auto w = write_all(fd->get(), render_loopback_state(*state), path); !w) {
    log_.error(kLog, "{}", w.error());
    return false;
  }
  return true;
}

LoopbackSysctls::~LoopbackSysctls() {
  release();
}

Result<bool> restore_loopback_leftovers(log::Logger& log, LoopbackPaths paths) {
  const std::string path = state_path(paths);
  if (::access(path.c_str(), F_OK) < 0) return false;
  auto fd = lock_state(path, false);
  if (!fd) return Error{fd.error()};
  auto state = parse_loopback_state(read_all(fd->get()));
  if (!state) return Error{path + " is not a state file of ours"};
  keep_running_owners(*state);
  if (!state->owners.empty()) {
    log.info(kLog, "lo: {} running proxy(ies) still rely on route_localnet and accept_local",
             state->owners.size());
    return false;
  }
  if (!restore(paths, *state, path, log)) return Error{"lo's sysctls could not be restored"};
  return true;
}

}  // namespace mqtt_proxy::firewall
