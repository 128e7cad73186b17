#pragma once
// Structured logging: one JSON object per line on standard output.
//
// Application events go through log(), which writes at once. The access log is high volume, so
// each shard collects lines in its own LogBuffer and hands them to the sink in large chunks.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace mtapi::obs {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

bool parse_level(std::string_view text, Level& out);
void set_level(Level level);
bool enabled(Level level);

struct Field {
    std::string_view key;
    std::variant<std::string_view, std::int64_t, double, bool> value;

    Field(std::string_view k, std::string_view v) : key(k), value(v) {}
    Field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
    Field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
    Field(std::string_view k, std::int64_t v) : key(k), value(v) {}
    Field(std::string_view k, int v) : key(k), value(static_cast<std::int64_t>(v)) {}
    Field(std::string_view k, unsigned v) : key(k), value(static_cast<std::int64_t>(v)) {}
    Field(std::string_view k, std::uint64_t v) : key(k), value(static_cast<std::int64_t>(v)) {}
    Field(std::string_view k, double v) : key(k), value(v) {}
    Field(std::string_view k, bool v) : key(k), value(v) {}
};

void log(Level level, std::string_view msg, std::initializer_list<Field> fields = {});
inline void info(std::string_view msg, std::initializer_list<Field> fields = {}) {
    log(Level::info, msg, fields);
}
inline void warn(std::string_view msg, std::initializer_list<Field> fields = {}) {
    log(Level::warn, msg, fields);
}
inline void error(std::string_view msg, std::initializer_list<Field> fields = {}) {
    log(Level::error, msg, fields);
}

// Appends `s` as a JSON string literal (quotes included). Control characters are escaped and
// bytes that are not valid UTF-8 become U+FFFD, so any input yields valid JSON.
void append_json_string(std::string& out, std::string_view s);

// Writes complete lines to standard output in one call, serialised across threads.
void write_lines(std::string_view chunk);

// A shard's pending log lines; not thread-safe (one per shard).
class LogBuffer {
  public:
    explicit LogBuffer(std::size_t flush_at = 32 * 1024) : flush_at_(flush_at) { buf_.reserve(flush_at + 1024); }
    std::string& begin_line() { return buf_; }
    void end_line() {
        buf_.push_back('\n');
        if (buf_.size() >= flush_at_) flush();
    }
    void flush();

  private:
    std::string buf_;
    std::size_t flush_at_;
};

}  // namespace mtapi::obs
