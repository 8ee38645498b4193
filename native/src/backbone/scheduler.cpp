#include "backbone/scheduler.h"

#include <llama.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <unordered_set>

#include "backbone/context.h"
#include "backbone/model.h"
#include "backbone/owned_batch.h"
#include "common/abort_guard.h"
#include "common/compute_gate.h"

namespace mm {

struct scheduler::active {
    sched_request     req;
    sampler_ptr       smpl;
    size_t            item       = 0;  // the prompt item being decoded
    size_t            offset     = 0;  // its tokens already decoded
    bool              generating = false;
    int32_t           token      = 0;  // generating: the token to decode next, at `pos`
    int32_t           pos        = 0;
    int32_t           generated  = 0;
    bool              started    = false;
    double            compute_ms = 0;      // compute time of the decode steps that carried its generating row
    bool              stepped    = false;  // its generating row was decoded in this iteration's media step
    clock::time_point submitted, prefill_start, first_token;

    bool prompt_left() const { return item < req.items.size(); }
};

namespace {

double ms(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

// Puts the rows in order of sequence id, each sequence's own rows in the order they were added
// (`owner` and, for embedding rows, `n_embd` floats per row move with them). Each sequence of mm's
// contexts has its own KV stream (kv_unified off, as llama-server's with -np), and llama.cpp then
// cuts a batch into ubatches whose sequences are consecutive ids in batch order: the rows of 8
// requests in arrival order (sequences 3, 0, 1, 2, 7, 4, 5, 6, say) went as 3 or 4 ubatches, each
// reading every weight of the model. In order of sequence they are one.
template <typename Owner>
void order_by_seq(owned_batch & b, std::vector<Owner> & owner, size_t n_embd) {
    const size_t        n = b.seq_storage.size();
    std::vector<size_t> idx(n);
    std::iota(idx.begin(), idx.end(), size_t{0});
    std::stable_sort(idx.begin(), idx.end(), [&](size_t x, size_t y) { return b.seq_storage[x] < b.seq_storage[y]; });
    bool in_order = true;
    for (size_t k = 0; k < n && in_order; ++k) {
        in_order = idx[k] == k;
    }
    if (in_order) {
        return;
    }
    owned_batch        s;
    std::vector<Owner> o;
    o.reserve(n);
    if (!b.embd.empty()) {
        s.embd.reserve(b.embd.size());
    }
    for (size_t k : idx) {
        s.add(b.token.empty() ? -1 : b.token[k], b.pos[k], b.seq_storage[k], b.logits[k] != 0);
        if (!b.embd.empty()) {
            const auto row = b.embd.begin() + static_cast<std::ptrdiff_t>(k * n_embd);
            s.embd.insert(s.embd.end(), row, row + static_cast<std::ptrdiff_t>(n_embd));
        }
        o.push_back(owner[k]);
    }
    b = std::move(s);
    owner.swap(o);
}

}  // namespace

scheduler::scheduler(std::shared_ptr<context> ctx, std::function<void()> notify) :
    ctx_(std::move(ctx)), notify_(std::move(notify)) {
    max_threads_   = std::max(1, llama_n_threads(ctx_->ctx_));
    flops_per_row_ = 2.0 * static_cast<double>(llama_model_n_params(ctx_->get_model().get()));
    if (const char * v = std::getenv("MM_PREFILL_CHUNK")) {
        prefill_chunk_ = std::max(1, std::atoi(v));
    }
    if (ctx_->get_model().token_input_is_row()) {
        try {
            tokens_ = ctx_->get_model().token_reader(true);
        } catch (const error &) {
            tokens_.reset();  // generating rows then wait for spans, as before
        }
    }
    thread_ = std::thread([this] { loop(); });
}

scheduler::~scheduler() {
    stop();
}

void scheduler::stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_ && !thread_.joinable()) {
            return;
        }
        stop_ = true;
    }
    abort_.store(true);
    cv_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
        thread_.join();
    }
}

void scheduler::set_threads(int64_t rows) {
    // the same measure as mm's own graphs (graph/runtime.cpp): ~4 MFLOP of work per thread; the
    // values do not depend on the count (ggml computes each output element on one thread)
    const double  wanted = std::ceil(flops_per_row_ * static_cast<double>(rows) / 4e6);
    const int32_t n      = static_cast<int32_t>(std::max(1.0, std::min<double>(max_threads_, wanted)));
    if (n != llama_n_threads(ctx_->ctx_)) {
        llama_set_n_threads(ctx_->ctx_, n, n);
    }
}

void scheduler::submit(sched_request r) {
    ctx_->check_seq(r.seq);
    if (r.items.empty() || r.items.back().is_embd() || r.items.back().tokens.empty()) {
        fail(error_code::invalid_argument, "a request's prompt must end with text");
    }
    if (r.keep < 0 || r.max_tokens < 0 || r.limit <= 0 || r.limit > static_cast<int32_t>(ctx_->n_ctx())) {
        fail(error_code::invalid_argument, "bad keep, maxTokens or limit");
    }
    const model & m = ctx_->get_model();
    for (const sched_item & it : r.items) {
        if (it.is_embd()) {
            if (it.n_embd != m.n_embd_inp()) {
                fail(error_code::model_mismatch, "embeddings have width " + std::to_string(it.n_embd) +
                                                     " but the model's is " + std::to_string(m.n_embd_inp()));
            }
            const size_t n = it.embd.size / static_cast<size_t>(it.n_embd);
            if (n == 0 || it.embd.size % static_cast<size_t>(it.n_embd) != 0) {
                fail(error_code::invalid_argument, "embeddings must be a non-empty [n, n_embd] matrix");
            }
            if (!it.positions.empty() && it.positions.size() != n && it.positions.size() != 4 * n) {
                fail(error_code::invalid_argument, "positions must have n or 4*n entries");
            }
        } else {
            if (it.tokens.empty()) {
                fail(error_code::invalid_argument, "an empty text item");
            }
            for (int32_t t : it.tokens) {
                m.check_token(t);
            }
            if (it.pos0 < 0 || it.pos0 + static_cast<int64_t>(it.tokens.size()) > r.limit) {
                fail(error_code::out_of_context,
                     "the prompt does not fit the sequence's " + std::to_string(r.limit) + " positions");
            }
        }
    }
    sampler_ptr probe = make_sampler(m, r.sampling);  // a bad grammar fails here, synchronously
    probe.reset();
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) {
            fail(error_code::disposed, "the scheduler was stopped");
        }
        incoming_.push_back(std::move(r));
    }
    cv_.notify_one();
}

void scheduler::cancel(int32_t id) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        cancels_.push_back(id);
    }
    cv_.notify_one();
}

std::vector<sched_event> scheduler::drain() {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = false;
    std::vector<sched_event> out;
    out.swap(events_);
    return out;
}

sched_stats scheduler::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
}

void scheduler::push(sched_event ev) {
    std::lock_guard<std::mutex> lock(mu_);
    urgent_ = urgent_ || ev.kind != sched_event::token;
    events_.push_back(std::move(ev));
}

void scheduler::end(std::unique_ptr<active> & a, const std::string & reason) {
    const auto  now = clock::now();
    sched_event ev;
    ev.id        = a->req.id;
    ev.kind      = sched_event::done;
    ev.value     = a->generated;
    ev.reason    = reason;
    ev.prefilled = a->generating;
    // the last sampled token is never decoded; while generating, every other one is
    ev.decoded           = a->generating ? std::max(0, a->generated - 1) : 0;
    ev.queue_ms          = a->started ? ms(a->submitted, a->prefill_start) : ms(a->submitted, now);
    ev.prefill_ms        = a->generating ? ms(a->prefill_start, a->first_token) : 0;
    ev.decode_ms         = a->generating ? ms(a->first_token, now) : 0;
    ev.decode_compute_ms = a->compute_ms;
    if (!a->generating) {
        // a prompt decoded in part: nothing of it is reusable
        ctx_->remove(a->req.seq, 0, -1);
    }
    push(std::move(ev));
    a.reset();
}

void scheduler::fail_request(std::unique_ptr<active> & a, error_code code, const std::string & message) {
    sched_event ev;
    ev.id      = a->req.id;
    ev.kind    = sched_event::failed;
    ev.code    = code;
    ev.message = message;
    try {
        ctx_->remove(a->req.seq, 0, -1);
    } catch (...) {
        // the context is unusable; the error says why
    }
    push(std::move(ev));
    a.reset();
}

void scheduler::loop() {
    yield_to_js_thread();
    std::vector<std::unique_ptr<active>> run;
    for (;;) {
        std::deque<sched_request> in;
        std::vector<int32_t>      cancels;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return stop_ || !incoming_.empty() || !cancels_.empty() || !run.empty(); });
            if (stop_) {
                break;
            }
            in.swap(incoming_);
            cancels.swap(cancels_);
        }
        const auto now = clock::now();
        for (sched_request & r : in) {
            auto a       = std::make_unique<active>();
            a->submitted = now;
            a->req       = std::move(r);
            bool busy = std::any_of(run.begin(), run.end(), [&](const auto & x) { return x->req.seq == a->req.seq; });
            if (busy) {
                sched_event ev;
                ev.id      = a->req.id;
                ev.kind    = sched_event::failed;
                ev.code    = error_code::invalid_argument;
                ev.message = "sequence " + std::to_string(a->req.seq) + " is in use by another request";
                push(std::move(ev));
                continue;
            }
            try {
                abort_guard guard;
                ctx_->remove(a->req.seq, a->req.keep, -1);
                a->smpl = make_sampler(ctx_->get_model(), a->req.sampling);
            } catch (const error & e) {
                fail_request(a, e.code(), e.what());
                continue;
            }
            run.push_back(std::move(a));
        }
        for (int32_t id : cancels) {
            for (auto & a : run) {
                if (a && a->req.id == id) {
                    end(a, "cancel");
                }
            }
        }
        run.erase(std::remove(run.begin(), run.end(), nullptr), run.end());
        const bool iterated = !run.empty();
        if (iterated) {
            try {
                abort_guard guard;
                iterate(run);
            } catch (const error & e) {
                for (auto & a : run) {
                    if (a) {
                        fail_request(a, e.code(), e.what());
                    }
                }
            } catch (const std::bad_alloc &) {
                for (auto & a : run) {
                    if (a) {
                        fail_request(a, error_code::out_of_memory, "out of memory");
                    }
                }
            } catch (const std::exception & e) {
                for (auto & a : run) {
                    if (a) {
                        fail_request(a, error_code::internal, e.what());
                    }
                }
            }
            run.erase(std::remove(run.begin(), run.end(), nullptr), run.end());
        }
        // Wake JS at most once a millisecond for plain tokens (each wake-up of the JS thread takes
        // CPU from the decode on a small machine); at once for first tokens, ends, or when idle.
        bool wake = false;
        {
            std::lock_guard<std::mutex> lock(mu_);
            stats_.iterations += iterated ? 1 : 0;
            stats_.active   = static_cast<int32_t>(run.size());
            const auto now2 = clock::now();
            const bool due  = urgent_ || run.empty() || now2 - last_notify_ >= std::chrono::milliseconds(1);
            if (!events_.empty() && !pending_ && due) {
                pending_     = true;
                urgent_      = false;
                last_notify_ = now2;
                wake         = true;
            }
        }
        if (wake && notify_) {
            notify_();
        }
    }
    // stopped: whatever still runs ends with the disposal (the JS side rejects them itself)
    for (auto & a : run) {
        sched_event ev;
        ev.id      = a->req.id;
        ev.kind    = sched_event::failed;
        ev.code    = error_code::disposed;
        ev.message = "the scheduler was stopped";
        push(std::move(ev));
    }
}

double scheduler::run_rows(std::vector<std::unique_ptr<active>> & run, llama_batch batch,
                           const std::vector<active *> & owner, bool & ok) {
    ok = true;
    try {
        compute_turn turn(/*step =*/true);
        count_lent(turn);
        set_threads(batch.n_tokens);
        const auto t0 = clock::now();
        ctx_->run_batch(batch, &abort_);
        // the step's compute, not its queueing: on a GPU the kernels are still running here, and the
        // compute turn is held until they are done
        ctx_->synchronize();
        return ms(t0, clock::now());
    } catch (const error & e) {
        if (e.code() == error_code::aborted) {
            throw;
        }
        std::unordered_set<active *> in(owner.begin(), owner.end());
        for (auto & a : run) {
            if (a && in.count(a.get()) != 0) {
                fail_request(a, e.code(), e.what());
            }
        }
        ok = false;
        return 0;
    }
}

void scheduler::count_lent(const compute_turn & turn) {
    if (turn.borrowed()) {
        std::lock_guard<std::mutex> lock(mu_);
        stats_.lent_steps++;
    }
}

void scheduler::count_step(const std::vector<active *> & decoders, int32_t n_prompt, bool media, double step_ms) {
    const auto                  n_decode = static_cast<int32_t>(decoders.size());
    std::lock_guard<std::mutex> lock(mu_);
    stats_.token_steps += media ? 0 : 1;
    stats_.mixed_steps += media ? 1 : 0;
    stats_.decode_steps += n_decode > 0 ? 1 : 0;
    stats_.decode_rows += n_decode;
    stats_.prefill_rows += media ? 0 : n_prompt;
    stats_.max_rows = std::max(stats_.max_rows, n_decode);
    for (active * d : decoders) {
        d->compute_ms += step_ms;
    }
    if (n_prompt == 0) {
        stats_.decode_only_steps++;
        stats_.decode_only_rows += n_decode;
        stats_.decode_only_ms += step_ms;
    }
}

void scheduler::sample_rows(std::vector<std::unique_ptr<active>> & run, const std::vector<active *> & owner,
                            const std::vector<llama_pos> & pos, const std::vector<int8_t> & logits) {
    llama_context * lctx = ctx_->ctx_;
    const model &   m    = ctx_->get_model();
    const auto      now  = clock::now();
    for (size_t i = 0; i < owner.size(); ++i) {
        if (logits[i] == 0) {
            continue;
        }
        active * a   = owner[i];
        auto     it  = std::find_if(run.begin(), run.end(), [&](const auto & x) { return x.get() == a; });
        auto &   ref = *it;
        if (!a->generating) {
            a->generating  = true;
            a->first_token = now;
            std::lock_guard<std::mutex> lock(mu_);
            urgent_ = true;  // time to first token: no coalescing
        }
        const int32_t tok = llama_sampler_sample(a->smpl.get(), lctx, static_cast<int32_t>(i));
        const int32_t at  = pos[i] + 1;  // where the sampled token would be decoded
        if (!a->req.ignore_eog && m.is_eog(tok)) {
            end(ref, "eog");
            continue;
        }
        a->generated++;
        {
            sched_event ev;
            ev.id    = a->req.id;
            ev.kind  = sched_event::token;
            ev.value = tok;
            push(std::move(ev));
        }
        if (a->generated >= a->req.max_tokens) {
            end(ref, "length");
        } else if (at >= a->req.limit) {
            end(ref, "context");
        } else {
            a->token = tok;
            a->pos   = at;
        }
    }
}

bool scheduler::media_step(std::vector<std::unique_ptr<active>> & run) {
    active * a = nullptr;
    for (auto & x : run) {
        if (x && !x->generating && x->prompt_left() && x->req.items[x->item].is_embd()) {
            a = x.get();
            break;
        }
    }
    if (a == nullptr) {
        return false;
    }
    if (!a->started) {
        a->started       = true;
        a->prefill_start = clock::now();
    }
    const sched_item &    it     = a->req.items[a->item];
    const size_t          n_embd = static_cast<size_t>(it.n_embd);
    const size_t          n      = it.embd.size / n_embd;
    std::vector<active *> decoding;
    for (auto & x : run) {
        if (x && x->generating) {
            decoding.push_back(x.get());
        }
    }
    const int32_t cap = static_cast<int32_t>(ctx_->n_batch());
    // one position per row (M-RoPE spans have 4n positions and are never mixed)
    const bool mix = tokens_ != nullptr && it.causal && !decoding.empty() && it.positions.size() != 4 * n &&
                     static_cast<int32_t>(decoding.size()) < cap;
    if (!mix) {
        // Alone: the whole span, or what a mixed step left of it (its rows in place either way).
        const size_t         off = a->offset;
        std::vector<int32_t> rest_pos;
        if (off > 0 && !it.positions.empty()) {
            rest_pos.assign(it.positions.begin() + static_cast<std::ptrdiff_t>(off), it.positions.end());
        }
        const std::vector<int32_t> & positions = off > 0 ? rest_pos : it.positions;
        try {
            compute_turn turn(/*step =*/true);
            count_lent(turn);
            set_threads(static_cast<int64_t>(n - off));
            ctx_->decode_embeddings(it.embd.begin() + off * n_embd, it.embd.size - off * n_embd, it.n_embd, positions,
                                    it.pos0 + static_cast<int32_t>(off), a->req.seq, it.causal, logits_mode::none,
                                    &abort_, false);
        } catch (const error & e) {
            if (e.code() == error_code::aborted) {
                throw;
            }
            for (auto & x : run) {
                if (x.get() == a) {
                    fail_request(x, e.code(), e.what());
                }
            }
            return true;
        }
        a->item++;
        a->offset = 0;
        std::lock_guard<std::mutex> lock(mu_);
        stats_.spans++;
        return true;
    }
    // Mixed: the generating rows, each token as its token_embd row, then a chunk of the span.
    const int32_t n_dec = static_cast<int32_t>(decoding.size());
    const size_t  chunk =
        std::min(n - a->offset, static_cast<size_t>(std::max(1, std::min(prefill_chunk_, cap - n_dec))));
    owned_batch b;
    b.embd.resize((static_cast<size_t>(n_dec) + chunk) * n_embd);
    std::vector<active *> owner;
    for (int32_t i = 0; i < n_dec; ++i) {
        active * d = decoding[i];
        tokens_->row(d->token, b.embd.data() + static_cast<size_t>(i) * n_embd);
        b.add(-1, d->pos, d->req.seq, true);
        owner.push_back(d);
    }
    std::copy(it.embd.begin() + a->offset * n_embd, it.embd.begin() + (a->offset + chunk) * n_embd,
              b.embd.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(n_dec) * n_embd));
    for (size_t j = 0; j < chunk; ++j) {
        const size_t k = a->offset + j;
        b.add(-1, it.positions.empty() ? it.pos0 + static_cast<int32_t>(k) : it.positions[k], a->req.seq, false);
        owner.push_back(a);
    }
    order_by_seq(b, owner, n_embd);
    bool         ok      = true;
    const double step_ms = run_rows(run, b.view(b.rows()), owner, ok);
    if (!ok) {
        return true;
    }
    // the generating rows were decoded: this iteration's token batch carries prompt rows only
    for (active * d : decoding) {
        d->stepped = true;
    }
    count_step(decoding, static_cast<int32_t>(chunk), true, step_ms);
    a->offset += chunk;
    if (a->offset == n) {
        a->item++;
        a->offset = 0;
        std::lock_guard<std::mutex> lock(mu_);
        stats_.spans++;
    }
    sample_rows(run, owner, b.pos, b.logits);
    return true;
}

void scheduler::iterate(std::vector<std::unique_ptr<active>> & run) {
    // 1. At most one media span (or a chunk of one, with the generating rows).
    media_step(run);
    run.erase(std::remove(run.begin(), run.end(), nullptr), run.end());

    // 2. One token batch: decode rows first, then prefill rows in arrival order (at most
    //    prefill_chunk_ of them while others generate, so that their next token is not late);
    //    decoded in order of sequence (order_by_seq).
    const int32_t         cap     = static_cast<int32_t>(ctx_->n_batch());
    const bool            waiting = std::any_of(run.begin(), run.end(), [](const auto & a) { return a->generating; });
    owned_batch           b;
    std::vector<active *> owner;
    auto                  add = [&](active * a, int32_t tok, int32_t p, bool want) {
        b.add(tok, p, a->req.seq, want);
        owner.push_back(a);
    };
    int32_t n_decode = 0;
    for (auto & a : run) {
        if (a->generating && !a->stepped && b.rows() < cap) {
            add(a.get(), a->token, a->pos, true);
            n_decode++;
        }
        a->stepped = false;
    }
    const int32_t budget    = waiting ? std::min(cap, n_decode + prefill_chunk_) : cap;
    int32_t       n_prefill = 0;
    for (auto & a : run) {
        if (a->generating) {
            continue;
        }
        while (a->prompt_left() && !a->req.items[a->item].is_embd() && b.rows() < budget) {
            if (!a->started) {
                a->started       = true;
                a->prefill_start = clock::now();
            }
            const sched_item & it        = a->req.items[a->item];
            const size_t       n         = it.tokens.size();
            const size_t       take      = std::min(n - a->offset, static_cast<size_t>(budget - b.rows()));
            const bool         last_item = a->item + 1 == a->req.items.size();
            for (size_t i = 0; i < take; ++i) {
                const size_t k = a->offset + i;
                add(a.get(), it.tokens[k], it.pos0 + static_cast<int32_t>(k), last_item && k + 1 == n);
            }
            n_prefill += static_cast<int32_t>(take);
            a->offset += take;
            if (a->offset == n) {
                a->item++;
                a->offset = 0;
            }
        }
    }
    if (b.rows() == 0) {
        return;
    }
    const std::vector<active *> decoders(owner.begin(), owner.begin() + n_decode);
    order_by_seq(b, owner, 0);
    bool         ok      = true;
    const double step_ms = run_rows(run, b.view(b.rows()), owner, ok);
    if (!ok) {
        return;
    }
    count_step(decoders, n_prefill, false, step_ms);

    // 3. Sample every row with logits.
    sample_rows(run, owner, b.pos, b.logits);
}

}  // namespace mm
