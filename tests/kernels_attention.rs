//! The KV cache and attention kernels (append, flash-decoding, tiled causal prefill)
//! against their CPU twins on random data, with an f16 cache (Config::Full) and an f32
//! cache (Config::Bare), over chunk and tile boundaries, MHA / GQA / MQA and sliding
//! windows. The CPU twins read the cache contents as the GPU stores them (f16-rounded for
//! an f16 cache), so the only differences left are f32 accumulation and exp on the GPU.

mod common;

use common::{assert_close, gpu, nmse, output, random_vec, read, storage, Config};
use hearth::gpu::Gpu;
use hearth::kernels::{
    self, attention_decode, kv_append, AttentionDecode, KvAppend, KvCache, Step, StepBuffer, View,
};

/// NMSE bound of attention against the f64 twin: both read identical cache values and
/// differ only by f32 rounding of the dot products, exp and the weighted sums.
const BOUND: f64 = 1e-9;

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

/// Writes `data` (`[position][kv_dim]`, all rows) into a cache buffer directly and returns
/// what the cache now holds.
fn fill(g: &Gpu, c: &KvCache, buf: &wgpu::Buffer, data: &[f32]) -> Vec<f32> {
    if c.f16 {
        let mut h: Vec<half::f16> = data.iter().map(|x| half::f16::from_f32(*x)).collect();
        if h.len() % 2 == 1 {
            h.push(half::f16::ZERO);
        }
        g.queue.write_buffer(buf, 0, bytemuck::cast_slice(&h));
        h[..data.len()].iter().map(|x| x.to_f32()).collect()
    } else {
        g.queue.write_buffer(buf, 0, bytemuck::cast_slice(data));
        data.to_vec()
    }
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

#[test]
fn attention_rejects_bad_shapes() {
    let g = gpu(Config::Bare);
    let cache = KvCache::new(&g, 16, 512).unwrap();
    let q = storage(&g, &vec![0.0; 4 * 512]);
    let o = output(&g, 4 * 512);
    let step = StepBuffer::new(&g, Step::new(0, 1));
    let dec = |h, kvh, hd, w| {
        AttentionDecode::new(
            &g,
            View::of(&q),
            &cache,
            View::of(&o),
            h,
            kvh,
            hd,
            1.0,
            w,
            &step,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    assert!(dec(4, 1, 512, None).contains("head_dim 512"));
    assert!(dec(4, 3, 128, None).contains("multiple"));
    assert!(dec(4, 2, 128, None).contains("kv_dim 512"));
    assert!(dec(4, 2, 256, Some(0)).contains("window"));
}

/// Decode over a cache filled with random rows, for every kv_len and window, against the
/// twin; the op is built once per shape and only the step changes, as in a real plan.
fn check_decode(cfg: Config, n_heads: usize, n_kv_heads: usize, head_dim: usize) -> f64 {
    let g = gpu(cfg);
    let cap = 1030usize;
    let kv_dim = n_kv_heads * head_dim;
    let cache = KvCache::new(&g, cap as u32, kv_dim as u32).unwrap();
    let seed = (n_heads * 1000 + n_kv_heads * 100 + head_dim) as u64;
    let k = fill(&g, &cache, &cache.k, &random_vec(cap * kv_dim, seed));
    let v = fill(&g, &cache, &cache.v, &random_vec(cap * kv_dim, seed + 1));
    // Large scores (scale 1 / sqrt(d) with |q| up to 4) make the softmax peaky.
    let q: Vec<f32> = random_vec(n_heads * head_dim + 3, seed + 2)
        .iter()
        .map(|x| 4.0 * x)
        .collect();
    let qb = storage(&g, &q);
    let ob = output(&g, n_heads * head_dim + 2);
    let scale = 1.0 / (head_dim as f32).sqrt();
    let step = StepBuffer::new(&g, Step::new(0, 1));
    let mut worst = 0f64;
    for window in [None, Some(8), Some(512)] {
        let op = AttentionDecode::new(
            &g,
            View {
                buffer: &qb,
                offset: 3,
            },
            &cache,
            View {
                buffer: &ob,
                offset: 2,
            },
            n_heads as u32,
            n_kv_heads as u32,
            head_dim as u32,
            scale,
            window,
            &step,
        )
        .unwrap();
        for kv_len in [1usize, 7, 63, 64, 65, 300, 1000] {
            step.write(&g, Step::new(kv_len as u32 - 1, 1));
            kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());
            let got = read(&g, &ob, n_heads * head_dim + 2);
            let want = attention_decode::cpu(
                &q[3..],
                &k,
                &v,
                n_heads,
                n_kv_heads,
                head_dim,
                scale,
                window,
                kv_len,
            );
            let case = format!(
                "decode {cfg:?} heads {n_heads}/{n_kv_heads} d {head_dim} window {window:?} kv_len {kv_len}"
            );
            assert_close(&case, &got[2..], &want, BOUND);
            worst = worst.max(nmse(&got[2..], &want));
        }
    }
    worst
}

#[test]
fn decode_matches_twin() {
    for cfg in [Config::Full, Config::Bare] {
        let mut worst = 0f64;
        for head_dim in [16, 64, 256] {
            for (h, kvh) in [(4, 4), (4, 2), (4, 1)] {
                worst = worst.max(check_decode(cfg, h, kvh, head_dim));
            }
        }
        eprintln!("decode {cfg:?}: worst NMSE {worst:.2e}");
    }
}
