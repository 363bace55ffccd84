#pragma once
// Bytes on a raw TCP connection to a loopback server, for requests no HTTP
// client would send (bad bytes in the request line, half a header).

#include <boost/asio.hpp>
#include <cstdint>
#include <string>
#include <utility>  // before Boost.Asio, whose awaitable.hpp uses std::exchange

namespace starling::testing {

/// Writes `data` to 127.0.0.1:`port`, half-closes unless `keep_open` (no more
/// requests), and reads until the server closes the connection: everything
/// it answered.
inline std::string raw_exchange(uint16_t port, const std::string& data, bool keep_open = false) {
  namespace asio = boost::asio;
  asio::io_context ioc;
  asio::ip::tcp::socket s(ioc);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(s, asio::buffer(data));
  boost::system::error_code ec;
  if (!keep_open) (void)s.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  std::string out;
  char buf[4096];
  for (;;) {
    const auto n = s.read_some(asio::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

}  // namespace starling::testing
