#include "projectors/registry.h"

#include "common/error.h"
#include "encoders/registry.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"

namespace mm {

extern const projector_family mlp_family;
extern const projector_family mlp_norm_family;
extern const projector_family ldp_family;
extern const projector_family ldpv2_family;
extern const projector_family qwen2vl_merger_family;
extern const projector_family qwen25vl_merger_family;
extern const projector_family gemma3_family;
extern const projector_family resampler_family;
extern const projector_family idefics3_family;
extern const projector_family ultravox_family;
extern const projector_family qwen2a_family;

namespace {

const projector_family * const k_families[] = {
    &mlp_family,    &mlp_norm_family, &ldp_family,       &ldpv2_family, &qwen2vl_merger_family, &qwen25vl_merger_family,
    &gemma3_family, &idefics3_family, &resampler_family,
};

const projector_family * const k_audio_families[] = {&ultravox_family, &qwen2a_family};

}  // namespace

std::string supported_projector_families() {
    std::string out;
    for (const projector_family * fam : k_families) {
        out += (out.empty() ? "" : ", ") + std::string(fam->name);
    }
    return out;
}

const projector_family & find_projector_family(const gguf_file & f, tower_kind tower) {
    if (tower == tower_kind::vision) {
        return find_projector_family(f);
    }
    const std::string type = read_projector_type(f, tower_kind::audio);
    std::string       names;
    for (const projector_family * fam : k_audio_families) {
        if (type == fam->name) {
            return *fam;
        }
        names += (names.empty() ? "" : ", ") + std::string(fam->name);
    }
    fail(error_code::unsupported_family,
         "'" + f.path() + "': audio projector type '" + type + "' is not supported; supported: " + names);
}

const projector_family & find_projector_family(const gguf_file & f) {
    std::string type = read_projector_type(f);
    // libmtmd: "the file says mlp, and the presence of mm.3.weight switches it to mlp_norm"
    if (type == "mlp" && f.tensor(clip::llava_proj(3, "weight")) != nullptr) {
        type = "mlp_norm";
    }
    for (const projector_family * fam : k_families) {
        if (type == fam->name) {
            return *fam;
        }
    }
    fail(error_code::unsupported_family, "'" + f.path() + "': projector type '" + type +
                                             "' is not supported; supported: " + supported_projector_families());
}

}  // namespace mm
