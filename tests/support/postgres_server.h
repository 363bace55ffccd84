#pragma once
// A throw-away PostgreSQL server for one test: Debian's postgresql binaries,
// its own data directory, loopback only, a free port. As root it runs as the
// `postgres` user, since PostgreSQL refuses to run as root.

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "services/common/process.h"
#include "tests/support/free_port.h"

namespace starling::testing {

class PostgresServer {
 public:
  explicit PostgresServer(const std::string& dir) : dir_(dir + "/pg"), port_(free_port()) {
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql")) {
      const auto bin = e.path() / "bin";
      if (std::filesystem::exists(bin / "postgres") && bin.string() > bin_) bin_ = bin.string();
    }
    ::chmod(dir.c_str(), 0755);  // mkdtemp makes it 0700; the postgres user must reach its data
    std::filesystem::create_directories(dir_);
    chown_to_postgres(dir_);
    auto init = ChildProcess::spawn(
        {bin_ + "/initdb", "-D", dir_ + "/data", "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"},
        dir_ + "/initdb.log", user());
    const auto st = init ? init->wait(std::chrono::seconds(120)) : std::nullopt;
    ok_ = st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0;
  }

  /// Starts (or restarts) the server and waits until it accepts connections.
  bool start() {
    if (!ok_) return false;
    auto p = ChildProcess::spawn({bin_ + "/postgres", "-D", dir_ + "/data", "-p", std::to_string(port_), "-k", dir_,
                                  "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "max_connections=50"},
                                 dir_ + "/server.log", user());
    if (!p) return false;
    proc_ = std::move(*p);
    for (int i = 0; i < 300; ++i) {
      if (PQping(dsn().c_str()) == PQPING_OK) {
        if (!created_) {
          exec("CREATE DATABASE starling");
          created_ = true;
        }
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  /// A fast shutdown (SIGINT): connections are cut, as in an outage.
  void stop() {
    proc_.signal(SIGINT);
    proc_.wait(std::chrono::seconds(60));
  }

  std::string dsn(const std::string& db = "starling") const {
    return fmt::format("host=127.0.0.1 port={} user=postgres dbname={} connect_timeout=5", port_,
                       created_ ? db : std::string("postgres"));
  }

  /// Runs SQL and returns the first column of every row.
  std::vector<std::string> exec(const std::string& sql) const {
    std::vector<std::string> out;
    PGconn* c = PQconnectdb(dsn().c_str());
    PGresult* r = PQexec(c, sql.c_str());
    out.reserve(static_cast<std::size_t>(std::max(0, PQntuples(r))));
    for (int i = 0; i < PQntuples(r); ++i) out.emplace_back(PQgetisnull(r, i, 0) ? "NULL" : PQgetvalue(r, i, 0));
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
      ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r);
    }
    PQclear(r);
    PQfinish(c);
    return out;
  }

  bool initialised() const { return ok_; }

 private:
  static std::string user() { return ::geteuid() == 0 ? "postgres" : ""; }
  static void chown_to_postgres(const std::string& path) {
    if (::geteuid() != 0) return;
    if (const passwd* pw = ::getpwnam("postgres")) ::chown(path.c_str(), pw->pw_uid, pw->pw_gid);
  }

  std::string dir_;
  std::string bin_;
  uint16_t port_;
  bool ok_ = false;
  bool created_ = false;
  ChildProcess proc_;
};

}  // namespace starling::testing
