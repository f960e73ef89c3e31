//! Appends a step's keys and values to the KV cache, converting to f16 when the cache is
//! f16. Shader: `kv_append.wgsl`.

use super::{
    build_dispatch, check_rows, to_u32, Dispatch, KvCache, Rows, Tokens, Work, STEP_BINDING,
};
use crate::gpu::{Gpu, GpuError, PipelineKey, ShaderVariant};

/// Workgroup size of the append kernel.
pub const WORKGROUP: u32 = 64;

params! {
    @binding(3)
    pub(crate) struct Params {
        k_offset: u32,
        v_offset: u32,
        token_stride: u32,
        kv_dim: u32,
        capacity: u32,
        max_tokens: u32,
        _pad: [u32; 2],
    }
}

fn key(f16: bool) -> PipelineKey {
    PipelineKey {
        op: "kv_append",
        variant: ShaderVariant {
            f16,
            ..ShaderVariant::new(WORKGROUP)
        },
    }
}

/// The append kernel's variants (f32 and f16 cache).
pub fn variants() -> Vec<PipelineKey> {
    vec![key(false), key(true)]
}

/// `cache[step.pos + t, :] = x[t, 0..kv_dim]` for K and V and every `t < step.n_tokens`
/// (up to `max_tokens`, the size it is built for); rows at or past the capacity are skipped.
pub struct KvAppend {
    /// The single dispatch.
    pub dispatch: Dispatch,
}

impl KvAppend {
    /// Builds the dispatch; `k` and `v` hold `kv_dim` elements per token (as rows of any
    /// width), their token strides equal (so K and V may sit inside a fused QKV activation).
    pub fn new(
        gpu: &Gpu,
        k: Rows,
        v: Rows,
        cache: &KvCache,
        tok: Tokens,
    ) -> Result<Self, GpuError> {
        if cache.q8() {
            return Err(GpuError::Runtime(
                "kv_append writes f32 and f16 caches; a q8_0 cache is written by rope_kv".into(),
            ));
        }
        let (token_stride, max_tokens) = (k.stride, tok.max);
        check_rows("kv_append", tok.max)?;
        let kv_dim = cache.kv_dim as u64;
        if max_tokens == 0
            || token_stride == 0
            || v.stride != token_stride
            || k.per_token() != kv_dim
            || v.per_token() != kv_dim
        {
            return Err(GpuError::Runtime(format!(
                "kv_append: {max_tokens} tokens of {} keys and {} values, token strides {} and {} (needs kv_dim {} each and one stride)",
                k.per_token(),
                v.per_token(),
                token_stride,
                v.stride,
                cache.kv_dim
            )));
        }
        if max_tokens > gpu.limits.max_compute_workgroups_per_dimension {
            return Err(GpuError::Runtime(format!(
                "kv_append: {max_tokens} tokens exceed the dispatch limit"
            )));
        }
        let k_offset = k.check("kv_append keys", max_tokens)?;
        let v_offset = v.check("kv_append values", max_tokens)?;
        let (k, v) = (k.view, v.view);
        let len = (max_tokens as u64 - 1) * token_stride as u64 + kv_dim;
        let p = Params {
            k_offset,
            v_offset,
            token_stride,
            kv_dim: cache.kv_dim,
            capacity: cache.capacity,
            max_tokens,
            _pad: [0; 2],
        };
        to_u32("kv_append input length", k.offset.max(v.offset) + len)?;
        let key = key(cache.f16());
        let dispatch = build_dispatch(
            gpu,
            &key,
            key.label(),
            &[
                (0, k.buffer),
                (1, v.buffer),
                (2, &cache.k),
                (4, &cache.v),
                (STEP_BINDING, &tok.step.buffer),
            ],
            &p,
            (cache.kv_dim.div_ceil(WORKGROUP), max_tokens, 1),
        )?;
        let elem = if cache.f16() { 2.0 } else { 4.0 };
        let kvd = cache.kv_dim as f64;
        let dispatch = dispatch.costed(
            format!("{}", cache.kv_dim),
            Work::per_token(2.0 * kvd * (4.0 + elem)),
            Work::default(),
        );
        Ok(Self { dispatch })
    }
}

/// CPU twin for one of K or V: rows `pos..pos + n_tokens` of `cache` (`[position][kv_dim]`)
/// take `x[t * token_stride ..][..kv_dim]`, rounded through f16 when `f16`; rows past the
/// cache's end are dropped.
pub fn cpu(
    cache: &mut [f32],
    x: &[f32],
    token_stride: usize,
    kv_dim: usize,
    pos: usize,
    n_tokens: usize,
    f16: bool,
) {
    for t in 0..n_tokens {
        let row = pos + t;
        if (row + 1) * kv_dim > cache.len() {
            break;
        }
        let src = &x[t * token_stride..t * token_stride + kv_dim];
        for (c, &s) in cache[row * kv_dim..(row + 1) * kv_dim].iter_mut().zip(src) {
            *c = if f16 {
                half::f16::from_f32(s).to_f32()
            } else {
                s
            };
        }
    }
}

impl super::Op for KvAppend {
    fn dispatches(&self) -> &[Dispatch] {
        std::slice::from_ref(&self.dispatch)
    }
}
