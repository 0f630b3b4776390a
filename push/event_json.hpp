#pragma once

// The JSON of change events, made once per (projection, event) and shared by every subscriber
// of that projection (see frame.hpp): `,"row":{..},"old":{..},"position":"..","commit_time":..}`.
// Pure: no I/O, no threads; the part of the protocol that reads changes.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "cdc/change.hpp"
#include "cdc/type_catalog.hpp"
#include "rules/matcher.hpp"

namespace pgpush::push {

// Positions as clients see them: "<epoch, 16 hex digits>/<position>". The epoch names the change
// log that gave the position, so a position from a log that lost its history is refused.
class position_format {
public:
    explicit position_format(std::uint64_t epoch = 0);

    std::uint64_t epoch() const { return epoch_; }
    std::string text(cdc::position p) const;
    void append(std::string& out, cdc::position p) const;

    // (epoch, position) of a text this engine wrote; nullopt for anything else.
    static std::optional<std::pair<std::uint64_t, cdc::position>> parse(std::string_view text);

private:
    std::uint64_t epoch_;
    std::string prefix_;
};

std::string_view event_name(rules::event_kind e);

// Makes event bodies. Keeps the commit time's JSON of the transaction last seen, since every
// change of a transaction has the same.
class event_json {
public:
    event_json(const cdc::type_catalog& types, position_format positions)
        : types_(types), positions_(std::move(positions)) {}

    const position_format& positions() const { return positions_; }
    void set_positions(position_format p) { positions_ = std::move(p); }

    // `,"row":{projected columns},["old":{..},]["unchanged_toast":[..],]"position":..,
    // "commit_time":..}`; the row is the old one for a delete. Unchanged TOASTed values are left
    // out of the row and named in unchanged_toast.
    std::shared_ptr<const std::string>
    body(const cdc::change& c, std::span<const std::size_t> columns, rules::event_kind event);
    // `,"position":..,"commit_time":..}`
    std::shared_ptr<const std::string> truncate_body(const cdc::change& c);

private:
    const std::string& commit_time(const cdc::change& c);

    const cdc::type_catalog& types_;
    position_format positions_;
    std::string commit_time_json_;
    cdc::lsn commit_time_of_;
};

} // namespace pgpush::push
