#include "encoders/jpeg_check.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.h"

namespace mm {

namespace {

[[noreturn]] void corrupt(const std::string & what) {
    fail(error_code::image_decode, "cannot decode image: corrupt JPEG (" + what + ")");
}

constexpr uint8_t k_soi = 0xD8, k_eoi = 0xD9, k_sos = 0xDA, k_dht = 0xC4, k_dri = 0xDD, k_dnl = 0xDC;

bool is_rst(uint8_t m) {
    return m >= 0xD0 && m <= 0xD7;
}

// A canonical Huffman table (JPEG Annex C), decoded one bit at a time.
struct huffman {
    bool    defined = false;
    int32_t maxcode[17]{};  // largest code of each length, -1 when there is none
    int32_t mincode[17]{};
    int32_t valptr[17]{};
    uint8_t vals[256]{};
};

struct component {
    int                   id = 0, h = 1, v = 1;
    int64_t               bw = 0, bh = 0;  // blocks of the component on its own (non-interleaved scans)
    int                   dc_table = 0, ac_table = 0, quant = 0;
    int32_t               dc_pred = 0;
    bool                  scanned = false;  // any scan (baseline) / a first DC scan (progressive)
    std::vector<uint64_t> nonzero;          // progressive: per block, coefficients already non-zero
};

// The entropy-coded data of one scan: bytes with FF 00 stuffing, ended by a marker.
class bit_reader {
  public:
    bit_reader(const uint8_t * b, size_t n, size_t pos) : b_(b), n_(n), pos_(pos) {}

    size_t pos() const { return pos_; }

    int bit() {
        if (nbits_ == 0) {
            fill();
        }
        --nbits_;
        return (acc_ >> nbits_) & 1;
    }

    uint32_t bits(int n) {
        uint32_t v = 0;
        for (int i = 0; i < n; ++i) {
            v = (v << 1) | static_cast<uint32_t>(bit());
        }
        return v;
    }

    int decode(const huffman & h) {
        int32_t code = 0;
        for (int len = 1; len <= 16; ++len) {
            code = (code << 1) | bit();
            if (code <= h.maxcode[len]) {
                return h.vals[h.valptr[len] + code - h.mincode[len]];
            }
        }
        corrupt("invalid Huffman code");
    }

    // The end of a restart interval or of a scan: what is left of the current byte is padding, and
    // the next bytes must be a marker (after optional FF fill bytes). Returns the marker.
    uint8_t end_segment() {
        nbits_ = 0;
        if (pos_ >= n_) {
            corrupt("the file ends inside the entropy-coded data");
        }
        if (b_[pos_] != 0xFF) {
            corrupt("extraneous bytes after the last block of a scan or restart interval");
        }
        while (pos_ < n_ && b_[pos_] == 0xFF) {
            ++pos_;
        }
        if (pos_ >= n_) {
            corrupt("the file ends inside the entropy-coded data");
        }
        const uint8_t m = b_[pos_++];
        if (m == 0x00) {
            corrupt("extraneous bytes after the last block of a scan or restart interval");
        }
        return m;
    }

  private:
    void fill() {
        if (pos_ >= n_) {
            corrupt("the file ends inside the entropy-coded data");
        }
        const uint8_t v = b_[pos_];
        if (v == 0xFF) {
            if (pos_ + 1 >= n_) {
                corrupt("the file ends inside the entropy-coded data");
            }
            if (b_[pos_ + 1] != 0x00) {
                corrupt("a marker interrupts the entropy-coded data before the last block");
            }
            pos_ += 2;
        } else {
            ++pos_;
        }
        acc_   = v;
        nbits_ = 8;
    }

    const uint8_t * b_;
    size_t          n_;
    size_t          pos_;
    uint32_t        acc_   = 0;
    int             nbits_ = 0;
};

class jpeg_checker {
  public:
    jpeg_checker(const uint8_t * b, size_t n) : b_(b), n_(n) {}

    void run() {
        size_t  i = 2;  // after SOI
        uint8_t m = next_marker(i);
        for (;;) {
            if (m == k_eoi) {
                break;
            }
            if (m == k_sos) {
                if (!have_frame_) {
                    corrupt("a scan before the frame header");
                }
                m = scan(i);
                if (is_rst(m)) {
                    m = next_marker(i);  // a restart marker after the last interval (stb skips it)
                }
                continue;
            }
            if (m == 0x01 || is_rst(m)) {
                corrupt("a restart marker outside a scan");
            }
            if (m == k_soi) {
                corrupt("a second start-of-image marker");
            }
            const size_t len  = segment_length(i);
            const size_t body = i + 2;
            if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
                if (have_frame_) {
                    corrupt("a second frame header");
                }
                if (!frame(body, len - 2, m == 0xC2)) {
                    return;  // not a frame stb decodes: stb reports it
                }
            } else if (m >= 0xC3 && m <= 0xCF && m != k_dht && m != 0xC8 && m != 0xCC) {
                return;  // lossless, hierarchical, arithmetic: stb refuses these itself
            } else if (m == k_dht) {
                define_huffman(body, len - 2);
            } else if (m == 0xDB) {
                define_quant(body, len - 2);
            } else if (m == k_dri) {
                if (len != 4) {
                    corrupt("bad DRI length");
                }
                restart_interval_ = (b_[body] << 8) | b_[body + 1];
            } else if (m == k_dnl) {
                if (!have_frame_ || n_scans_ == 0) {
                    corrupt("a DNL marker before the first scan");
                }
            } else if (!((m >= 0xE0 && m <= 0xEF) || m == 0xFE)) {
                corrupt("unexpected marker FF" + hex(m));  // stb stops decoding there
            }
            i = body + len - 2;
            m = next_marker(i);
        }
        if (!have_frame_ || n_scans_ == 0) {
            corrupt("no image data");
        }
        for (int c = 0; c < n_comp_; ++c) {
            if (!comp_[c].scanned) {
                corrupt("component " + std::to_string(comp_[c].id) + " is never scanned");
            }
        }
    }

  private:
    static std::string hex(uint8_t v) {
        const char * d = "0123456789ABCDEF";
        return std::string{d[v >> 4], d[v & 15]};
    }

    // The marker at b_[i] (after FF fill bytes); i moves past it.
    uint8_t next_marker(size_t & i) const {
        if (i >= n_) {
            corrupt("no end-of-image marker (truncated?)");
        }
        if (b_[i] != 0xFF) {
            corrupt("bad marker structure");
        }
        while (i < n_ && b_[i] == 0xFF) {
            ++i;
        }
        if (i >= n_) {
            corrupt("no end-of-image marker (truncated?)");
        }
        const uint8_t m = b_[i++];
        if (m == 0x00) {
            corrupt("bad marker structure");
        }
        return m;
    }

    size_t segment_length(size_t i) const {
        if (i + 2 > n_) {
            corrupt("truncated segment");
        }
        const size_t len = (static_cast<size_t>(b_[i]) << 8) | b_[i + 1];
        if (len < 2 || i + len > n_) {
            corrupt("truncated segment");
        }
        return len;
    }

    // SOF0/1/2; false for what stb does not decode (not 8-bit, zero height, ...), which stb reports.
    bool frame(size_t p, size_t len, bool progressive) {
        if (len < 6) {
            return false;
        }
        const int precision = b_[p];
        height_             = (b_[p + 1] << 8) | b_[p + 2];
        width_              = (b_[p + 3] << 8) | b_[p + 4];
        n_comp_             = b_[p + 5];
        if (precision != 8 || height_ == 0 || width_ == 0 || (n_comp_ != 1 && n_comp_ != 3 && n_comp_ != 4) ||
            len != 6 + 3 * static_cast<size_t>(n_comp_)) {
            return false;
        }
        int hmax = 1, vmax = 1;
        for (int c = 0; c < n_comp_; ++c) {
            component & k = comp_[c];
            k.id          = b_[p + 6 + 3 * c];
            k.h           = b_[p + 7 + 3 * c] >> 4;
            k.v           = b_[p + 7 + 3 * c] & 15;
            k.quant       = b_[p + 8 + 3 * c];
            if (k.h < 1 || k.h > 4 || k.v < 1 || k.v > 4 || k.quant > 3) {
                return false;
            }
            hmax = std::max(hmax, k.h);
            vmax = std::max(vmax, k.v);
        }
        for (int c = 0; c < n_comp_; ++c) {
            if (hmax % comp_[c].h != 0 || vmax % comp_[c].v != 0) {
                return false;
            }
        }
        mcux_ = (width_ + 8 * hmax - 1) / (8 * hmax);
        mcuy_ = (height_ + 8 * vmax - 1) / (8 * vmax);
        for (int c = 0; c < n_comp_; ++c) {
            component &   k  = comp_[c];
            const int64_t cw = (static_cast<int64_t>(width_) * k.h + hmax - 1) / hmax;
            const int64_t ch = (static_cast<int64_t>(height_) * k.v + vmax - 1) / vmax;
            k.bw             = (cw + 7) / 8;
            k.bh             = (ch + 7) / 8;
            if (progressive) {
                // stb's coefficient layout: the interleaved MCU grid, non-interleaved blocks inside it
                k.nonzero.assign(static_cast<size_t>(mcux_ * k.h * mcuy_ * k.v), 0);
            }
        }
        progressive_ = progressive;
        have_frame_  = true;
        return true;
    }

    void define_huffman(size_t p, size_t len) {
        const size_t end = p + len;
        while (p < end) {
            if (p + 17 > end) {
                corrupt("bad DHT segment");
            }
            const int tc = b_[p] >> 4, th = b_[p] & 15;
            if (tc > 1 || th > 3) {
                corrupt("bad DHT header");
            }
            huffman & h     = tables_[tc][th];
            int       total = 0;
            int32_t   code  = 0;
            for (int l = 1; l <= 16; ++l) {
                const int count = b_[p + l];
                h.valptr[l]     = total;
                h.mincode[l]    = code;
                code += count;
                total += count;
                h.maxcode[l] = count ? code - 1 : -1;
                if (total > 256 || code > (1 << l)) {
                    corrupt("bad Huffman table");
                }
                code <<= 1;
            }
            if (p + 17 + static_cast<size_t>(total) > end) {
                corrupt("bad DHT segment");
            }
            std::memcpy(h.vals, b_ + p + 17, static_cast<size_t>(total));
            h.defined = true;
            p += 17 + static_cast<size_t>(total);
        }
    }

    // DQT: only the DC entry of each table is kept (for the DC range check).
    void define_quant(size_t p, size_t len) {
        const size_t end = p + len;
        while (p < end) {
            const int pq = b_[p] >> 4, tq = b_[p] & 15;
            if (pq > 1 || tq > 3) {
                corrupt("bad DQT segment");
            }
            const size_t size = 1 + 64 * static_cast<size_t>(pq + 1);
            if (p + size > end) {
                corrupt("bad DQT segment");
            }
            dc_quant_[tq] = pq ? (b_[p + 1] << 8) | b_[p + 2] : b_[p + 1];
            p += size;
        }
    }

    // A DC coefficient (dc << al, the bits known so far) must be one an 8-bit picture can have: the
    // DC term of a block is 8 x its mean level-shifted sample, within [-1024, 1016]; the margin
    // covers quantisation, the point transform and encoders that let samples overshoot (mozjpeg's
    // deringing). A DC prediction that drifts beyond it comes from corrupt data.
    void check_dc(const component & k, int32_t dc, int al) const {
        const int64_t q     = dc_quant_[k.quant] > 0 ? dc_quant_[k.quant] : 1;
        const int64_t v     = static_cast<int64_t>(dc) * (int64_t{1} << al) * q;
        const int64_t slack = (int64_t{1} << al) * q;
        if (v < -k_dc_limit - slack || v > k_dc_limit + slack) {
            corrupt("a DC coefficient out of range");
        }
    }

    static constexpr int64_t k_dc_limit = 2048;

    const huffman & table(int cls, int id) const {
        const huffman & h = tables_[cls][id];
        if (!h.defined) {
            corrupt(std::string("a scan uses an undefined ") + (cls ? "AC" : "DC") + " Huffman table");
        }
        return h;
    }

    // One scan: its header at b_[i] (the length field), then the entropy-coded data. Returns the
    // marker that ends it; i moves past that marker.
    uint8_t scan(size_t & i) {
        const size_t len = segment_length(i);
        const size_t p   = i + 2;
        const int    ns  = len >= 3 ? b_[p] : 0;
        if (ns < 1 || ns > 4 || ns > n_comp_ || len != 6 + 2 * static_cast<size_t>(ns)) {
            corrupt("bad scan header");
        }
        int order[4];
        for (int s = 0; s < ns; ++s) {
            const int id = b_[p + 1 + 2 * s];
            int       c  = 0;
            while (c < n_comp_ && comp_[c].id != id) {
                ++c;
            }
            if (c == n_comp_) {
                corrupt("a scan names an unknown component");
            }
            for (int t = 0; t < s; ++t) {
                if (order[t] == c) {
                    corrupt("a scan names a component twice");
                }
            }
            comp_[c].dc_table = b_[p + 2 + 2 * s] >> 4;
            comp_[c].ac_table = b_[p + 2 + 2 * s] & 15;
            if (comp_[c].dc_table > 3 || comp_[c].ac_table > 3) {
                corrupt("bad scan header");
            }
            order[s] = c;
        }
        const size_t q  = p + 1 + 2 * static_cast<size_t>(ns);
        int          ss = b_[q], se = b_[q + 1], ah = b_[q + 2] >> 4, al = b_[q + 2] & 15;
        if (progressive_) {
            if (ss > 63 || se > 63 || ss > se || ah > 13 || al > 13) {
                corrupt("bad progressive scan parameters");
            }
            if ((ss == 0 && se != 0) || (ss > 0 && ns > 1)) {
                corrupt("a scan mixes DC and AC coefficients");
            }
        } else {
            if (ss != 0 || ah != 0 || al != 0) {
                corrupt("bad scan parameters");
            }
            se = 63;
        }
        ss_ = ss;
        se_ = se;
        ah_ = ah;
        for (int s = 0; s < ns; ++s) {
            component & k = comp_[order[s]];
            if (!progressive_ || ss == 0) {
                if (!progressive_ || ah == 0) {
                    table(0, k.dc_table);
                }
            }
            if (!progressive_ || ss > 0) {
                table(1, k.ac_table);
            }
            if (progressive_ && ss > 0 && !k.scanned) {
                corrupt("an AC scan before the component's first DC scan");
            }
        }

        bit_reader    rd(b_, n_, p + len - 2);
        const int64_t n_mcu    = ns == 1 ? comp_[order[0]].bw * comp_[order[0]].bh : mcux_ * mcuy_;
        const int     interval = restart_interval_;
        int           next_rst = 0;
        eob_run_               = 0;
        al_                    = al;
        for (int s = 0; s < ns; ++s) {
            comp_[order[s]].dc_pred = 0;
        }
        for (int64_t mcu = 0; mcu < n_mcu; ++mcu) {
            if (interval > 0 && mcu > 0 && mcu % interval == 0) {
                const uint8_t m = rd.end_segment();
                if (m != 0xD0 + next_rst) {
                    corrupt(is_rst(m) ? "restart markers out of order" : "a restart marker is missing");
                }
                next_rst = (next_rst + 1) & 7;
                eob_run_ = 0;
                for (int s = 0; s < ns; ++s) {
                    comp_[order[s]].dc_pred = 0;
                }
            }
            if (ns == 1) {
                component &   k  = comp_[order[0]];
                const int64_t bx = mcu % k.bw, by = mcu / k.bw;
                block(rd, k, bx + by * mcux_ * k.h);
            } else {
                const int64_t mx = mcu % mcux_, my = mcu / mcux_;
                for (int s = 0; s < ns; ++s) {
                    component & k = comp_[order[s]];
                    for (int y = 0; y < k.v; ++y) {
                        for (int x = 0; x < k.h; ++x) {
                            block(rd, k, (mx * k.h + x) + (my * k.v + y) * mcux_ * k.h);
                        }
                    }
                }
            }
        }
        for (int s = 0; s < ns; ++s) {
            if (!progressive_ || (ss == 0 && ah == 0)) {
                comp_[order[s]].scanned = true;
            }
        }
        ++n_scans_;
        const uint8_t m = rd.end_segment();
        i               = rd.pos();
        return m;
    }

    // A DC difference of category t (JPEG F.2.2.1), added to the component's prediction.
    void dc(bit_reader & rd, component & k, int t, int al) {
        int32_t diff = 0;
        if (t > 0) {
            const int32_t v = static_cast<int32_t>(rd.bits(t));
            diff            = v < (int32_t{1} << (t - 1)) ? v - (int32_t{1} << t) + 1 : v;
        }
        k.dc_pred += diff;
        check_dc(k, k.dc_pred, al);
    }

    void block(bit_reader & rd, component & k, int64_t index) {
        if (!progressive_) {
            const int t = rd.decode(table(0, k.dc_table));
            if (t > 15) {
                corrupt("invalid DC code");
            }
            dc(rd, k, t, 0);
            const huffman & ac = table(1, k.ac_table);
            for (int pos = 1; pos < 64;) {
                const int rs = rd.decode(ac);
                const int r = rs >> 4, s = rs & 15;
                if (s == 0) {
                    if (rs != 0xF0) {
                        break;  // end of block
                    }
                    pos += 16;
                    if (pos > 64) {
                        corrupt("a zero run past the end of a block");
                    }
                    continue;
                }
                pos += r;
                if (pos > 63) {
                    corrupt("a coefficient past the end of a block");
                }
                rd.bits(s);
                ++pos;
            }
            return;
        }
        uint64_t & nz = k.nonzero[static_cast<size_t>(index)];
        if (ss_ == 0) {
            if (ah_ == 0) {
                const int t = rd.decode(table(0, k.dc_table));
                if (t > 15) {
                    corrupt("invalid DC code");
                }
                dc(rd, k, t, al_);
                nz = 0;  // stb clears the block on its first DC scan
            } else {
                rd.bit();
            }
            return;
        }
        const huffman & ac = table(1, k.ac_table);
        if (ah_ == 0) {
            if (eob_run_ > 0) {
                --eob_run_;
                return;
            }
            for (int pos = ss_; pos <= se_;) {
                const int rs = rd.decode(ac);
                const int r = rs >> 4, s = rs & 15;
                if (s == 0) {
                    if (r < 15) {
                        eob_run_ = (1u << r) - 1 + rd.bits(r);
                        break;
                    }
                    pos += 16;
                    if (pos > se_ + 1) {
                        corrupt("a zero run past the end of a spectral band");
                    }
                    continue;
                }
                pos += r;
                if (pos > se_) {
                    corrupt("a coefficient past the end of a spectral band");
                }
                rd.bits(s);
                nz |= uint64_t{1} << pos;
                ++pos;
            }
            return;
        }
        // refinement: one correction bit for each coefficient that is already non-zero
        int pos = ss_;
        if (eob_run_ > 0) {
            --eob_run_;
            for (; pos <= se_; ++pos) {
                if ((nz >> pos) & 1) {
                    rd.bit();
                }
            }
            return;
        }
        while (pos <= se_) {
            const int rs = rd.decode(ac);
            int       r = rs >> 4, s = rs & 15;
            bool      eob = false;
            if (s == 0) {
                if (r < 15) {
                    eob_run_ = (1u << r) - 1 + rd.bits(r);
                    r        = 64;
                    eob      = true;
                }
            } else {
                if (s != 1) {
                    corrupt("invalid refinement code");
                }
                rd.bit();  // sign
            }
            // skip r coefficients that are still zero (reading the correction bits of the others),
            // then place the new one (or, for a zero run, step over the 16th zero)
            for (;;) {
                if (pos > se_) {
                    if (!eob) {
                        corrupt("a refinement past the end of a spectral band");
                    }
                    break;
                }
                if ((nz >> pos) & 1) {
                    rd.bit();
                } else if (r == 0) {
                    if (s != 0) {
                        nz |= uint64_t{1} << pos;
                    }
                    ++pos;
                    break;
                } else {
                    --r;
                }
                ++pos;
            }
        }
    }

    const uint8_t * b_;
    size_t          n_;
    bool            have_frame_  = false;
    bool            progressive_ = false;
    int             width_ = 0, height_ = 0, n_comp_ = 0;
    int64_t         mcux_ = 0, mcuy_ = 0;
    component       comp_[4];
    huffman         tables_[2][4];
    int             restart_interval_ = 0;
    int             n_scans_          = 0;
    int             ss_ = 0, se_ = 0, ah_ = 0, al_ = 0;
    int32_t         dc_quant_[4] = {1, 1, 1, 1};
    uint32_t        eob_run_     = 0;
};

}  // namespace

void check_jpeg_stream(const uint8_t * bytes, size_t size) {
    if (size < 4 || bytes[0] != 0xFF || bytes[1] != k_soi) {
        corrupt("no start-of-image marker");
    }
    jpeg_checker(bytes, size).run();
}

}  // namespace mm
