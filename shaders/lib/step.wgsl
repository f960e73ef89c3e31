// The per-step uniform every position-dependent kernel reads (src/kernels/mod.rs, Step).
// Each token t of the step has its own row: its position in its sequence and the
// sequence's slot in the KV cache, so one step may advance several sequences (batched
// decode) as well as one sequence's run of prompt tokens (prefill).
// The KV cache is either one run of `capacity` rows per slot (pages_per_slot == 0) or a
// pool of pages of 2^page_shift rows: slot s's logical page j is pool page
// pages[s * pages_per_slot + j] (a page table per sequence, PagedAttention style).
struct Step {
    pos: u32,       // position of the first token of this step (single-sequence steps)
    n_tokens: u32,  // tokens in this step
    kv_len: u32,    // the longest KV length a token of this step attends (host: form choice)
    page_shift: u32,
    pages_per_slot: u32,  // 0: unpaged
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    rows: array<vec4<u32>, 1024>,   // per token: (position, KV slot, 0, 0)
    pages: array<vec4<u32>, 2048>,  // page tables, four entries per element
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

// Cache row of position `pos` of the sequence in slot `slot`: through its page table when
// the cache is paged, else slot after slot of `capacity` rows.
fn cache_row(slot: u32, pos: u32, capacity: u32) -> u32 {
    if (step.pages_per_slot == 0u) {
        return slot * capacity + pos;
    }
    let i = slot * step.pages_per_slot + (pos >> step.page_shift);
    let page = step.pages[i >> 2u][i & 3u];
    return (page << step.page_shift) | (pos & ((1u << step.page_shift) - 1u));
}
