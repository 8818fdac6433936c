#include "mqtt_proxy/firewall/loopback.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace mqtt_proxy::firewall {
namespace {

namespace fs = std::filesystem;

TEST(LoopbackState, RoundTripsAndRefusesWhatIsNotOurs) {
  const LoopbackState s{{{"accept_local", "0"}, {"route_localnet", "0"}}, {12, 345}};
  const std::string text = render_loopback_state(s);
  EXPECT_EQ(text, "accept_local=0\nroute_localnet=0\nowners=12 345\n");
  EXPECT_EQ(parse_loopback_state(text), s);
  EXPECT_EQ(parse_loopback_state("accept_local=1\nroute_localnet=0\nowners=\n")->owners.size(), 0u);
  EXPECT_FALSE(parse_loopback_state("route_localnet=0\nowners=1\n"));        // a sysctl missing
  EXPECT_FALSE(parse_loopback_state("accept_local=0\nroute_localnet=0\n"));  // no owners line
  EXPECT_FALSE(parse_loopback_state("accept_local=0\nroute_localnet=0\nowners=1x\n"));
  EXPECT_FALSE(parse_loopback_state("accept_local=0\nroute_localnet=0\nowners=-3\n"));
  EXPECT_FALSE(parse_loopback_state("accept_local\nroute_localnet=0\nowners=1\n"));
  EXPECT_FALSE(parse_loopback_state("accept_local=\nroute_localnet=0\nowners=1\n"));
}

// A fake /proc/sys/net/ipv4/conf/lo and state directory, so the test changes nothing of the host.
class LoopbackSysctlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mqtt_proxy_loopback_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    paths_.sysctl_dir = root_ + "/conf";
    paths_.state_dir = root_ + "/run";
    paths_.netns = "4026531840";
    fs::create_directories(paths_.sysctl_dir);
    set("route_localnet", "0");
    set("accept_local", "0");
  }
  void TearDown() override {
    for (pid_t c : children_) {
      ::kill(c, SIGKILL);
      ::waitpid(c, nullptr, 0);
    }
    fs::remove_all(root_);
  }
  void set(const std::string& name, const std::string& v) {
    std::ofstream(paths_.sysctl_dir + "/" + name) << v << "\n";
  }
  std::string get(const std::string& name) {
    std::ifstream in(paths_.sysctl_dir + "/" + name);
    std::string v;
    std::getline(in, v);
    return v;
  }
  std::string state_file() const { return paths_.state_dir + "/lo-net-" + paths_.netns; }
  void write_state(const LoopbackState& s) {
    fs::create_directories(paths_.state_dir);
    std::ofstream(state_file()) << render_loopback_state(s);
  }
  // A process with our program name that keeps running: another proxy, as proxy_runs() sees it.
  pid_t live_process() {
    const pid_t c = ::fork();
    if (c == 0) {
      ::pause();
      ::_exit(0);
    }
    children_.push_back(c);
    return c;
  }
  // A pid that ran and ended: a crashed proxy.
  static pid_t dead_process() {
    const pid_t c = ::fork();
    if (c == 0) ::_exit(0);
    ::waitpid(c, nullptr, 0);
    return c;
  }

  std::string root_;
  LoopbackPaths paths_;
  std::vector<pid_t> children_;
  log::Logger log_;
};

TEST_F(LoopbackSysctlsTest, SetsBothWhileHeldAndRestoresTheOriginals) {
  set("accept_local", "2");  // whatever it was comes back, not a guessed 0
  {
    auto lo = LoopbackSysctls::apply(log_, paths_);
    ASSERT_TRUE(lo) << lo.error();
    EXPECT_EQ(get("route_localnet"), "1");
    EXPECT_EQ(get("accept_local"), "1");
    const auto s = parse_loopback_state([&] {
      std::ifstream in(state_file());
      return std::string(std::istreambuf_iterator<char>(in), {});
    }());
    ASSERT_TRUE(s);
    EXPECT_EQ(s->original.at("accept_local"), "2");
    EXPECT_EQ(s->owners, std::vector<std::int64_t>{::getpid()});
  }
  EXPECT_EQ(get("route_localnet"), "0");
  EXPECT_EQ(get("accept_local"), "2");
  EXPECT_FALSE(fs::exists(state_file()));
}

TEST_F(LoopbackSysctlsTest, AfterACrashTheRecordedOriginalsComeBackNotTheCrashedProxysOnes) {
  // A proxy set them and was killed: the sysctls are 1, the record says 0.
  set("route_localnet", "1");
  set("accept_local", "1");
  write_state({{{"accept_local", "0"}, {"route_localnet", "0"}}, {dead_process()}});
  {
    auto lo = LoopbackSysctls::apply(log_, paths_);
    ASSERT_TRUE(lo) << lo.error();
  }
  EXPECT_EQ(get("route_localnet"), "0");
  EXPECT_EQ(get("accept_local"), "0");

  // --cleanup does the same without a proxy.
  set("route_localnet", "1");
  set("accept_local", "1");
  write_state({{{"accept_local", "0"}, {"route_localnet", "0"}}, {dead_process()}});
  auto restored = restore_loopback_leftovers(log_, paths_);
  ASSERT_TRUE(restored) << restored.error();
  EXPECT_TRUE(*restored);
  EXPECT_EQ(get("route_localnet"), "0");
  EXPECT_FALSE(fs::exists(state_file()));
  EXPECT_FALSE(*restore_loopback_leftovers(log_, paths_));  // nothing left
}

TEST_F(LoopbackSysctlsTest, TheLastLiveOwnerRestoresAndCleanupLeavesARunningOnesAlone) {
  const pid_t other = live_process();
  set("route_localnet", "1");
  set("accept_local", "1");
  write_state({{{"accept_local", "0"}, {"route_localnet", "0"}}, {other}});
  {
    auto lo = LoopbackSysctls::apply(log_, paths_);
    ASSERT_TRUE(lo) << lo.error();
  }
  // The other proxy still needs them.
  EXPECT_EQ(get("route_localnet"), "1");
  ASSERT_TRUE(fs::exists(state_file()));
  EXPECT_FALSE(*restore_loopback_leftovers(log_, paths_));
  EXPECT_EQ(get("accept_local"), "1");
  // It is gone now (killed): cleanup restores.
  ::kill(other, SIGKILL);
  ::waitpid(other, nullptr, 0);
  children_.clear();
  EXPECT_TRUE(*restore_loopback_leftovers(log_, paths_));
  EXPECT_EQ(get("route_localnet"), "0");
  EXPECT_EQ(get("accept_local"), "0");
}

TEST_F(LoopbackSysctlsTest, AStateFileThatIsNotOursIsAnErrorAndChangesNothing) {
  fs::create_directories(paths_.state_dir);
  std::ofstream(state_file()) << "something else\n";
  auto lo = LoopbackSysctls::apply(log_, paths_);
  ASSERT_FALSE(lo);
  EXPECT_NE(lo.error().find("not a state file of ours"), std::string::npos);
  EXPECT_EQ(get("route_localnet"), "0");
}

TEST_F(LoopbackSysctlsTest, AnUnreadableSysctlRecordsNothing) {
  paths_.sysctl_dir = root_ + "/missing";  // reading fails first: nothing is recorded
  EXPECT_FALSE(LoopbackSysctls::apply(log_, paths_));
  EXPECT_FALSE(fs::exists(state_file()) && fs::file_size(state_file()) > 0);
}

}  // namespace
}  // namespace mqtt_proxy::firewall
