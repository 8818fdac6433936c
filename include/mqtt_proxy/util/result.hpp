// The outcome of a fallible set-up call (opening a socket, reading a file, parsing a password
// file): the value, or one line for the user that says what went wrong. std::expected is C++23 and
// Debian 12 packages no tl::expected; this is the small part of it the project needs. Packet
// paths do not use it: they return a result or error enum per packet (style.md, Errors).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace mqtt_proxy {

struct Error {
  std::string message;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit on purpose
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}      // NOLINT: implicit on purpose

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  // The value; only when ok().
  T& operator*() { return *std::get_if<0>(&v_); }
  const T& operator*() const { return *std::get_if<0>(&v_); }
  T* operator->() { return std::get_if<0>(&v_); }
  const T* operator->() const { return std::get_if<0>(&v_); }
  // The message; only when !ok().
  const std::string& error() const { return std::get_if<1>(&v_)->message; }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : error_(std::move(e.message)), failed_(true) {}  // NOLINT: implicit on purpose

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
  bool failed_ = false;
};

using Status = Result<void>;

}  // namespace mqtt_proxy
