#include "push/log_source.hpp"

namespace pgpush::push {

namespace {

class change_log_cursor final : public log_cursor {
public:
    explicit change_log_cursor(std::unique_ptr<log::log_reader> reader)
        : reader_(std::move(reader)) {}

    log::replay_status read(cdc::position until, std::size_t max_changes,
                            const std::function<void(const cdc::change&)>& on_change,
                            const std::function<void(std::string_view)>& on_gap) override {
        return reader_->read(until, max_changes, on_change, on_gap);
    }

private:
    std::unique_ptr<log::log_reader> reader_;
};

} // namespace

void change_log_source::gap(const std::string& table, cdc::lsn at) {
    log_.gap(table, at);
}

std::unique_ptr<log_cursor> change_log_source::open(cdc::position after) {
    return std::make_unique<change_log_cursor>(log_.open_reader(after));
}

} // namespace pgpush::push
