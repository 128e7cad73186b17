#pragma once
// Helpers shared by the command-line subcommands.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <functional>

#include "app/config.hpp"
#include "pg/connection.hpp"

namespace mtapi::app {

// Connects once, runs `body(io_context, connection)` to completion on a private io_context and
// returns its exit code; a failure prints one line "mtapi: <what>: <reason>" and returns 1.
int run_with_connection(const Config& config, const char* what,
                        std::function<boost::asio::awaitable<int>(boost::asio::io_context&, pg::Connection&)> body);

}  // namespace mtapi::app
