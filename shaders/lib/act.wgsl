// The gated FFN's activation, shared by gated_act.wgsl and the matvec's gated epilogue:
// SiLU (SILU), tanh-approximated GELU (GELU_TANH), or gpt-oss's clamped SwiGLU
// (SWIGLU_OAI, through `gated` alone).

// The gated value of a gate g and up projection u: act(g) * u, or gpt-oss's
// min(g, 7) * sigmoid(1.702 min(g, 7)) * (clamp(u, -7, 7) + 1).
fn gated(g: f32, u: f32) -> f32 {
#ifdef SWIGLU_OAI
    let c = min(g, 7.0);
    return c / (1.0 + exp(-1.702 * max(c, -80.0))) * (clamp(u, -7.0, 7.0) + 1.0);
#else
    return act(g) * u;
#endif
}

fn act(x: f32) -> f32 {
#ifdef SWIGLU_OAI
    return x;
#endif
#ifdef SILU
    // exp(-x) overflows f32 below x = -88; past -80 the result is ~0 either way.
    return x / (1.0 + exp(-clamp(x, -80.0, 80.0)));
#endif
#ifdef GELU_TANH
    // Past |x| = 10 the tanh is +-1 to f32 precision; clamping keeps x^3 and the
    // exponentials inside tanh finite on every implementation.
    let c = clamp(x, -10.0, 10.0);
    let u = 0.7978845608 * (c + 0.044715 * c * c * c);
    return 0.5 * x * (1.0 + tanh(clamp(u, -10.0, 10.0)));
#endif
}
