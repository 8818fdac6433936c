#include <cstdio>
#include <exception>

#include "mqtt_proxy/app/options.hpp"
#include "mqtt_proxy/app/proxy_app.hpp"

int main(int argc, char** argv) {
  mqtt_proxy::app::Options opt;
  std::string message;
  switch (mqtt_proxy::app::parse_options(argc, argv, opt, message)) {
    case mqtt_proxy::app::ParseOutcome::Exit0:
      std::fputs(message.c_str(), stdout);
      return 0;
    case mqtt_proxy::app::ParseOutcome::Error:
      std::fprintf(stderr, "mqtt_proxy: %s (see mqtt_proxy --help)\n", message.c_str());
      return 2;
    case mqtt_proxy::app::ParseOutcome::Run:
      break;
  }
  try {
    return opt.cleanup ? mqtt_proxy::app::run_cleanup(opt) : mqtt_proxy::app::run_proxy(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mqtt_proxy: %s\n", e.what());
    return 1;
  }
}
