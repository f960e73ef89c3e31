//! Every constructor refuses sizes, strides and buffers it cannot run with, with an error
//! that names the problem.

use crate::common::{gpu, storage, Config};
use hearth::gpu::GpuError;
use hearth::kernels::{
    Add, Argmax, GatedAct, NormOut, RmsNorm, Rope, RopeSpec, Rows, Scale, Step, StepBuffer, Tokens,
    View,
};
use hearth::model::Activation;

/// `rows` rows of `width` per token, `stride` apart, from `view`.
fn rows(view: View, width: u32, rows: u32, stride: u32) -> Rows {
    Rows {
        view,
        width,
        rows,
        stride,
    }
}

#[test]
fn constructors_reject_bad_sizes() {
    let g = gpu(Config::Full);
    let a = storage(&g, &[0.0; 64]);
    let b = storage(&g, &[0.0; 64]);
    let step = StepBuffer::new(&g, Step::new(0, 1));
    let tok = |max| Tokens { max, step: &step };
    let msg = |r: Result<(), GpuError>| r.err().map(|e| e.to_string()).unwrap_or_default();
    let norm = |x: View, out: NormOut, width, n, stride, tokens| {
        let x = rows(x, width, n, stride);
        msg(RmsNorm::new(&g, x, out, &b, 1e-6, tok(tokens)).map(drop))
    };
    assert!(norm(View::of(&a), NormOut::InPlace, 0, 1, 8, 1).contains("width 0"));
    assert!(norm(View::of(&a), NormOut::InPlace, 8, 2, 8, 1).contains("stride"));
    assert!(norm(View::of(&a), NormOut::InPlace, 8, 1, 8, 9).contains("bytes"));
    assert!(norm(View::of(&a), NormOut::InPlace, 65, 1, 65, 1).contains("weight"));
    assert!(norm(View::of(&a), NormOut::AddTo(View::of(&a)), 8, 1, 8, 1).contains("other"));
    assert!(norm(
        View {
            buffer: &a,
            offset: 60
        },
        NormOut::To(View::of(&b)),
        8,
        1,
        8,
        1
    )
    .contains("bytes"));
    assert!(norm(View::of(&a), NormOut::InPlace, 8, 1, 8, 0).contains("tokens"));
    assert!(norm(View::of(&a), NormOut::InPlace, 8, 1, 0, 1).contains("stride of 0"));

    let spec = |dims, base| RopeSpec::plain(dims, base, 1.0, true);
    let heads = |head_dim| rows(View::of(&a), head_dim, 2, 64);
    let rope = |dims, head_dim, base| {
        msg(Rope::new(&g, heads(head_dim), spec(dims, base), None, tok(1)).map(drop))
    };
    assert!(rope(7, 32, 1e4).contains("rotary"));
    assert!(rope(64, 32, 1e4).contains("rotary"));
    assert!(rope(32, 32, 0.0).contains("base"));
    assert!(rope(32, 32, 1e4).is_empty());
    let short = storage(&g, &[1.0; 4]);
    let r = Rope::new(&g, heads(32), spec(32, 1e4), Some(&short), tok(1));
    assert!(msg(r.map(drop)).contains("factors"));

    let add = |x: Rows, y: Rows, tokens| msg(Add::new(&g, x, y, 1.0, tok(tokens)).map(drop));
    let (a8, b8) = (Rows::packed(&a, 8), Rows::packed(&b, 8));
    assert!(add(a8, a8, 1).contains("different"));
    assert!(add(rows(View::of(&a), 8, 1, 4), b8, 1).contains("stride"));
    assert!(add(a8, Rows::packed(&b, 4), 1).contains("elements per token"));
    assert!(add(a8, Rows::broadcast(&b, 8), 1).contains("stride of 0"));
    // A broadcast x is one row whatever the token count; y must hold them all.
    let (x64, y64) = (Rows::broadcast(&a, 64), Rows::packed(&b, 64));
    assert!(add(x64, y64, 2).contains("bytes"));
    assert!(add(x64, y64, 1).is_empty());
    let scale = |x: Rows| msg(Scale::new(&g, x, 2.0, tok(1)).map(drop));
    assert!(scale(Rows::packed(&a, 0)).contains("width 0"));
    assert!(scale(Rows::broadcast(&a, 8)).contains("stride of 0"));
    let gated = |gate: Rows, up: Rows, tokens| {
        msg(GatedAct::new(&g, gate, up, Activation::Silu, tok(tokens)).map(drop))
    };
    assert!(gated(a8, a8, 1).contains("different"));
    assert!(gated(a8, b8, 9).contains("bytes"));
    assert!(gated(a8, Rows::packed(&b, 4), 1).contains("one layout"));
    assert!(msg(Argmax::new(&g, View::of(&a), 0, &b, 0).map(drop)).contains("width 0"));
    assert!(msg(Argmax::new(&g, View::of(&a), 65, &b, 0).map(drop)).contains("bytes"));
    assert!(msg(Argmax::new(&g, View::of(&a), 64, &b, 64).map(drop)).contains("index"));
    assert!(msg(Argmax::new(&g, View::of(&a), 64, &a, 0).map(drop)).contains("other"));
    let odd_chunk = Argmax::with_chunk(&g, View::of(&a), (64, 1), &b, 0, 100);
    assert!(msg(odd_chunk.map(drop)).contains("chunk 100"));
    // Rows: none, past x, past out.
    assert!(msg(Argmax::rows(&g, View::of(&a), (8, 0), &b, 0).map(drop)).contains("0 rows"));
    assert!(msg(Argmax::rows(&g, View::of(&a), (8, 9), &b, 0).map(drop)).contains("bytes"));
    assert!(msg(Argmax::rows(&g, View::of(&a), (8, 2), &b, 63).map(drop)).contains("index"));
}

/// The fused ops and the matvec geometry refuse what they cannot run, naming the problem.
#[test]
fn fused_constructors_reject_bad_inputs() {
    use hearth::gpu::GpuTensor;
    use hearth::kernels::matvec::Geometry;
    use hearth::kernels::{
        AttnSpec, KvCache, MatVec, ResidualNorm, ResidualNormIo, RopeKv, RopeKvIo,
    };
    use hearth::quant::GgmlType;
    let g = gpu(Config::Bare);
    let (a, b, c) = (
        storage(&g, &[0.0; 256]),
        storage(&g, &[0.0; 256]),
        storage(&g, &[0.0; 256]),
    );
    let step = StepBuffer::new(&g, Step::new(0, 1));
    let tok = Tokens {
        max: 1,
        step: &step,
    };
    let msg = |r: Result<(), GpuError>| r.err().map(|e| e.to_string()).unwrap_or_default();

    let rn = |x: &wgpu::Buffer, o: &wgpu::Buffer, norm: &wgpu::Buffer, width: u32, eps: f32| {
        let io = ResidualNormIo {
            x: Rows::packed(x, width),
            o: View::of(o),
            h: View::of(&c),
            post: None,
            norm,
        };
        msg(ResidualNorm::new(&g, io, eps, tok).map(drop))
    };
    assert!(rn(&a, &b, &b, 64, 1e-6).is_empty());
    assert!(rn(&a, &a, &b, 64, 1e-6).contains("three different"));
    assert!(rn(&a, &b, &b, 64, f32::NAN).contains("eps"));
    let small = storage(&g, &[1.0; 8]);
    assert!(rn(&a, &b, &small, 64, 1e-6).contains("weights"));

    let cache = KvCache::new(&g, 4, 32).unwrap();
    let heads = AttnSpec {
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 32,
        scale: 1.0,
        window: None,
        softcap: None,
    };
    let rope = RopeSpec::plain(32, 1e4, 1.0, true);
    let rko = |q: Rows, q_out, rope: RopeSpec, norms: Option<([&wgpu::Buffer; 2], f32)>| {
        let io = RopeKvIo {
            q,
            q_out,
            k: Rows::heads(&b, 1, 32),
            v: Rows::heads(&c, 1, 32),
            norms,
            freq_factors: None,
            q_temp: None,
        };
        msg(RopeKv::new(&g, &heads, rope, io, &cache, tok).map(drop))
    };
    let rk = |q: Rows, rope: RopeSpec, norms| rko(q, None, rope, norms);
    let q = Rows::heads(&a, 2, 32);
    // q_out: another buffer than q, k and v, with every query head.
    let qo = storage(&g, &[0.0; 64]);
    assert!(rko(q, Some(Rows::heads(&qo, 2, 32)), rope, None).is_empty());
    assert!(rko(q, Some(Rows::heads(&a, 2, 32)), rope, None).contains("other than"));
    assert!(rko(q, Some(Rows::heads(&b, 2, 32)), rope, None).contains("other than"));
    assert!(rko(q, Some(Rows::heads(&small, 1, 32)), rope, None).contains("q_out"));
    assert!(rk(q, rope, None).is_empty());
    assert!(rk(Rows::heads(&a, 3, 32), rope, None).contains("heads of 32"));
    assert!(rk(q, RopeSpec { dims: 33, ..rope }, None).contains("rotary"));
    assert!(rk(q, rope, Some(([&small, &small], 1e-6))).contains("norm weights"));
    assert!(rk(q, rope, Some(([&b, &b], -1.0))).contains("eps"));

    let raw = vec![0u8; GgmlType::Q8_0.bytes_for(64).unwrap() as usize];
    let w = GpuTensor::upload(&g, "w", GgmlType::Q8_0, 32, 2, &raw).unwrap();
    let mv = |workgroup, lanes, rows| {
        let geo = (
            Geometry {
                workgroup,
                lanes,
                rows,
            },
            false,
        );
        msg(MatVec::with_geometry(&g, &w, View::of(&a), View::of(&b), geo, None).map(drop))
    };
    assert!(mv(64, 8, 2).is_empty());
    assert!(mv(64, 3, 1).contains("lanes"));
    assert!(mv(64, 128, 1).contains("lanes"));
    assert!(mv(64, 2, 1).contains("no build"));
    assert!(mv(64, 8, 3).contains("no build"));
}
