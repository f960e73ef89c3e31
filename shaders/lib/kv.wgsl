// KV-cache element type and the sliding-window rule shared by the cache kernels.
// The cache is array<f16> in the F16 variant (device has shader-f16), array<f32>
// otherwise, and with Q8 array<u32> holding llama.cpp's Q8_0 per 32 values of a head:
// each head of a row is head_dim / 4 words of four signed bytes (value 4w + i in byte i
// of word w), then the f16 scales of its blocks, two to a word (block b in half b % 2 of
// word b / 2). kv_t is then the f32 the kernels compute in. Arithmetic is always f32.
#ifdef F16
alias kv_t = f16;
#else
alias kv_t = f32;
#endif

// A head's stride within a cache row, in the units the cache is indexed by (values, or
// words for Q8).
fn kv_head_stride(head_dim: u32) -> u32 {
#ifdef Q8
    return head_dim / 4u + (head_dim / 32u + 1u) / 2u;
#else
    return head_dim;
#endif
}

// The four values of quant word `qw` (vec4 column c of its head) with the scale word
// `sw` that holds its block's scale.
fn q8_col(qw: u32, sw: u32, c: u32) -> vec4<f32> {
    let d = unpack2x16float(sw)[(c / 8u) % 2u];
    let q = vec4<i32>(bitcast<i32>(qw << 24u), bitcast<i32>(qw << 16u), bitcast<i32>(qw << 8u), bitcast<i32>(qw)) >> vec4<u32>(24u);
    return vec4<f32>(q) * d;
}

// First key position a query at position kv_len - 1 may attend: with a window w, keys at
// distance < w (p - p' < w); window 0 means no window.
fn window_lo(kv_len: u32, window: u32) -> u32 {
    if (window > 0u && kv_len > window) {
        return kv_len - window;
    }
    return 0u;
}
