//! The KV cache and attention kernels (append, flash-decoding, tiled causal prefill)
//! against their CPU twins on random data, with an f16 cache (Config::Full) and an f32
//! cache (Config::Bare), over chunk and tile boundaries, MHA / GQA / MQA and sliding
//! windows. The CPU twins read the cache contents as the GPU stores them (f16-rounded for
//! an f16 cache), so the only differences left are f32 accumulation and exp on the GPU.

mod common;

use common::{gpu, random_vec, read, storage, Config};
use hearth::gpu::Gpu;
use hearth::kernels::{self, kv_append, KvAppend, KvCache, Step, StepBuffer, View};

/// The cache contents as f32, whatever the element type.
fn read_cache(g: &Gpu, c: &KvCache, buf: &wgpu::Buffer) -> Vec<f32> {
    let n = c.capacity as usize * c.kv_dim as usize;
    if !c.f16 {
        return read(g, buf, n);
    }
    let words = read(g, buf, n.div_ceil(2));
    bytemuck::cast_slice::<f32, half::f16>(&words)[..n]
        .iter()
        .map(|h| h.to_f32())
        .collect()
}

#[test]
fn kv_append_writes_rows_exactly() {
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        let (cap, kv_dim, stride, max_tokens) = (50usize, 24usize, 30usize, 8usize);
        let cache = KvCache::new(&g, cap as u32, kv_dim as u32).unwrap();
        assert_eq!(cache.f16, matches!(cfg, Config::Full));
        // K and V inside one buffer at different offsets, as in a fused QKV activation.
        let x = random_vec(2 * max_tokens * stride + 9, 11);
        let xb = storage(&g, &x);
        let (ko, vo) = (3usize, 3 + max_tokens * stride + 2);
        let step = StepBuffer::new(&g, Step::new(0, 1));
        let op = KvAppend::new(
            &g,
            View {
                buffer: &xb,
                offset: ko as u64,
            },
            View {
                buffer: &xb,
                offset: vo as u64,
            },
            stride as u32,
            &cache,
            max_tokens as u32,
            &step,
        )
        .unwrap();
        let mut want_k = vec![0f32; cap * kv_dim];
        let mut want_v = vec![0f32; cap * kv_dim];
        // Fewer tokens than built for; then a step that runs past the capacity.
        for (pos, n) in [(10usize, 5usize), (0, 1), (47, 5)] {
            step.write(&g, Step::new(pos as u32, n as u32));
            kernels::run(&g, &[&op.dispatch]);
            kv_append::cpu(&mut want_k, &x[ko..], stride, kv_dim, pos, n, cache.f16);
            kv_append::cpu(&mut want_v, &x[vo..], stride, kv_dim, pos, n, cache.f16);
            let (got_k, got_v) = (
                read_cache(&g, &cache, &cache.k),
                read_cache(&g, &cache, &cache.v),
            );
            // A copy (with round-to-nearest f16 conversion): exact, rows elsewhere still 0.
            assert_eq!(got_k, want_k, "{cfg:?} keys after step ({pos}, {n})");
            assert_eq!(got_v, want_v, "{cfg:?} values after step ({pos}, {n})");
        }
        // got == want above, so rows 15..47, never in a step, are still zero on the GPU.
        assert!(want_k[15 * kv_dim..47 * kv_dim].iter().all(|v| *v == 0.0));
    }
}

#[test]
fn kv_cache_refuses_what_does_not_fit() {
    let g = gpu(Config::SmallBinding);
    // 1000 positions x 256 values in f16 = 512000 bytes per buffer, above 64 KiB.
    let e = KvCache::new(&g, 1000, 256).err().expect("must not fit");
    let msg = e.to_string();
    assert!(
        msg.contains("1000 positions") && msg.contains("65536") && msg.contains("bytes"),
        "{msg}"
    );
    let f16 = g.features.shader_f16;
    let fits = (64 << 10) / (256 * if f16 { 2 } else { 4 });
    assert!(KvCache::new(&g, fits, 256).is_ok());
    assert_eq!(KvCache::bytes(1000, 256, true), 1_024_000);
    assert_eq!(KvCache::bytes(3, 3, true), 2 * 20);
    assert_eq!(KvCache::bytes(3, 3, false), 2 * 36);
}
