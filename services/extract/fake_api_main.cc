// starling-fake-api: simulated external APIs for tests and the offline demo.
// The flags live in fake_api_cli.h, shared with `starling fake-api`.
#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "services/common/shutdown.h"
#include "services/extract/fake_api_cli.h"

int main(int argc, char** argv) try {
  using namespace starling;
  CLI::App app{"starling-fake-api: simulated external APIs (generated data, nothing downloaded)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("starling-fake-api ") + STARLING_VERSION);
  app.footer("Exit codes: 0 stopped on SIGINT/SIGTERM; 1 cannot bind --listen or write --port-file; 2 bad flags.");
  extract::FakeWeatherFlags weather;
  extract::add_fake_weather_command(app, weather);
  CLI11_PARSE(app, argc, argv);
  install_shutdown_handler();
  return extract::run_fake_weather(weather, "starling-fake-api");
} catch (const std::exception& e) {
  fmt::print(stderr, "starling-fake-api: {}\n", e.what());
  return 1;
}
