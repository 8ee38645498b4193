// Test-only reference: what plain stb_image (the vendored copy, compiled with no options, exactly as
// libmtmd's mtmd-helper.cpp compiles it) decodes from an image file, with nothing of mm in between.
// Never linked into mm.node.
//
//   mm-ref-stb-decode --out-dir DIR FILE...
//
// For each FILE it calls stbi_load_from_memory(..., 3) as libmtmd does, writes DIR/img<i>.rgb (the
// RGB bytes) when it succeeds, and prints one JSON array with, per file, {ok, width, height,
// channels, reason} (channels: stb's count in the file; reason: stbi_failure_reason()).
// Exit codes: 0 ok (whatever each decode gave), 2 usage or I/O error.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#define STB_IMAGE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include "stb/stb_image.h"
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

int main(int argc, char ** argv) {
    std::string              out_dir;
    std::vector<std::string> files;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--out-dir" && i + 1 < argc) {
            out_dir = argv[++i];
        } else if (!a.empty() && a[0] == '-') {
            out_dir.clear();
            break;
        } else {
            files.push_back(a);
        }
    }
    if (out_dir.empty()) {
        std::fprintf(stderr, "usage: mm-ref-stb-decode --out-dir DIR FILE...\n");
        return 2;
    }
    std::printf("[");
    for (size_t i = 0; i < files.size(); ++i) {
        std::ifstream        in(files[i], std::ios::binary);
        std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (!in.good() && !in.eof()) {
            std::fprintf(stderr, "cannot read %s\n", files[i].c_str());
            return 2;
        }
        int       w = 0, h = 0, c = 0;
        stbi_uc * data = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &c, 3);
        if (data != nullptr) {
            const std::string path = out_dir + "/img" + std::to_string(i) + ".rgb";
            std::ofstream     out(path, std::ios::binary);
            out.write(reinterpret_cast<const char *>(data), static_cast<std::streamsize>(w) * h * 3);
            stbi_image_free(data);
            if (!out.good()) {
                std::fprintf(stderr, "cannot write %s\n", path.c_str());
                return 2;
            }
            std::printf("%s{\"ok\":true,\"width\":%d,\"height\":%d,\"channels\":%d}", i ? "," : "", w, h, c);
        } else {
            const char * why = stbi_failure_reason();
            std::printf("%s{\"ok\":false,\"reason\":\"%s\"}", i ? "," : "", why ? why : "");
        }
    }
    std::printf("]\n");
    return 0;
}
