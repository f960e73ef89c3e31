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

    let spec = |dims, base| RopeSpec {
        dims,
        base,
        pos_scale: 1.0,
        neox: true,
    };
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
}
