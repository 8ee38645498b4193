// Generated from packages/errors/codes.json by packages/errors/scripts/generate.mjs.
// Do not edit.
#pragma once

namespace mm {

enum class error_code : int {
    ok = 0,
    internal = 1,
    invalid_argument = 2,
    file_not_found = 3,
    io = 4,
    gguf_invalid = 5,
    gguf_unsupported = 6,
    native_load = 7,
    model_load = 8,
    model_mismatch = 9,
    unsupported_family = 10,
    modality_unsupported = 11,
    image_decode = 12,
    image_too_large = 13,
    out_of_context = 14,
    out_of_memory = 15,
    chat_template = 16,
    grammar = 17,
    decode = 18,
    aborted = 19,
    disposed = 20,
    download = 21,
    checksum = 22,
    hub_not_found = 23,
    not_cached = 24,
    audio_decode = 25,
    audio_too_long = 26,
    rpc_connect = 27,
    rpc_lost = 28,
};

inline const char * error_code_name(error_code c) {
    switch (c) {
        case error_code::ok: return "MM_OK";
        case error_code::internal: return "MM_INTERNAL";
        case error_code::invalid_argument: return "MM_INVALID_ARGUMENT";
        case error_code::file_not_found: return "MM_FILE_NOT_FOUND";
        case error_code::io: return "MM_IO";
        case error_code::gguf_invalid: return "MM_GGUF_INVALID";
        case error_code::gguf_unsupported: return "MM_GGUF_UNSUPPORTED";
        case error_code::native_load: return "MM_NATIVE_LOAD";
        case error_code::model_load: return "MM_MODEL_LOAD";
        case error_code::model_mismatch: return "MM_MODEL_MISMATCH";
        case error_code::unsupported_family: return "MM_UNSUPPORTED_FAMILY";
        case error_code::modality_unsupported: return "MM_MODALITY_UNSUPPORTED";
        case error_code::image_decode: return "MM_IMAGE_DECODE";
        case error_code::image_too_large: return "MM_IMAGE_TOO_LARGE";
        case error_code::out_of_context: return "MM_OUT_OF_CONTEXT";
        case error_code::out_of_memory: return "MM_OUT_OF_MEMORY";
        case error_code::chat_template: return "MM_CHAT_TEMPLATE";
        case error_code::grammar: return "MM_GRAMMAR";
        case error_code::decode: return "MM_DECODE";
        case error_code::aborted: return "MM_ABORTED";
        case error_code::disposed: return "MM_DISPOSED";
        case error_code::download: return "MM_DOWNLOAD";
        case error_code::checksum: return "MM_CHECKSUM";
        case error_code::hub_not_found: return "MM_HUB_NOT_FOUND";
        case error_code::not_cached: return "MM_NOT_CACHED";
        case error_code::audio_decode: return "MM_AUDIO_DECODE";
        case error_code::audio_too_long: return "MM_AUDIO_TOO_LONG";
        case error_code::rpc_connect: return "MM_RPC_CONNECT";
        case error_code::rpc_lost: return "MM_RPC_LOST";
    }
    return "MM_INTERNAL";
}

}  // namespace mm
