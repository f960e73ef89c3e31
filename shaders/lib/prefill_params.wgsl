// The uniforms of prefill attention, shared by its tiled form (attention_prefill.wgsl)
// and its row-per-invocation form (attention_rows.wgsl); the host's
// attention_prefill::Params.
struct Params {
    n_heads: u32,
    group: u32,       // q heads per kv head
    head_dim: u32,
    kv_dim: u32,
    capacity: u32,
    window: u32,      // 0: no sliding window
    max_tokens: u32,
    q_offset: u32,
    out_offset: u32,
    scale: f32,
    softcap: f32,     // > 0: scores become softcap * tanh(score / softcap)
    _pad: u32,
}
