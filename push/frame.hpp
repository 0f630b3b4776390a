#pragma once

// One outgoing WebSocket text message, in up to three pieces written as one message: a static
// head, the subscription's id, and a body shared by every subscriber of the same projection. The
// row JSON of a change is therefore made once, however many subscribers receive it.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace pgpush::push {

struct frame {
    std::string_view head;                   // static text, may be empty
    std::shared_ptr<const std::string> id;   // may be null
    std::shared_ptr<const std::string> body; // never null

    std::size_t bytes() const { return head.size() + (id ? id->size() : 0) + body->size(); }

    static frame of(std::string text) {
        return frame{{}, nullptr, std::make_shared<const std::string>(std::move(text))};
    }
};

} // namespace pgpush::push
