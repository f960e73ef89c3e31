// KV-cache element type and the sliding-window rule shared by the cache kernels.
// The cache is array<f16> in the F16 variant (device has shader-f16), array<f32> otherwise;
// arithmetic is always f32.
#ifdef F16
alias kv_t = f16;
#else
alias kv_t = f32;
#endif

// First key position a query at position kv_len - 1 may attend: with a window w, keys at
// distance < w (p - p' < w); window 0 means no window.
fn window_lo(kv_len: u32, window: u32) -> u32 {
    if (window > 0u && kv_len > window) {
        return kv_len - window;
    }
    return 0u;
}
