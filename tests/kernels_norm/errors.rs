//! Every constructor refuses sizes, strides and buffers it cannot run with, with an error
//! that names the problem.

use crate::common::{gpu, storage, Config};
use hearth::gpu::GpuError;
use hearth::kernels::{
    Add, Argmax, GatedAct, NormOut, RmsNorm, Rope, Scale, Softmax, Step, StepBuffer, View,
};
use hearth::model::Activation;

#[test]
fn constructors_reject_bad_sizes() {
    let g = gpu(Config::Full);
    let a = storage(&g, &[0.0; 64]);
    let b = storage(&g, &[0.0; 64]);
    let step = StepBuffer::new(&g, Step::new(0, 1));
    let msg = |r: Result<(), GpuError>| r.err().map(|e| e.to_string()).unwrap_or_default();
    let norm = |x: View, out: NormOut, width, rows, stride, tokens| {
        msg(RmsNorm::new(&g, x, out, &b, width, rows, stride, 1e-6, tokens, &step).map(drop))
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

    let rope = |dims, head_dim, base| {
        msg(Rope::new(
            &g,
            View::of(&a),
            2,
            head_dim,
            dims,
            64,
            base,
            1.0,
            true,
            None,
            1,
            &step,
        )
        .map(drop))
    };
    assert!(rope(7, 32, 1e4).contains("rotary"));
    assert!(rope(64, 32, 1e4).contains("rotary"));
    assert!(rope(32, 32, 0.0).contains("base"));
    assert!(rope(32, 32, 1e4).is_empty());
    assert!(msg(Rope::new(
        &g,
        View::of(&a),
        2,
        32,
        32,
        64,
        1e4,
        1.0,
        true,
        Some(&storage(&g, &[1.0; 4])),
        1,
        &step
    )
    .map(drop))
    .contains("factors"));

    assert!(msg(Add::new(
        &g,
        View::of(&a),
        View::of(&a),
        8,
        8,
        8,
        false,
        1.0,
        1,
        &step
    )
    .map(drop))
    .contains("different"));
    assert!(msg(Add::new(
        &g,
        View::of(&a),
        View::of(&b),
        8,
        4,
        8,
        false,
        1.0,
        1,
        &step
    )
    .map(drop))
    .contains("stride"));
    assert!(msg(Add::new(
        &g,
        View::of(&a),
        View::of(&b),
        64,
        0,
        64,
        true,
        1.0,
        2,
        &step
    )
    .map(drop))
    .contains("bytes"));
    assert!(msg(Add::new(
        &g,
        View::of(&a),
        View::of(&b),
        64,
        0,
        64,
        true,
        1.0,
        1,
        &step
    )
    .map(drop))
    .is_empty());
    assert!(msg(Scale::new(&g, View::of(&a), 0, 8, 2.0, 1, &step).map(drop)).contains("width 0"));
    assert!(msg(GatedAct::new(
        &g,
        View::of(&a),
        View::of(&a),
        8,
        8,
        Activation::Silu,
        1,
        &step
    )
    .map(drop))
    .contains("different"));
    assert!(msg(GatedAct::new(
        &g,
        View::of(&a),
        View::of(&b),
        8,
        8,
        Activation::Silu,
        9,
        &step
    )
    .map(drop))
    .contains("bytes"));
    assert!(msg(Softmax::new(&g, View::of(&a), 0, 8, 1.0, 1, &step).map(drop)).contains("width 0"));
    assert!(
        msg(Softmax::new(&g, View::of(&a), 8, 8, f32::INFINITY, 1, &step).map(drop))
            .contains("scale")
    );
    assert!(msg(Argmax::new(&g, View::of(&a), 0, &b, 0).map(drop)).contains("width 0"));
    assert!(msg(Argmax::new(&g, View::of(&a), 65, &b, 0).map(drop)).contains("bytes"));
    assert!(msg(Argmax::new(&g, View::of(&a), 64, &b, 64).map(drop)).contains("index"));
    assert!(msg(Argmax::new(&g, View::of(&a), 64, &a, 0).map(drop)).contains("other"));
}
