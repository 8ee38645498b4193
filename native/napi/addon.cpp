// Module entry: registers each Addon area. No model logic here.
#include <napi.h>

namespace mm::napi {
void register_system(Napi::Env env, Napi::Object exports);
void register_backbone(Napi::Env env, Napi::Object exports);
void register_scheduler(Napi::Env env, Napi::Object exports);
void register_vision(Napi::Env env, Napi::Object exports);
void register_fused(Napi::Env env, Napi::Object exports);
void register_audio(Napi::Env env, Napi::Object exports);
void register_gen_qwen3tts(Napi::Env env, Napi::Object exports);
void register_gen_pockettts(Napi::Env env, Napi::Object exports);
void register_rpc(Napi::Env env, Napi::Object exports);
}  // namespace mm::napi

static Napi::Object init(Napi::Env env, Napi::Object exports) {
    mm::napi::register_system(env, exports);
    mm::napi::register_backbone(env, exports);
    mm::napi::register_scheduler(env, exports);
    mm::napi::register_vision(env, exports);
    mm::napi::register_fused(env, exports);
    mm::napi::register_audio(env, exports);
    mm::napi::register_gen_qwen3tts(env, exports);
    mm::napi::register_gen_pockettts(env, exports);
    mm::napi::register_rpc(env, exports);
    return exports;
}

NODE_API_MODULE(mm, init)
