// The per-step uniform every position-dependent kernel reads (src/kernels/mod.rs, Step).
struct Step {
    pos: u32,       // position of the first token of this step
    n_tokens: u32,  // tokens in this step
    kv_len: u32,    // valid KV length after this step (pos + n_tokens)
    _pad: u32,
}

@group(0) @binding(8) var<uniform> step: Step;
