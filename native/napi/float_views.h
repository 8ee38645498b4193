// Float32Arrays that view a native matrix in place, and the way back from such an array to the
// matrix (so that the scheduler takes the rows of a picture without a copy either).
//
// A CLIP-L picture is 576 rows of 2048 floats (4.7 MB). Copying them into a new Float32Array and
// again into the scheduler's request cost the JS thread ~20 ms per picture (fresh pages fault
// in, and the garbage collector has the copies to sweep): the event loop's largest stalls at the
// realistic shape. A view costs neither.
#pragma once

#include <napi.h>

#include <memory>

#include "common/float_rows.h"
#include "graph/token_matrix.h"

namespace mm::napi {

// A Float32Array over m->data, backed by an external ArrayBuffer that keeps m alive until the
// array is collected. A copy instead where the runtime takes no external buffers, or while an
// earlier view of m is alive (V8 takes one external buffer per address). JS may write into it:
// the matrix is only ever read through such views and by the scheduler after submit.
Napi::Float32Array float32_view_of(Napi::Env env, const std::shared_ptr<const token_matrix> & m);

// The values of `a`: shared with the matrix when `a` views one (a subarray included), else a copy.
float_rows rows_of(const Napi::Float32Array & a);

}  // namespace mm::napi
