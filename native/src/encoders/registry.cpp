#include "encoders/registry.h"

#include "common/error.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"

namespace mm {

extern const encoder_family clip_family;
extern const encoder_family siglip_family;
extern const encoder_family siglip_idefics3_family;
extern const encoder_family qwen2vl_family;
extern const encoder_family minicpmv_family;

namespace {

// Every encoder family, in the order they are tried. A new family adds one line here and one file
// under families/.
const encoder_family * const k_families[] = {
    &clip_family, &siglip_family, &siglip_idefics3_family, &qwen2vl_family, &minicpmv_family,
};

}  // namespace

std::string read_projector_type(const gguf_file & f, tower_kind tower) {
    std::string arch;
    if (!f.find_string(clip::k_architecture, arch) || arch != "clip") {
        fail(error_code::model_load,
             "'" + f.path() + "' is not an mmproj (general.architecture is '" + arch + "', expected 'clip')");
    }
    // libmtmd: clip.projector_type first, then the modality's own key (files with both encoders)
    std::string type;
    f.find_string(clip::k_projector_type, type);
    if (type.empty()) {
        f.find_string(tower == tower_kind::audio ? clip::k_audio_proj_type : clip::k_vision_proj_type, type);
    }
    if (type.empty()) {
        f.invalid(tower == tower_kind::audio ? "clip.projector_type (or clip.audio.projector_type) is missing"
                                             : "clip.projector_type is missing");
    }
    // libmtmd's legacy Qwen2.5-Omni files: one type for both towers
    if (type == "qwen2.5o") {
        type = tower == tower_kind::audio ? "qwen2a" : "qwen2.5vl_merger";
    }
    return type;
}

std::string supported_vision_projector_types() {
    std::string out;
    for (const encoder_family * fam : k_families) {
        for (const char * t : fam->projector_types) {
            out += (out.empty() ? "" : ", ") + std::string(t);
        }
    }
    return out;
}

const encoder_family & find_encoder_family(const gguf_file & f) {
    const std::string type       = read_projector_type(f);
    bool              has_vision = false;
    f.find_bool(clip::k_has_vision, has_vision);
    if (!has_vision) {
        fail(error_code::modality_unsupported,
             "'" + f.path() + "' has no vision encoder (clip.has_vision_encoder is not true)");
    }
    for (const encoder_family * fam : k_families) {
        for (const char * t : fam->projector_types) {
            if (type == t) {
                return *fam;
            }
        }
    }
    fail(error_code::unsupported_family, "'" + f.path() + "': projector type '" + type +
                                             "' is not supported; supported: " + supported_vision_projector_types());
}

vision_hparams read_vision_hparams(const gguf_file & f) {
    const encoder_family & fam = find_encoder_family(f);
    vision_hparams         hp  = fam.load_hparams(f);
    hp.projector_type          = read_projector_type(f);
    return hp;
}

}  // namespace mm
