// The per-step uniform every position-dependent kernel reads (src/kernels/mod.rs, Step).
// Each token t of the step has its own row: its position in its sequence and the
// sequence's slot in the KV cache, so one step may advance several sequences (batched
// decode) as well as one sequence's run of prompt tokens (prefill).
struct Step {
    pos: u32,       // position of the first token of this step (single-sequence steps)
    n_tokens: u32,  // tokens in this step
    kv_len: u32,    // the longest KV length a token of this step attends (host: form choice)
    _pad: u32,
    rows: array<vec4<u32>, 1024>,  // per token: (position, KV slot, 0, 0)
}

@group(0) @binding(8) var<uniform> step: Step;

// Position of token t of this step in its sequence.
fn row_pos(t: u32) -> u32 {
    return step.rows[t].x;
}

// KV-cache slot (sequence) of token t of this step.
fn row_slot(t: u32) -> u32 {
    return step.rows[t].y;
}
