// The causal convolutions of Mimi's SEANet (Pocket TTS), as ggml graph pieces, op for op as
// libmtmd's clip_graph_pockettts_seanet builds them (tools/mtmd/models/pockettts-seanet.cpp), so
// that the PCM and voice rows equal libmtmd's. Tensors are time-first: [T, C].
//
// Streaming: a convolution given a state name takes its left context from the state input of that
// name (the previous call's tail) instead of zero padding, and adds the tail it leaves for the next
// call to `state_out`; a transposed convolution adds the overlap the previous call held back to its
// head and holds back its own.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "decoders/pockettts/pockettts_model.h"
#include "ggml.h"

namespace mm {

class weight_set;

namespace pockettts {

class seanet_builder {
  public:
    seanet_builder(ggml_context * ctx, const weight_set & w) : ctx_(ctx), w_(w) {}

    // state slots of a streamed graph (inputs) and what the graph leaves for the next call
    std::map<std::string, ggml_tensor *>               state_in;
    std::vector<std::pair<std::string, ggml_tensor *>> state_out;

    // x [T, IC], w [K, IC, OC] -> [T / stride, OC]; the K - stride padding all on the left (zeros,
    // the first frame repeated, or the state `state`), the trailing padding pad_for_conv1d adds.
    ggml_tensor * conv1d(ggml_tensor * x, ggml_tensor * w, ggml_tensor * b, int stride, int dilation,
                         bool pad_replicate = false, const std::string & state = "");
    // x [T, IC], w [K, OC / groups, IC] (depthwise when [K, 1, C]) -> [T * stride, OC].
    ggml_tensor * conv_transpose1d(ggml_tensor * x, ggml_tensor * w, ggml_tensor * b, int stride,
                                   const std::string & state = "");

    // The voice encoder's SEANet (prefix a.seanet), x [n_samples, 1] -> [n_samples / 120, C].
    ggml_tensor * encode(ggml_tensor * x);
    // The decoder's SEANet (prefix a.gen.wav.seanet), x [T, C] -> [T * 120, 1]; streamed when
    // state_in holds its slots.
    ggml_tensor * decode(ggml_tensor * x);

  private:
    ggml_tensor * res_unit(ggml_tensor * x, const char * prefix, int i, const std::string & state);

    ggml_context *     ctx_;
    const weight_set & w_;
};

}  // namespace pockettts
}  // namespace mm
