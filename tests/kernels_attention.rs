//! The KV cache and attention kernels (append, flash-decoding, tiled causal prefill)
//! against their CPU twins on random data, with an f16 cache (Config::Full) and an f32
//! cache (Config::Bare), over chunk and tile boundaries, MHA / GQA / MQA and sliding
//! windows. The CPU twins read the cache contents as the GPU stores them (f16-rounded for
//! an f16 cache), so the only differences left are f32 accumulation and exp on the GPU.

mod common;

use common::{assert_close, gpu, nmse, output, random_vec, read, storage, Config};
use hearth::gpu::Gpu;
use hearth::kernels::rope::YarnRamp;
use hearth::kernels::{
    self, attention_decode, attention_prefill, kv_append, rope_kv, AttentionDecode,
    AttentionPrefill, AttnSpec, KvAppend, KvCache, KvType, RopeKv, RopeKvIo, RopeSpec, Rows, Step,
    StepBuffer, Tokens, View,
};

fn spec(n_heads: u32, n_kv_heads: u32, head_dim: u32, scale: f32, window: Option<u32>) -> AttnSpec {
    AttnSpec {
        n_heads,
        n_kv_heads,
        head_dim,
        scale,
        window,
        softcap: None,
    }
}

/// One row of `width` per token, packed, from `view`.
fn packed(view: View, width: usize) -> Rows {
    Rows {
        view,
        width: width as u32,
        rows: 1,
        stride: width as u32,
    }
}

/// NMSE bound of attention against the f64 twin: both read identical cache values and
/// differ only by f32 rounding of the dot products, exp and the weighted sums.
const BOUND: f64 = 1e-9;

/// The cache contents (its first `capacity` rows) as f32, whatever the type.
fn read_cache(g: &Gpu, c: &KvCache, buf: &wgpu::Buffer) -> Vec<f32> {
    let rows = c.capacity as usize;
    let words = read(g, buf, (rows as u64 * c.row_bytes()).div_ceil(4) as usize);
    let bytes: &[u8] = bytemuck::cast_slice(&words);
    c.kind
        .decode(bytes, rows, c.kv_dim as usize, c.head_dim as usize)
}

/// Writes `data` (`[position][kv_dim]`, whole rows) into a cache buffer directly, in the
/// cache's type, and returns what the cache now holds.
fn fill(g: &Gpu, c: &KvCache, buf: &wgpu::Buffer, data: &[f32]) -> Vec<f32> {
    let (kv_dim, head_dim) = (c.kv_dim as usize, c.head_dim as usize);
    let bytes = c.kind.encode(data, kv_dim, head_dim);
    g.queue.write_buffer(buf, 0, &bytes);
    c.kind.decode(&bytes, data.len() / kv_dim, kv_dim, head_dim)
}

/// A cache of `kind` (None: the device's default) for `cap` positions of heads of
/// `head_dim`.
fn cache_of(g: &Gpu, kind: Option<KvType>, cap: usize, kv_dim: usize, head_dim: usize) -> KvCache {
    let kind = kind.unwrap_or(KvType::default_for(g.features.shader_f16));
    let dims = (kv_dim as u32, head_dim as u32);
    KvCache::typed(g, kind, cap as u64, cap as u32, dims).unwrap()
}

#[test]
fn kv_append_writes_rows_exactly() {
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        let (cap, kv_dim, stride, max_tokens) = (50usize, 24usize, 30usize, 8usize);
        let cache = KvCache::new(&g, cap as u32, kv_dim as u32).unwrap();
        assert_eq!(cache.f16(), matches!(cfg, Config::Full));
        // K and V inside one buffer at different offsets, as in a fused QKV activation.
        let x = random_vec(2 * max_tokens * stride + 9, 11);
        let xb = storage(&g, &x);
        let (ko, vo) = (3usize, 3 + max_tokens * stride + 2);
        let step = StepBuffer::new(&g, Step::new(0, 1));
        let at = |offset: usize| Rows {
            view: View {
                buffer: &xb,
                offset: offset as u64,
            },
            width: kv_dim as u32,
            rows: 1,
            stride: stride as u32,
        };
        let tok = Tokens {
            max: max_tokens as u32,
            step: &step,
        };
        let op = KvAppend::new(&g, at(ko), at(vo), &cache, tok).unwrap();
        let mut want_k = vec![0f32; cap * kv_dim];
        let mut want_v = vec![0f32; cap * kv_dim];
        // Fewer tokens than built for; then a step that runs past the capacity.
        for (pos, n) in [(10usize, 5usize), (0, 1), (47, 5)] {
            step.write(&g, Step::new(pos as u32, n as u32));
            kernels::run(&g, &[&op.dispatch]);
            kv_append::cpu(&mut want_k, &x[ko..], stride, kv_dim, pos, n, cache.f16());
            kv_append::cpu(&mut want_v, &x[vo..], stride, kv_dim, pos, n, cache.f16());
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
    // q8_0: 34 bytes per 32 values (heads of 64: two blocks, one scale word), so the
    // positions that fit roughly double f16's; whole blocks only.
    assert_eq!(KvType::Q8_0.row_bytes(256, 64), 4 * 34 * 2);
    assert_eq!(KvType::Q8_0.row_bytes(96, 96), 24 * 4 + 2 * 4);
    let q8 = |rows: u64, hd: u32| KvCache::typed(&g, KvType::Q8_0, rows, rows as u32, (256, hd));
    assert!(q8((64 << 10) / 272, 64).is_ok());
    let e = q8((64 << 10) / 272 + 1, 64)
        .err()
        .expect("one row past the binding");
    assert!(e.to_string().contains("bytes"), "{e}");
    let e = q8(4, 16).err().expect("a head of 16 is half a block");
    assert!(e.to_string().contains("multiple of 32"), "{e}");
    let bare = gpu(Config::Bare);
    let e = KvCache::typed(&bare, KvType::F16, 4, 4, (64, 64))
        .err()
        .expect("f16 without shader-f16");
    assert!(e.to_string().contains("shader-f16"), "{e}");
}

/// q8_0 rounding in the host encoder matches llama.cpp's reference quantizer on known
/// values: scale amax / 127 kept as f16, halves rounded away from zero.
#[test]
fn q8_kv_rounding_matches_llama_cpp_rule() {
    let mut x = vec![0f32; 32];
    x[0] = 127.0;
    x[1] = -0.5;
    x[2] = 0.5;
    x[3] = 1.49;
    x[4] = -63.5;
    let mut r = x.clone();
    KvType::Q8_0.round(&mut r);
    assert_eq!(&r[..5], &[127.0, -1.0, 1.0, 1.0, -64.0]);
    let bytes = KvType::Q8_0.encode(&x, 32, 32);
    assert_eq!(bytes.len(), 36, "8 quant words and one scale word");
    assert_eq!(bytes[0] as i8, 127);
    assert_eq!(bytes[4] as i8, -64);
    assert_eq!(
        half::f16::from_le_bytes([bytes[32], bytes[33]]).to_f32(),
        1.0
    );
    assert_eq!(KvType::Q8_0.decode(&bytes, 1, 32, 32), r);
    // An all-zero block has scale 0 and decodes to zeros.
    let z = KvType::Q8_0.encode(&[0.0; 64], 64, 64);
    assert!(KvType::Q8_0.decode(&z, 1, 64, 64).iter().all(|v| *v == 0.0));
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
            &spec(h, kvh, hd, 1.0, w),
            View::of(&q),
            View::of(&o),
            &cache,
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
    let pre = AttentionPrefill::new(
        &g,
        &spec(4, 2, 256, 1.0, None),
        View::of(&q),
        View::of(&o),
        &cache,
        Tokens {
            max: 3,
            step: &step,
        },
    );
    assert!(pre.err().unwrap().to_string().contains("needs"));
    // The row-per-invocation form refuses what it cannot run: here no subgroups, and a
    // head_dim that is not a multiple of 32.
    let tok = Tokens {
        max: 3,
        step: &step,
    };
    let views = (View::of(&q), View::of(&o));
    let cache18 = KvCache::new(&g, 16, 36).unwrap();
    let rows = AttentionPrefill::with_form(
        &g,
        &spec(4, 2, 18, 1.0, None),
        views,
        &cache18,
        tok,
        (None, true),
        true,
    );
    assert!(rows
        .err()
        .unwrap()
        .to_string()
        .contains("row-per-invocation"));
    // Decode's subgroup-per-key form refuses an adapter without subgroups (this one), and
    // on one with them a geometry that does not fit it.
    let form = |g: &Gpu, cache: &KvCache, f: attention_decode::SgKey| {
        let step = StepBuffer::new(g, Step::new(0, 1));
        let (q, o) = (storage(g, &vec![0.0; 4 * 512]), output(g, 4 * 512));
        AttentionDecode::with_form(
            g,
            &spec(4, 2, 256, 1.0, None),
            (View::of(&q), View::of(&o)),
            cache,
            Tokens {
                max: 1,
                step: &step,
            },
            (None, Some(f)),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let fit = attention_decode::SgKey {
        sg_min: 8,
        workgroup: 64,
        splits: 16,
    };
    assert!(form(&g, &cache, fit).contains("does not fit"));
    let full = gpu(Config::Full);
    let cache_full = KvCache::new(&full, 16, 512).unwrap();
    let takes = full.features.subgroups
        && (8..=64).contains(&full.info.subgroup_min_size)
        && full.info.subgroup_max_size <= 64;
    assert_eq!(attention_decode::sgkey(&full).is_some(), takes);
    if let Some(k) = attention_decode::sgkey(&full) {
        assert_eq!(
            form(&full, &cache_full, k),
            "",
            "the adapter's own pick builds"
        );
        for bad in [
            attention_decode::SgKey { sg_min: 4, ..k },
            attention_decode::SgKey { workgroup: 32, ..k },
            attention_decode::SgKey { splits: 0, ..k },
        ] {
            assert!(
                form(&full, &cache_full, bad).contains("does not fit"),
                "{bad:?}"
            );
        }
    }
}

/// Refills `out` with NaN (so a form that wrote nothing cannot pass on the other's
/// result), then the dispatches `d`.
fn output_reset<'a>(
    g: &Gpu,
    out: &wgpu::Buffer,
    d: &'a [kernels::Dispatch],
) -> Vec<&'a kernels::Dispatch> {
    g.queue
        .write_buffer(out, 0, &vec![0u8; out.size() as usize]);
    d.iter().collect()
}

/// Decode over a cache filled with random rows, for every kv_len and window, against the
/// twin; the op is built once per shape and only the step changes, as in a real plan.
fn check_decode(
    cfg: Config,
    kind: Option<KvType>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    softcap: Option<f32>,
) -> f64 {
    let shape = (n_heads, n_kv_heads, head_dim);
    check_decode_lens(
        cfg,
        kind,
        shape,
        softcap,
        1030,
        &[1, 7, 63, 64, 65, 300, 1000],
    )
}

/// `check_decode` over a cache of `cap` rows at the lengths `lens`.
fn check_decode_lens(
    cfg: Config,
    kind: Option<KvType>,
    (n_heads, n_kv_heads, head_dim): (usize, usize, usize),
    softcap: Option<f32>,
    cap: usize,
    lens: &[usize],
) -> f64 {
    let g = gpu(cfg);
    let kv_dim = n_kv_heads * head_dim;
    let cache = cache_of(&g, kind, cap, kv_dim, head_dim);
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
        let a = AttnSpec {
            softcap,
            ..spec(
                n_heads as u32,
                n_kv_heads as u32,
                head_dim as u32,
                scale,
                window,
            )
        };
        for form in forms(&g) {
            let op = AttentionDecode::with_form(
                &g,
                &a,
                (
                    View {
                        buffer: &qb,
                        offset: 3,
                    },
                    View {
                        buffer: &ob,
                        offset: 2,
                    },
                ),
                &cache,
                Tokens {
                    max: 1,
                    step: &step,
                },
                (None, form),
            )
            .unwrap();
            for &kv_len in lens {
                step.write(&g, Step::new(kv_len as u32 - 1, 1));
                let want = attention_decode::cpu(&a, &q[3..], &k, &v, kv_len);
                // Both forms at every length (the plan picks one by length: `for_len`).
                for (pass, d) in [("split", &op.dispatches), ("single", &op.single)] {
                    kernels::run(&g, &output_reset(&g, &ob, d));
                    let got = read(&g, &ob, n_heads * head_dim + 2);
                    let case = format!(
                    "decode {form:?} {pass} {cfg:?} {} heads {n_heads}/{n_kv_heads} d {head_dim} window {window:?} softcap {softcap:?} kv_len {kv_len}",
                    cache.kind
                );
                    assert_close(&case, &got[2..], &want, BOUND);
                    worst = worst.max(nmse(&got[2..], &want));
                }
                let seen = window.map_or(kv_len, |w| kv_len.min(w as usize));
                let picked = op.for_len(kv_len as u32).len();
                let short = seen <= op.single_max() as usize;
                assert_eq!(
                    picked,
                    if short { 1 } else { 2 },
                    "kv_len {kv_len} window {window:?}"
                );
            }
        }
    }
    worst
}

/// The forms of decode attention's pass 1 an adapter can run: the per-lane form, and with
/// subgroups the subgroup-per-key form as the adapter picks it, in workgroups of 64 (its
/// subgroups merge through shared memory), with one chunk per split (the parallel
/// combine) and with 3 balanced splits (the in-order combine, empty splits when a range
/// has fewer chunks).
fn forms(g: &Gpu) -> Vec<Option<attention_decode::SgKey>> {
    let mut out = vec![None];
    if let Some(k) = attention_decode::sgkey(g) {
        out.push(Some(k));
        for f in [
            attention_decode::SgKey { workgroup: 64, ..k },
            attention_decode::SgKey {
                splits: u32::MAX,
                ..k
            },
            attention_decode::SgKey { splits: 3, ..k },
        ] {
            if !out.contains(&Some(f)) {
                out.push(Some(f));
            }
        }
    }
    out
}

/// The subgroup-per-key form's vec4 columns per lane: a head's over the smallest
/// subgroup, rounded up to a power of two.
#[test]
fn decode_lane_columns() {
    for (head_dim, sg_min, cols) in [
        (64, 8, 2),
        (256, 8, 8),
        (96, 8, 4),
        (18, 8, 1),
        (40, 8, 2),
        (128, 16, 2),
        (64, 32, 1),
        (256, 64, 1),
    ] {
        assert_eq!(
            attention_decode::lane_cols(head_dim, sg_min),
            cols,
            "head_dim {head_dim}, subgroups of {sg_min}"
        );
    }
}

#[test]
fn decode_matches_twin() {
    for cfg in [Config::Full, Config::Bare] {
        let mut worst = 0f64;
        for head_dim in [16, 64, 256] {
            for (h, kvh) in [(4, 4), (4, 2), (4, 1)] {
                worst = worst.max(check_decode(cfg, None, h, kvh, head_dim, None));
            }
        }
        // A head_dim off vec4 (scalar reads); groups of 7 and 12 query heads (blocks of
        // 7 and 6 heads per workgroup); MQA with 16 heads (two blocks of 8); a 96-wide
        // head (24 vec4 columns: 4 a lane on subgroups of 8, the last one past the head).
        for (h, kvh, hd) in [
            (4, 2, 18),
            (14, 2, 64),
            (12, 1, 40),
            (16, 1, 18),
            (2, 1, 96),
        ] {
            worst = worst.max(check_decode(cfg, None, h, kvh, hd, None));
        }
        eprintln!("decode {cfg:?}: worst NMSE {worst:.2e}");
    }
}

/// Long contexts: more chunks than the combine pass's workgroup takes at once (64 keys a
/// chunk, 64 chunks a tile: 4,097 keys start a second tile, 8,300 make three).
#[test]
fn decode_combines_many_chunks() {
    for cfg in [Config::Full, Config::Bare] {
        for (shape, kind) in [((4, 1, 64), None), ((2, 2, 32), Some(KvType::Q8_0))] {
            check_decode_lens(cfg, kind, shape, None, 8300, &[4096, 4097, 8300]);
        }
    }
}

/// Soft-capped scores (Gemma 2: `c * tanh(s / c)` of the scaled score), a cap small
/// enough to bite on these peaky scores, with and without shader-f16 and subgroups.
#[test]
fn decode_softcap_matches_twin() {
    for cfg in [Config::Full, Config::Bare] {
        for (h, kvh, hd) in [(4, 2, 64), (8, 2, 256), (4, 4, 18)] {
            check_decode(cfg, None, h, kvh, hd, Some(1.5));
        }
    }
}

/// The q8_0 cache (the twin reads the dequantized values the cache holds), with and
/// without shader-f16 and subgroups: one, two and eight blocks per head (an odd count
/// leaves half a scale word), MHA, GQA and MQA.
#[test]
fn decode_q8_matches_twin() {
    for cfg in [Config::Full, Config::Bare] {
        let mut worst = 0f64;
        for (h, kvh, hd) in [
            (4, 4, 32),
            (4, 2, 96),
            (4, 1, 256),
            (14, 2, 64),
            (8, 8, 128),
        ] {
            worst = worst.max(check_decode(cfg, Some(KvType::Q8_0), h, kvh, hd, None));
        }
        eprintln!("decode q8_0 {cfg:?}: worst NMSE {worst:.2e}");
    }
}

/// Everything one prefill case needs on the GPU: the cache, the append and attention ops
/// (built for `max_tokens`), the step, and the q / k / v / out activations.
struct Prefill {
    cache: KvCache,
    /// The whole sequence's K and V rows as the cache holds them, when they were written
    /// up front (a q8_0 cache, which `KvAppend` does not write).
    preset: bool,
    /// The attention's score soft-cap.
    softcap: Option<f32>,
    step: StepBuffer,
    qb: wgpu::Buffer,
    kb: wgpu::Buffer,
    vb: wgpu::Buffer,
    ob: wgpu::Buffer,
    /// The form to build (`AttentionPrefill::with_form`'s `rows`); None: the adapter's.
    rows: Option<bool>,
}

/// Tokens a prefill step is built for (at most: a step near the cache's end gets less).
const MAX_TOKENS: usize = 512;

impl Prefill {
    fn new(g: &Gpu, cap: usize, n_heads: usize, kv_dim: usize, head_dim: usize, seed: u64) -> Self {
        Self::typed(g, None, cap, (n_heads, kv_dim, head_dim), seed)
    }

    /// A case with a cache of `kind`; a q8_0 cache gets every row up front.
    fn typed(
        g: &Gpu,
        kind: Option<KvType>,
        cap: usize,
        (n_heads, kv_dim, head_dim): (usize, usize, usize),
        seed: u64,
    ) -> Self {
        let cache = cache_of(g, kind, cap, kv_dim, head_dim);
        let q: Vec<f32> = random_vec(cap * n_heads * head_dim, seed)
            .iter()
            .map(|x| 4.0 * x)
            .collect();
        let (k, v) = (
            random_vec(cap * kv_dim, seed + 1),
            random_vec(cap * kv_dim, seed + 2),
        );
        let preset = cache.q8();
        if preset {
            fill(g, &cache, &cache.k, &k);
            fill(g, &cache, &cache.v, &v);
        }
        Self {
            cache,
            preset,
            softcap: None,
            step: StepBuffer::new(g, Step::new(0, 1)),
            qb: storage(g, &q),
            kb: storage(g, &k),
            vb: storage(g, &v),
            ob: output(g, cap * n_heads * head_dim),
            rows: None,
        }
    }
}

/// Appends tokens `pos..pos + n` of the sequence's k / v and runs prefill attention for
/// them; returns (GPU output, twin output) for those tokens.
fn prefill_step(
    g: &Gpu,
    s: &Prefill,
    (n_heads, n_kv_heads, head_dim): (usize, usize, usize),
    window: Option<u32>,
    pos: usize,
    n: usize,
) -> (Vec<f32>, Vec<f32>) {
    let kv_dim = n_kv_heads * head_dim;
    let qd = n_heads * head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let at = |b, rows: usize, width: usize| View {
        buffer: b,
        offset: (rows * width) as u64,
    };
    // The views of a late step do not hold MAX_TOKENS rows: build for what is left.
    let max = MAX_TOKENS.min(s.cache.capacity as usize - pos);
    let tok = Tokens {
        max: max as u32,
        step: &s.step,
    };
    let kv = |b| packed(at(b, pos, kv_dim), kv_dim);
    let append =
        (!s.preset).then(|| KvAppend::new(g, kv(&s.kb), kv(&s.vb), &s.cache, tok).unwrap());
    let a = AttnSpec {
        softcap: s.softcap,
        ..spec(
            n_heads as u32,
            n_kv_heads as u32,
            head_dim as u32,
            scale,
            window,
        )
    };
    let views = (at(&s.qb, pos, qd), View::of(&s.ob));
    let attn = match s.rows {
        None => AttentionPrefill::new(g, &a, views.0, views.1, &s.cache, tok),
        Some(rows) => AttentionPrefill::with_form(g, &a, views, &s.cache, tok, (None, true), rows),
    }
    .unwrap();
    s.step.write(g, Step::new(pos as u32, n as u32));
    match &append {
        Some(append) => kernels::run(g, &[&append.dispatch, &attn.dispatch]),
        None => kernels::run(g, &[&attn.dispatch]),
    }
    let got = read(g, &s.ob, n * qd);
    let k = read_cache(g, &s.cache, &s.cache.k);
    let v = read_cache(g, &s.cache, &s.cache.v);
    let q = read(g, &s.qb, (pos + n) * qd);
    let want = attention_prefill::cpu(&a, &q[pos * qd..], &k, &v, pos);
    (got, want)
}

#[test]
fn prefill_matches_twin() {
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        let mut worst = 0f64;
        for (n_heads, n_kv_heads, head_dim) in
            [(4, 2, 64), (4, 1, 256), (4, 4, 16), (4, 2, 256), (2, 1, 18)]
        {
            for window in [None, Some(8), Some(512)] {
                for pos in [0usize, 37] {
                    for n in [1usize, 5, 17, 64] {
                        let s = Prefill::new(&g, 110, n_heads, n_kv_heads * head_dim, head_dim, 7);
                        if pos > 0 {
                            // Earlier tokens, appended (and attended) by a previous step.
                            let (got, want) = prefill_step(
                                &g,
                                &s,
                                (n_heads, n_kv_heads, head_dim),
                                window,
                                0,
                                pos,
                            );
                            assert_close("prefill before", &got, &want, BOUND);
                        }
                        let (got, want) =
                            prefill_step(&g, &s, (n_heads, n_kv_heads, head_dim), window, pos, n);
                        let case = format!(
                            "prefill {cfg:?} heads {n_heads}/{n_kv_heads} d {head_dim} window {window:?} pos {pos} n {n}"
                        );
                        assert_close(&case, &got, &want, BOUND);
                        worst = worst.max(nmse(&got, &want));
                    }
                }
            }
        }
        eprintln!("prefill {cfg:?}: worst NMSE {worst:.2e}");
    }
}

/// Both prefill forms on an adapter with subgroups of at least 8 (lavapipe picks the
/// row-per-invocation form itself; GPUs the tiled one): every head shape the row form
/// takes (head_dim a multiple of 32, GQA, MQA), windows, steps at 0 and continuing, with
/// and without soft-capping, each against the twin. Elsewhere the row form is refused
/// by name.
#[test]
fn prefill_both_forms_match_twin() {
    let g = gpu(Config::Full);
    let can = g.features.subgroups && g.info.subgroup_min_size >= 8;
    for rows in [true, false] {
        for (n_heads, n_kv_heads, head_dim) in [(4, 2, 64), (4, 1, 256), (6, 2, 128), (3, 3, 32)] {
            for (window, softcap, pos, n) in [
                (None, None, 0usize, 17usize),
                (Some(8), None, 37, 20),
                (None, Some(1.5), 37, 64),
                (Some(512), None, 0, 5),
            ] {
                let mut s = Prefill::new(&g, 110, n_heads, n_kv_heads * head_dim, head_dim, 11);
                s.softcap = softcap;
                s.rows = Some(rows);
                let shape = (n_heads, n_kv_heads, head_dim);
                let case = format!(
                    "prefill rows {rows} heads {n_heads}/{n_kv_heads} d {head_dim} window {window:?} softcap {softcap:?} pos {pos} n {n}"
                );
                if rows && !can {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        prefill_step(&g, &s, shape, window, pos, n)
                    }));
                    assert!(r.is_err(), "{case}: built without subgroups of 8");
                    continue;
                }
                if pos > 0 {
                    let (got, want) = prefill_step(&g, &s, shape, window, 0, pos);
                    assert_close(&case, &got, &want, BOUND);
                }
                let (got, want) = prefill_step(&g, &s, shape, window, pos, n);
                assert_close(&case, &got, &want, BOUND);
            }
        }
    }
}

/// Soft-capped prefill attention against the twin, with and without shader-f16 and
/// subgroups, at 0 and continuing past a window.
#[test]
fn prefill_softcap_matches_twin() {
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        for (n_heads, n_kv_heads, head_dim) in [(4, 2, 64), (2, 1, 18), (4, 1, 256)] {
            for (window, pos, n) in [(None, 0usize, 17usize), (Some(8), 37, 20)] {
                let mut s = Prefill::new(&g, 110, n_heads, n_kv_heads * head_dim, head_dim, 3);
                s.softcap = Some(1.5);
                let shape = (n_heads, n_kv_heads, head_dim);
                if pos > 0 {
                    prefill_step(&g, &s, shape, window, 0, pos);
                }
                let (got, want) = prefill_step(&g, &s, shape, window, pos, n);
                let case = format!(
                    "prefill softcap {cfg:?} heads {n_heads}/{n_kv_heads} d {head_dim} window {window:?} pos {pos} n {n}"
                );
                assert_close(&case, &got, &want, BOUND);
            }
        }
    }
}

/// Prefill attention over a q8_0 cache (written up front; the twin reads its dequantized
/// rows), with and without shader-f16 and subgroups, steps at 0 and past a window.
#[test]
fn prefill_q8_matches_twin() {
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        let mut worst = 0f64;
        for (n_heads, n_kv_heads, head_dim) in [(4, 2, 64), (4, 1, 256), (4, 4, 32), (2, 1, 96)] {
            for window in [None, Some(8)] {
                for (pos, n) in [(0usize, 17usize), (37, 64), (0, 1)] {
                    let dims = (n_heads, n_kv_heads * head_dim, head_dim);
                    let s = Prefill::typed(&g, Some(KvType::Q8_0), 110, dims, 9);
                    let (got, want) =
                        prefill_step(&g, &s, (n_heads, n_kv_heads, head_dim), window, pos, n);
                    let case = format!(
                        "prefill q8_0 {cfg:?} heads {n_heads}/{n_kv_heads} d {head_dim} window {window:?} pos {pos} n {n}"
                    );
                    assert_close(&case, &got, &want, BOUND);
                    worst = worst.max(nmse(&got, &want));
                }
            }
        }
        eprintln!("prefill q8_0 {cfg:?}: worst NMSE {worst:.2e}");
    }
}

#[test]
fn decode_after_prefill_equals_whole_prefill() {
    let (n_heads, n_kv_heads, head_dim, n) = (4usize, 1usize, 256usize, 45usize);
    let (kv_dim, qd) = (n_kv_heads * head_dim, n_heads * head_dim);
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        for window in [None, Some(8)] {
            // The whole sequence in one prefill step.
            let whole = Prefill::new(&g, 110, n_heads, kv_dim, head_dim, 21);
            let (all, _) = prefill_step(&g, &whole, (n_heads, n_kv_heads, head_dim), window, 0, n);
            // The same sequence as a prefill of n - 1 tokens, then one decode step.
            let s = Prefill::new(&g, 110, n_heads, kv_dim, head_dim, 21);
            prefill_step(&g, &s, (n_heads, n_kv_heads, head_dim), window, 0, n - 1);
            let row = |b, w: usize| View {
                buffer: b,
                offset: ((n - 1) * w) as u64,
            };
            let tok = Tokens {
                max: 1,
                step: &s.step,
            };
            let kv = |b| packed(row(b, kv_dim), kv_dim);
            let append = KvAppend::new(&g, kv(&s.kb), kv(&s.vb), &s.cache, tok).unwrap();
            let ob = output(&g, qd);
            let a = spec(
                n_heads as u32,
                n_kv_heads as u32,
                head_dim as u32,
                1.0 / (head_dim as f32).sqrt(),
                window,
            );
            let dec =
                AttentionDecode::new(&g, &a, row(&s.qb, qd), View::of(&ob), &s.cache, &s.step)
                    .unwrap();
            s.step.write(&g, Step::new(n as u32 - 1, 1));
            kernels::run(
                &g,
                &[&append.dispatch, &dec.dispatches[0], &dec.dispatches[1]],
            );
            let got = read(&g, &ob, qd);
            let case = format!("decode after prefill {cfg:?} window {window:?}");
            assert_close(&case, &got, &all[(n - 1) * qd..], BOUND);
        }
    }
}

#[test]
fn prefill_long_steps_gemma_shape() {
    // Gemma 3: 4 query heads, 1 kv head, head_dim 256, 512-token steps, local window.
    let (n_heads, n_kv_heads, head_dim) = (4usize, 1usize, 256usize);
    for (cfg, window, pos) in [(Config::Full, Some(128), 0usize), (Config::Bare, None, 88)] {
        let g = gpu(cfg);
        let s = Prefill::new(&g, 600, n_heads, n_kv_heads * head_dim, head_dim, 5);
        if pos > 0 {
            prefill_step(&g, &s, (n_heads, n_kv_heads, head_dim), window, 0, pos);
        }
        let (got, want) = prefill_step(&g, &s, (n_heads, n_kv_heads, head_dim), window, pos, 512);
        let case = format!("prefill {cfg:?} 512 tokens at {pos} window {window:?}");
        assert_close(&case, &got, &want, BOUND);
    }
}

/// One case of the fused q/k norm + RoPE + KV append.
struct RopeKvCase {
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    rope_dims: usize,
    neox: bool,
    norm: bool,
    factors: bool,
    /// YaRN's ramp and magnitude scale, and the attention temperature on q.
    yarn: bool,
}

/// The per-head norms' epsilon of the rope cases.
const ROPE_EPS: f32 = 1e-6;

/// A case's inputs besides the heads: q and k norm weights (around 1) and the frequency
/// divisors.
struct RopeWeights {
    qn: Vec<f32>,
    kn: Vec<f32>,
    factors: Vec<f32>,
}

impl RopeKvCase {
    /// The case's RoPE: with `yarn`, Mistral 3's tiny golden (factor 16 over 16 original
    /// positions, betas 8 / 0.5: a ramp over the first pairs) and an attention factor on
    /// cos and sin.
    fn rope(&self) -> RopeSpec {
        let mut rope = RopeSpec::plain(self.rope_dims as u32, 1e4, 1.0, self.neox);
        if self.yarn {
            rope.yarn = Some(YarnRamp::new(
                1.0 / 16.0,
                self.rope_dims as u32,
                1e4,
                16,
                (8.0, 0.5),
            ));
            rope.mscale = 1.277;
        }
        rope
    }

    /// The attention temperature on q (with `yarn`).
    fn q_temp(&self) -> Option<(f32, u32)> {
        self.yarn.then_some((0.1, 16))
    }

    /// Random norm weights from `seed`, and the divisors.
    fn weights(&self, seed: u64) -> RopeWeights {
        let around_one = |seed| -> Vec<f32> {
            random_vec(self.head_dim, seed)
                .iter()
                .map(|x| 1.0 + 0.3 * x)
                .collect()
        };
        RopeWeights {
            qn: around_one(seed + 3),
            kn: around_one(seed + 4),
            factors: (0..self.rope_dims / 2)
                .map(|i| 1.0 + i as f32 * 0.25)
                .collect(),
        }
    }

    /// rope_kv's twin of one head at position `p`, `w` its norm weights.
    fn twin(&self, head: &[f32], w: &[f32], factors: &[f32], p: u32) -> Vec<f32> {
        let norm = self.norm.then_some((w, ROPE_EPS));
        rope_kv::cpu(head, norm, self.rope(), p, self.factors.then_some(factors))
    }

    /// Floats per token of a joined projection's output `[q | k | v]` in the rope-attend
    /// tests: a stride wider than a token.
    fn joined_stride(&self) -> usize {
        (self.n_heads + 2 * self.n_kv_heads) * self.head_dim + 3
    }

    /// The rope_kv io of the rope-attend tests: q, k and v as rows of `joined` (from
    /// element 1, `joined_stride` apart), the rotated q into `qpacked`, the case's norms
    /// (`qn`, `kn`) and divisors (`fb`) where it has them.
    fn joined_io<'a>(
        &self,
        joined: &'a wgpu::Buffer,
        qpacked: &'a wgpu::Buffer,
        [qn, kn, fb]: [&'a wgpu::Buffer; 3],
    ) -> RopeKvIo<'a> {
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let rows = |offset: usize, n: usize| Rows {
            view: View {
                buffer: joined,
                offset: offset as u64,
            },
            width: hd as u32,
            rows: n as u32,
            stride: self.joined_stride() as u32,
        };
        RopeKvIo {
            q: rows(1, nh),
            q_out: Some(Rows::heads(qpacked, nh as u32, hd as u32)),
            k: rows(1 + nh * hd, nkv),
            v: rows(1 + (nh + nkv) * hd, nkv),
            norms: self.norm.then_some(([qn, kn], ROPE_EPS)),
            freq_factors: self.factors.then_some(fb),
            q_temp: self.q_temp(),
        }
    }
}

/// The rope-attend tests' cases: Gemma 3 (NeoX, q/k norms, 4:1), SmolLM2 (adjacent
/// pairs, 3:1), Llama 3.1's factors over partial rotary dims and an awkward head width,
/// NeoX with factors, YaRN with the temperature, all of them with norms; a group of 12
/// (no fold).
fn rope_attend_cases() -> [RopeKvCase; 7] {
    let case = |n_heads, n_kv_heads, head_dim, rope_dims, neox, norm, factors, yarn| RopeKvCase {
        n_heads,
        n_kv_heads,
        head_dim,
        rope_dims,
        neox,
        norm,
        factors,
        yarn,
    };
    [
        case(4, 1, 256, 256, true, true, false, false),
        case(9, 3, 64, 64, false, false, false, false),
        case(6, 2, 40, 24, false, true, true, false),
        case(2, 2, 96, 64, true, false, true, false),
        case(4, 2, 64, 64, false, false, false, true),
        case(2, 1, 32, 32, true, true, true, true),
        case(12, 1, 18, 18, false, false, false, false),
    ]
}

/// `RopeKv` against its twin (RMSNorm then RoPE per head, in f64) on random q, k and v
/// with offsets and token strides wider than a token, built for more tokens than the
/// step runs, at a position past 0: q rotated in place (rows past the step untouched),
/// the cache rows of the step holding rotated keys and the values, every other row
/// untouched. `out`: q, k and v are rows of one buffer (a joined projection's output,
/// `[q | k | v]` per token), left unchanged, and the rotated q goes to its own strided
/// buffer (`RopeKvIo::q_out`).
fn check_rope_kv(
    cfg: Config,
    kind: Option<KvType>,
    c: &RopeKvCase,
    (pos, built, run): (u32, usize, usize),
    seed: u64,
    out: bool,
) {
    let g = gpu(cfg);
    let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    let cap = pos as usize + built + 2;
    let cache = cache_of(&g, kind, cap, kvd, c.head_dim);
    let sentinel = -7.0f32;
    let sentinels = fill(&g, &cache, &cache.k, &vec![sentinel; cap * kvd]);
    fill(&g, &cache, &cache.v, &vec![sentinel; cap * kvd]);
    // Separate buffers: own offsets and strides; joined: one stride, k after q, v after k.
    let (qs, kvs, qo, ko, vo) = match out {
        false => (qd + 5, kvd + 3, 2usize, 1usize, 3usize),
        true => (qd + 2 * kvd + 3, qd + 2 * kvd + 3, 1, 1 + qd, 1 + qd + kvd),
    };
    let q = random_vec(qo + built * qs, seed);
    let k = random_vec(ko + built * kvs, seed + 1);
    let v = random_vec(vo + built * kvs, seed + 2);
    // Joined: every token's [q | k | v] in one buffer.
    let joined: Vec<f32> = (0..q.len() * out as usize)
        .map(|i| match (i.saturating_sub(1) % qs, i >= 1) {
            (j, true) if j >= qd + kvd => v[i],
            (j, true) if j >= qd => k[i],
            _ => q[i],
        })
        .collect();
    let (qb, kb, vb) = match out {
        false => (storage(&g, &q), storage(&g, &k), storage(&g, &v)),
        true => {
            let b = storage(&g, &joined);
            (b.clone(), b.clone(), b)
        }
    };
    let (oo, os) = (3usize, qd + 1);
    let q_out = vec![sentinel; oo + built * os];
    let ob = storage(&g, &q_out);
    let RopeWeights { qn, kn, factors } = c.weights(seed);
    let (qnb, knb) = (storage(&g, &qn), storage(&g, &kn));
    let fb = storage(&g, &factors);
    let rows = |buffer, offset: usize, n: usize, stride: usize| Rows {
        view: View {
            buffer,
            offset: offset as u64,
        },
        width: c.head_dim as u32,
        rows: n as u32,
        stride: stride as u32,
    };
    let heads = spec(
        c.n_heads as u32,
        c.n_kv_heads as u32,
        c.head_dim as u32,
        1.0,
        None,
    );
    let (rope, q_temp) = (c.rope(), c.q_temp());
    let io = RopeKvIo {
        q: rows(&qb, qo, c.n_heads, qs),
        q_out: out.then(|| rows(&ob, oo, c.n_heads, os)),
        k: rows(&kb, ko, c.n_kv_heads, kvs),
        v: rows(&vb, vo, c.n_kv_heads, kvs),
        norms: c.norm.then_some(([&qnb, &knb], ROPE_EPS)),
        freq_factors: c.factors.then_some(&fb),
        q_temp,
    };
    let step = StepBuffer::new(&g, Step::new(0, 1));
    let tok = Tokens {
        max: built as u32,
        step: &step,
    };
    let op = RopeKv::new(&g, &heads, rope, io, &cache, tok).unwrap();
    step.write(&g, Step::new(pos, run as u32));
    kernels::run(&g, &op.dispatches.iter().collect::<Vec<_>>());

    let twin = |head: &[f32], w: &[f32], p: u32| c.twin(head, w, &factors, p);
    let mut want_q = q.clone();
    let mut want_out = q_out.clone();
    let mut want_k = sentinels.clone();
    let mut want_v = sentinels.clone();
    for t in 0..run {
        let p = pos + t as u32;
        for h in 0..c.n_heads {
            let s = qo + t * qs + h * c.head_dim;
            let r = twin(&q[s..s + c.head_dim], &qn, p);
            let f = rope_kv::q_temp_factor(q_temp, p);
            let d = match out {
                false => &mut want_q[s..s + c.head_dim],
                true => &mut want_out[oo + t * os + h * c.head_dim..][..c.head_dim],
            };
            for (w, x) in d.iter_mut().zip(&r) {
                *w = (*x as f64 * f) as f32;
            }
        }
        let row = p as usize * kvd..(p as usize + 1) * kvd;
        for h in 0..c.n_kv_heads {
            let s = ko + t * kvs + h * c.head_dim;
            let d = p as usize * kvd + h * c.head_dim;
            let r = twin(&k[s..s + c.head_dim], &kn, p);
            want_k[d..d + c.head_dim].copy_from_slice(&r);
            let vs = vo + t * kvs + h * c.head_dim;
            want_v[d..d + c.head_dim].copy_from_slice(&v[vs..vs + c.head_dim]);
        }
        // As the cache stores them: f16-rounded or q8_0-quantized.
        cache.kind.round(&mut want_k[row.clone()]);
        cache.kind.round(&mut want_v[row]);
    }
    let case = format!(
        "rope_kv {}/{} heads of {} dims {} neox {} norm {} factors {} yarn {} pos {pos} built {built} run {run} out {out} {cfg:?} {}",
        c.n_heads, c.n_kv_heads, c.head_dim, c.rope_dims, c.neox, c.norm, c.factors, c.yarn, cache.kind
    );
    match out {
        false => assert_close(
            &format!("{case} q"),
            &read(&g, &qb, q.len()),
            &want_q,
            1e-10,
        ),
        true => {
            // The joined input untouched, the rotated q in q_out.
            let got = read(&g, &qb, joined.len());
            assert_eq!(got, joined, "{case}: the joined q, k, v changed");
            assert_close(
                &format!("{case} q_out"),
                &read(&g, &ob, q_out.len()),
                &want_out,
                1e-10,
            );
        }
    }
    // The GPU rotates in f32: a key may land across an f16 rounding (or, in q8_0, a
    // quantization) step from the f64 twin's; values are copied exactly, except that q8_0
    // divides by the scale on the GPU (a quotient within ulps may round a value the
    // other way).
    let (k_bound, v_bound) = match cache.kind {
        KvType::F32 => (1e-10, 0.0),
        KvType::F16 => (1e-6, 0.0),
        KvType::Q8_0 => (1e-5, 1e-5),
    };
    let got_k = read_cache(&g, &cache, &cache.k);
    let got_v = read_cache(&g, &cache, &cache.v);
    assert_close(&format!("{case} K"), &got_k, &want_k, k_bound);
    assert_close(&format!("{case} V"), &got_v, &want_v, v_bound);
}

#[test]
fn rope_kv_matches_its_twin() {
    let cases = [
        // Gemma 3: 4 query heads on 1 KV head of 256, NeoX, q/k norms.
        RopeKvCase {
            n_heads: 4,
            n_kv_heads: 1,
            head_dim: 256,
            rope_dims: 256,
            neox: true,
            norm: true,
            factors: false,
            yarn: false,
        },
        // SmolLM2-like: adjacent pairs, no norms, GQA 3:1.
        RopeKvCase {
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            rope_dims: 64,
            neox: false,
            norm: false,
            factors: false,
            yarn: false,
        },
        // Llama 3.1 frequency factors, partial rotary dims, an awkward head width.
        RopeKvCase {
            n_heads: 6,
            n_kv_heads: 2,
            head_dim: 40,
            rope_dims: 24,
            neox: false,
            norm: true,
            factors: true,
            yarn: false,
        },
        RopeKvCase {
            n_heads: 2,
            n_kv_heads: 2,
            head_dim: 96,
            rope_dims: 64,
            neox: true,
            norm: false,
            factors: true,
            yarn: false,
        },
        // Mistral 3: YaRN with its magnitude scale, the attention temperature on q;
        // and YaRN over frequency factors with q/k norms (positions past 16 and 4000
        // take the temperature's steps).
        RopeKvCase {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 64,
            rope_dims: 64,
            neox: false,
            norm: false,
            factors: false,
            yarn: true,
        },
        RopeKvCase {
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 32,
            rope_dims: 32,
            neox: true,
            norm: true,
            factors: true,
            yarn: true,
        },
    ];
    // Both workgroups (one per token and head): a CPU adapter's 8 lanes and 64.
    for (cfg, cpu) in [Config::Full, Config::Bare]
        .into_iter()
        .flat_map(|c| [(c, false), (c, true)])
    {
        for (i, c) in cases.iter().enumerate() {
            // q8_0 takes whole blocks of 32: the first, second and fourth cases.
            let q8 = c.head_dim.is_multiple_of(32).then_some(Some(KvType::Q8_0));
            for kind in std::iter::once(None).chain(q8) {
                hearth::kernels::with_cpu_rows(cpu, || {
                    check_rope_kv(cfg, kind, c, (0, 1, 1), 10 + i as u64, false);
                    check_rope_kv(cfg, kind, c, (37, 5, 3), 20 + i as u64, false);
                    check_rope_kv(cfg, kind, c, (37, 5, 3), 25 + i as u64, true);
                    check_rope_kv(cfg, kind, c, (4000, 4, 4), 30 + i as u64, false);
                });
            }
        }
    }
}

/// Decode attention joined with its preparation (`AttentionDecode::with_rope`): from one
/// token's `[q | k | v]` rows (a joined projection's output, a stride wider than a token)
/// over a cache of random earlier rows, at short contexts (where a CPU rasterizer's
/// one-split pass folds rope_kv in, `ROPE`) and past the fold (rope_kv, pass 1 and the
/// combine): the cache's new K row against rope_kv's twin (its bounds), the V row exact,
/// every other row untouched, and the output against the attention twin over the cache
/// as stored with q from the rope twin (times the temperature); with and without sinks.
fn check_rope_attend(cfg: Config, kind: Option<KvType>, c: &RopeKvCase, seed: u64, sinks: bool) {
    let g = gpu(cfg);
    let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
    let (qd, kvd) = (nh * hd, nkv * hd);
    let stride = c.joined_stride();
    let cap = 300usize;
    let RopeWeights { qn, kn, factors } = c.weights(seed);
    let (qnb, knb) = (storage(&g, &qn), storage(&g, &kn));
    let fb = storage(&g, &factors);
    let sink_vals: Vec<f32> = (0..nh).map(|h| [-3.0f32, 0.5, 2.0][h % 3]).collect();
    let sb = storage(&g, &sink_vals);
    let (rope, q_temp) = (c.rope(), c.q_temp());
    let a = AttnSpec {
        softcap: None,
        ..spec(
            nh as u32,
            nkv as u32,
            hd as u32,
            1.0 / (hd as f32).sqrt(),
            None,
        )
    };
    let twin = |head: &[f32], w: &[f32], p: u32| c.twin(head, w, &factors, p);
    // The adapter's pass 1 form and, with subgroups, the same in workgroups of 64 (its
    // subgroups share the folded cache write through a barrier).
    let mut forms = vec![attention_decode::sgkey(&g)];
    if let Some(k) = forms[0] {
        forms.push(Some(attention_decode::SgKey { workgroup: 64, ..k }));
        forms.dedup();
    }
    // Positions 0, a few and 200 fold (at most 256 attended); 280 takes the long form.
    for (i, (pos, form)) in [0u32, 6, 200, 280]
        .into_iter()
        .flat_map(|p| forms.iter().map(move |f| (p, *f)))
        .enumerate()
    {
        let cache = cache_of(&g, kind, cap, kvd, hd);
        let s = seed * 10 + i as u64;
        let before_k = fill(&g, &cache, &cache.k, &random_vec(cap * kvd, s));
        let before_v = fill(&g, &cache, &cache.v, &random_vec(cap * kvd, s + 1));
        let joined: Vec<f32> = random_vec(1 + stride, s + 2)
            .iter()
            .map(|x| 2.0 * x)
            .collect();
        let jb = storage(&g, &joined);
        let qpacked = output(&g, qd);
        let ob = output(&g, qd + 2);
        let step = StepBuffer::new(&g, Step::new(pos, 1));
        let one = Tokens {
            max: 1,
            step: &step,
        };
        let out = View {
            buffer: &ob,
            offset: 2,
        };
        let sinks = sinks.then_some(&sb);
        let io2 = (View::of(&qpacked), out);
        let attn = AttentionDecode::with_form(&g, &a, io2, &cache, one, (sinks, form)).unwrap();
        let io = c.joined_io(&jb, &qpacked, [&qnb, &knb, &fb]);
        let op = attn
            .with_rope(&g, (&a, rope), io, out, (&cache, one), sinks)
            .unwrap();
        let kv_len = pos + 1;
        // The fold is this adapter's where it takes the in-order combine and f16 or f32.
        let folds = form.is_some_and(|k| k.splits <= attention_decode::SEQ_SPLITS)
            && (nh / nkv) <= 8
            && cache.kind != KvType::Q8_0
            && kv_len <= attention_decode::FINAL_MAX;
        assert_eq!(op.folds(kv_len), folds, "cfg {cfg:?} pos {pos}");
        use hearth::kernels::Op;
        kernels::run(&g, &op.dispatches_at(kv_len).iter().collect::<Vec<_>>());
        let case = format!(
            "rope_attend {nh}/{nkv} heads of {hd} dims {} neox {} norm {} factors {} yarn {} pos {pos} form {form:?} sinks {sinks:?} folds {folds} {cfg:?} {}",
            c.rope_dims, c.neox, c.norm, c.factors, c.yarn, cache.kind
        );
        // The cache: the new row from the twin, every other row as filled.
        let (mut want_k, mut want_v) = (before_k.clone(), before_v.clone());
        let row = pos as usize * kvd..(pos as usize + 1) * kvd;
        for h in 0..nkv {
            let ks = 1 + qd + h * hd;
            let r = twin(&joined[ks..ks + hd], &kn, pos);
            want_k[row.start + h * hd..][..hd].copy_from_slice(&r);
            let vs = 1 + qd + kvd + h * hd;
            want_v[row.start + h * hd..][..hd].copy_from_slice(&joined[vs..vs + hd]);
        }
        cache.kind.round(&mut want_k[row.clone()]);
        cache.kind.round(&mut want_v[row]);
        let got_k = read_cache(&g, &cache, &cache.k);
        let got_v = read_cache(&g, &cache, &cache.v);
        // rope_kv's bounds (see check_rope_kv).
        let (k_bound, v_bound) = match cache.kind {
            KvType::F32 => (1e-10, 0.0),
            KvType::F16 => (1e-6, 0.0),
            KvType::Q8_0 => (1e-5, 1e-5),
        };
        assert_close(&format!("{case} K"), &got_k, &want_k, k_bound);
        assert_close(&format!("{case} V"), &got_v, &want_v, v_bound);
        // The output over the cache as stored, q from the twin.
        let f = rope_kv::q_temp_factor(q_temp, pos);
        let q: Vec<f32> = (0..nh)
            .flat_map(|h| twin(&joined[1 + h * hd..1 + (h + 1) * hd], &qn, pos))
            .map(|x| (x as f64 * f) as f32)
            .collect();
        let want = attention_decode::cpu_sinks(
            &a,
            &q,
            (&got_k, &got_v),
            kv_len as usize,
            sinks.map(|_| &sink_vals[..]),
        );
        let got = read(&g, &ob, qd + 2);
        assert_close(&case, &got[2..], &want, BOUND);
    }
}

#[test]
fn rope_attend_matches_its_twins() {
    let cases = rope_attend_cases();
    for cfg in [Config::Full, Config::Bare] {
        for (i, c) in cases.iter().enumerate() {
            check_rope_attend(cfg, None, c, 50 + i as u64, false);
        }
        check_rope_attend(cfg, Some(KvType::F32), &cases[0], 70, true);
        check_rope_attend(cfg, None, &cases[1], 71, true);
        // q8_0 caches keep rope_kv (the fold writes f32 and f16 only).
        check_rope_attend(cfg, Some(KvType::Q8_0), &cases[1], 72, false);
    }
}

/// Decode attention joined with its preparation in a batched step (`with_rope` built for
/// several tokens): rows at their own positions in their own slots of a multi-slot cache,
/// from a joined projection's rows (one per token, a stride wider). Rows apart (each its
/// sequence's only token) fold into one pass at short contexts; the same step taken as not
/// apart runs rope_kv and the single pass, and past the fold rope_kv, pass 1 and the
/// combine. Every form against the twins: each row's new K row (rope_kv's bounds) and V
/// row (exact) in its slot, every other cache row untouched, each row's output against
/// the attention twin over its slot as stored, rows past the step unwritten.
fn check_rope_attend_rows(cfg: Config, c: &RopeKvCase, seed: u64) {
    let g = gpu(cfg);
    let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
    let (qd, kvd) = (nh * hd, nkv * hd);
    let stride = c.joined_stride();
    let (slots, cap, built) = (3usize, 300usize, 4usize);
    let RopeWeights { qn, kn, factors } = c.weights(seed);
    let (qnb, knb) = (storage(&g, &qn), storage(&g, &kn));
    let fb = storage(&g, &factors);
    let (rope, q_temp) = (c.rope(), c.q_temp());
    let a = spec(
        nh as u32,
        nkv as u32,
        hd as u32,
        1.0 / (hd as f32).sqrt(),
        None,
    );
    let twin = |head: &[f32], w: &[f32], p: u32| c.twin(head, w, &factors, p);
    let kind = KvType::default_for(g.features.shader_f16);
    let cache = KvCache::typed(
        &g,
        kind,
        (slots * cap) as u64,
        cap as u32,
        (kvd as u32, hd as u32),
    )
    .unwrap();
    let read_all = |buf: &wgpu::Buffer| {
        let words = read(
            &g,
            buf,
            (slots as u64 * cap as u64 * cache.row_bytes()).div_ceil(4) as usize,
        );
        kind.decode(bytemuck::cast_slice(&words), slots * cap, kvd, hd)
    };
    let joined: Vec<f32> = random_vec(1 + built * stride, seed + 3)
        .iter()
        .map(|x| 2.0 * x)
        .collect();
    let jb = storage(&g, &joined);
    let qpacked = output(&g, built * qd);
    let ob = output(&g, built * qd + 2);
    let step = StepBuffer::new(&g, Step::new(0, 1));
    let tok = Tokens {
        max: built as u32,
        step: &step,
    };
    let out = View {
        buffer: &ob,
        offset: 2,
    };
    let io = c.joined_io(&jb, &qpacked, [&qnb, &knb, &fb]);
    let form = attention_decode::sgkey(&g);
    let attn =
        AttentionDecode::with_form(&g, &a, (View::of(&qpacked), out), &cache, tok, (None, form))
            .unwrap();
    let op = attn
        .with_rope(&g, (&a, rope), io, out, (&cache, tok), None)
        .unwrap();
    use hearth::kernels::Op;
    // (slot, position): three sequences' next tokens; then one past the fold.
    let steps: [&[(u32, u32)]; 2] = [&[(2, 6), (0, 200), (1, 0)], &[(1, 3), (0, 280)]];
    for (i, step_rows) in steps.iter().enumerate() {
        let kv_len = step_rows.iter().map(|r| r.1 + 1).max().unwrap();
        let n = step_rows.len();
        step.write(&g, Step::batch(step_rows));
        let folds = form.is_some_and(|k| k.splits <= attention_decode::SEQ_SPLITS)
            && (nh / nkv) <= 8
            && kv_len <= attention_decode::FINAL_MAX;
        assert_eq!(op.folds(kv_len), folds, "cfg {cfg:?} step {i}");
        for apart in [true, false] {
            let d = op.dispatches_batch(n as u32, kv_len, apart);
            let case = format!(
                "rope_attend rows {nh}/{nkv} heads of {hd} neox {} norm {} factors {} yarn {} step {i} apart {apart} folds {folds} {cfg:?}",
                c.neox, c.norm, c.factors, c.yarn
            );
            // One dispatch exactly where the rows are apart and the step folds.
            assert_eq!(
                d.len() == 1,
                apart && folds,
                "{case}: {} dispatches",
                d.len()
            );
            let s = seed * 10 + 2 * i as u64 + apart as u64;
            let before_k = fill(&g, &cache, &cache.k, &random_vec(slots * cap * kvd, s));
            let before_v = fill(&g, &cache, &cache.v, &random_vec(slots * cap * kvd, s + 1));
            g.queue.write_buffer(
                &ob,
                0,
                bytemuck::cast_slice(&vec![f32::NAN; built * qd + 2]),
            );
            kernels::run(&g, &d.iter().collect::<Vec<_>>());
            let (mut want_k, mut want_v) = (before_k, before_v);
            for (t, &(slot, pos)) in step_rows.iter().enumerate() {
                let row = (slot as usize * cap + pos as usize) * kvd;
                let src = 1 + t * stride;
                for h in 0..nkv {
                    let ks = src + qd + h * hd;
                    let r = twin(&joined[ks..ks + hd], &kn, pos);
                    want_k[row + h * hd..][..hd].copy_from_slice(&r);
                    let vs = src + qd + kvd + h * hd;
                    want_v[row + h * hd..][..hd].copy_from_slice(&joined[vs..vs + hd]);
                }
                kind.round(&mut want_k[row..row + kvd]);
                kind.round(&mut want_v[row..row + kvd]);
            }
            let (got_k, got_v) = (read_all(&cache.k), read_all(&cache.v));
            let k_bound = if kind == KvType::F32 { 1e-10 } else { 1e-6 };
            assert_close(&format!("{case} K"), &got_k, &want_k, k_bound);
            assert_close(&format!("{case} V"), &got_v, &want_v, 0.0);
            let got = read(&g, &ob, built * qd + 2);
            for (t, &(slot, pos)) in step_rows.iter().enumerate() {
                let f = rope_kv::q_temp_factor(q_temp, pos);
                let src = 1 + t * stride;
                let q: Vec<f32> = (0..nh)
                    .flat_map(|h| twin(&joined[src + h * hd..src + (h + 1) * hd], &qn, pos))
                    .map(|x| (x as f64 * f) as f32)
                    .collect();
                let span = slot as usize * cap * kvd..(slot as usize + 1) * cap * kvd;
                let want = attention_decode::cpu_sinks(
                    &a,
                    &q,
                    (&got_k[span.clone()], &got_v[span]),
                    pos as usize + 1,
                    None,
                );
                let o = 2 + t * qd;
                assert_close(&format!("{case} row {t}"), &got[o..o + qd], &want, BOUND);
            }
            assert!(
                got[2 + n * qd..].iter().all(|x| x.is_nan()),
                "{case}: wrote past the step's rows"
            );
        }
    }
}

#[test]
fn rope_attend_rows_fold_where_apart() {
    for cfg in [Config::Full, Config::Bare] {
        for (i, c) in rope_attend_cases().iter().enumerate() {
            check_rope_attend_rows(cfg, c, 80 + i as u64);
        }
    }
}

/// Decode attention over several tokens per step (a batched step): each row attends its
/// own slot of a multi-slot cache up to its own position, in both forms, against the twin
/// on that slot's rows; rows past the step stay untouched, and a slot mix-up fails.
#[test]
fn decode_rows_attend_their_own_slots() {
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        let (slots, cap, n_heads, n_kv_heads, head_dim) = (3usize, 300usize, 4, 2, 64);
        let kv_dim = n_kv_heads * head_dim;
        let cache = KvCache::with_slots(&g, slots as u32, cap as u32, kv_dim as u32).unwrap();
        let k = fill(&g, &cache, &cache.k, &random_vec(slots * cap * kv_dim, 91));
        let v = fill(&g, &cache, &cache.v, &random_vec(slots * cap * kv_dim, 92));
        let built = 5usize;
        let width = n_heads * head_dim;
        let q: Vec<f32> = random_vec(built * width, 93)
            .iter()
            .map(|x| 3.0 * x)
            .collect();
        let qb = storage(&g, &q);
        let ob = output(&g, built * width);
        let step = StepBuffer::new(&g, Step::new(0, 1));
        for window in [None, Some(40)] {
            let a = spec(
                n_heads as u32,
                n_kv_heads as u32,
                head_dim as u32,
                0.125,
                window,
            );
            let tok = Tokens {
                max: built as u32,
                step: &step,
            };
            let op =
                AttentionDecode::rows(&g, &a, View::of(&qb), View::of(&ob), &cache, tok).unwrap();
            // (slot, position): two rows of slot 1 (a short prompt's tokens), one long row
            // past the single-pass limit.
            let rows = [(2u32, 0u32), (0, 270), (1, 5), (1, 6)];
            step.write(&g, Step::batch(&rows));
            for (form, d) in [("split", &op.dispatches), ("single", &op.single)] {
                g.queue
                    .write_buffer(&ob, 0, bytemuck::cast_slice(&vec![f32::NAN; built * width]));
                kernels::run(&g, &d.iter().collect::<Vec<_>>());
                let got = read(&g, &ob, built * width);
                for (t, &(slot, pos)) in rows.iter().enumerate() {
                    let base = slot as usize * cap * kv_dim;
                    let (ks, vs) = (&k[base..base + cap * kv_dim], &v[base..base + cap * kv_dim]);
                    let qt = &q[t * width..(t + 1) * width];
                    let want = attention_decode::cpu(&a, qt, ks, vs, pos as usize + 1);
                    let case = format!(
                        "decode rows {form} {cfg:?} {window:?} row {t} slot {slot} pos {pos}"
                    );
                    assert_close(&case, &got[t * width..(t + 1) * width], &want, BOUND);
                    // Another slot's keys give another answer: the check can fail.
                    let other = ((slot as usize + 1) % slots) * cap * kv_dim;
                    let wrong = attention_decode::cpu(
                        &a,
                        qt,
                        &k[other..other + cap * kv_dim],
                        &v[other..other + cap * kv_dim],
                        pos as usize + 1,
                    );
                    assert!(
                        nmse(&wrong, &want) > 1e-3,
                        "{case}: slots too alike to tell"
                    );
                }
                assert!(
                    got[rows.len() * width..].iter().all(|x| x.is_nan()),
                    "{form}: wrote past the step's rows"
                );
            }
        }
    }
}

/// Decode attention through page tables: each slot's positions live in pool pages
/// scattered by a shuffled table (the paged KV cache), in both forms, against the twin
/// on the slot's rows gathered through the same table; an unshuffled read fails.
#[test]
fn decode_rows_read_through_page_tables() {
    for cfg in [Config::Full, Config::Bare] {
        let g = gpu(cfg);
        let (slots, cap, n_heads, n_kv_heads, head_dim) = (3usize, 300usize, 4, 2, 64);
        let (shift, per_slot) = hearth::graph::KvPages::geometry(slots, cap, 8192);
        let page = 1usize << shift;
        let pool = slots * per_slot;
        let kv_dim = n_kv_heads * head_dim;
        let rows_total = pool * page;
        let cache = KvCache::paged(&g, rows_total as u64, cap as u32, kv_dim as u32).unwrap();
        let k = fill(&g, &cache, &cache.k, &random_vec(rows_total * kv_dim, 94));
        let v = fill(&g, &cache, &cache.v, &random_vec(rows_total * kv_dim, 95));
        // A fixed shuffle of the pool pages over the slots' tables.
        let table: Vec<u32> = (0..pool as u32)
            .map(|i| (i * 17 + 5) % pool as u32)
            .collect();
        let mut step = StepBuffer::new(&g, Step::new(0, 1));
        step.paging = (shift, per_slot as u32);
        step.write_pages(&g, 0, &table);
        let gather = |src: &[f32], slot: usize| -> Vec<f32> {
            (0..cap)
                .flat_map(|p| {
                    let row = table[slot * per_slot + p / page] as usize * page + p % page;
                    src[row * kv_dim..(row + 1) * kv_dim].to_vec()
                })
                .collect()
        };
        let built = 4usize;
        let width = n_heads * head_dim;
        let q: Vec<f32> = random_vec(built * width, 96)
            .iter()
            .map(|x| 3.0 * x)
            .collect();
        let qb = storage(&g, &q);
        let ob = output(&g, built * width);
        let a = spec(
            n_heads as u32,
            n_kv_heads as u32,
            head_dim as u32,
            0.125,
            None,
        );
        let tok = Tokens {
            max: built as u32,
            step: &step,
        };
        let op = AttentionDecode::rows(&g, &a, View::of(&qb), View::of(&ob), &cache, tok).unwrap();
        let rows = [(2u32, 17u32), (0, 270), (1, 299), (1, 3)];
        step.write(&g, Step::batch(&rows));
        for (form, d) in [("split", &op.dispatches), ("single", &op.single)] {
            kernels::run(&g, &d.iter().collect::<Vec<_>>());
            let got = read(&g, &ob, built * width);
            for (t, &(slot, pos)) in rows.iter().enumerate() {
                let (ks, vs) = (gather(&k, slot as usize), gather(&v, slot as usize));
                let qt = &q[t * width..(t + 1) * width];
                let want = attention_decode::cpu(&a, qt, &ks, &vs, pos as usize + 1);
                let case = format!("paged decode {form} {cfg:?} row {t} slot {slot} pos {pos}");
                assert_close(&case, &got[t * width..(t + 1) * width], &want, BOUND);
                // Reading the pool in order instead gives another answer.
                let base = slot as usize * per_slot * page * kv_dim;
                let flat = |src: &[f32]| src[base..base + cap * kv_dim].to_vec();
                let wrong = attention_decode::cpu(&a, qt, &flat(&k), &flat(&v), pos as usize + 1);
                assert!(nmse(&wrong, &want) > 1e-3, "{case}: table too tame to tell");
            }
        }
    }
}

/// Attention sinks (gpt-oss: a per-head logit that joins the softmax's denominator with
/// no value): decode in both forms and prefill against their twins, with sinks from far
/// below the scores to far above them, GQA, a window, with and without shader-f16 and
/// subgroups.
#[test]
fn sinks_match_twin() {
    // 128 dims: the row form's two rows per invocation (`R2`) on CPU adapters.
    for (cfg, head_dim) in [
        (Config::Full, 64usize),
        (Config::Bare, 64),
        (Config::Full, 128),
    ] {
        let g = gpu(cfg);
        let (n_heads, n_kv_heads, cap) = (4usize, 2usize, 600usize);
        let kv_dim = n_kv_heads * head_dim;
        let cache = cache_of(&g, None, cap, kv_dim, head_dim);
        let k = fill(&g, &cache, &cache.k, &random_vec(cap * kv_dim, 1));
        let v = fill(&g, &cache, &cache.v, &random_vec(cap * kv_dim, 2));
        let sinks = [-30.0f32, 0.0, 2.5, 40.0];
        let sb = storage(&g, &sinks);
        for window in [None, Some(8)] {
            let a = spec(
                n_heads as u32,
                n_kv_heads as u32,
                head_dim as u32,
                0.125,
                window,
            );
            // Decode: one query, both forms, short and long contexts.
            let q = random_vec(n_heads * head_dim, 3);
            let qb = storage(&g, &q);
            let ob = output(&g, n_heads * head_dim);
            let step = StepBuffer::new(&g, Step::new(0, 1));
            let tok = Tokens {
                max: 1,
                step: &step,
            };
            let views = (View::of(&qb), View::of(&ob));
            let op = AttentionDecode::with_sinks(&g, &a, views, &cache, tok, Some(&sb)).unwrap();
            for kv_len in [1usize, 40, 300, 600] {
                step.write(&g, Step::new(kv_len as u32 - 1, 1));
                let want = attention_decode::cpu_sinks(&a, &q, (&k, &v), kv_len, Some(&sinks));
                for (form, d) in [("split", &op.dispatches), ("single", &op.single)] {
                    kernels::run(&g, &output_reset(&g, &ob, d));
                    let got = read(&g, &ob, n_heads * head_dim);
                    let case = format!(
                        "sinks decode {form} {cfg:?} d {head_dim} window {window:?} kv_len {kv_len}"
                    );
                    assert_close(&case, &got, &want, BOUND);
                }
            }
            // Prefill: 20 tokens at position 30 over the whole cache.
            let (pos, n) = (30usize, 20usize);
            let q = random_vec(n * n_heads * head_dim, 4);
            let qb = storage(&g, &q);
            let ob = output(&g, n * n_heads * head_dim);
            let step = StepBuffer::new(&g, Step::new(pos as u32, n as u32));
            let tok = Tokens {
                max: n as u32,
                step: &step,
            };
            let views = (View::of(&qb), View::of(&ob));
            let op = AttentionPrefill::with_sinks(&g, &a, views, &cache, tok, Some(&sb)).unwrap();
            kernels::run(&g, &[&op.dispatch]);
            let got = read(&g, &ob, n * n_heads * head_dim);
            let want = attention_prefill::cpu_sinks(&a, &q, (&k, &v), pos, Some(&sinks));
            let case = format!("sinks prefill {cfg:?} d {head_dim} window {window:?}");
            assert_close(&case, &got, &want, BOUND);
        }
    }
}
