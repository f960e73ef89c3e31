//! GPU faults become typed errors, never panics (robustness case 28): errors outside any
//! scope are recorded by the device's handler, allocations beyond what the adapter can
//! give are refused inside `Gpu::catch`, and a lost device fails every later operation
//! (an engine's stream included) with `GpuError::Lost`.

mod common;

use futures::StreamExt;
use hearth::engine::{Engine, EngineOptions, Event, GenerateOptions, Prompt};
use hearth::gguf::GgufFile;
use hearth::gpu::{Gpu, GpuError, GpuOptions};
use hearth::model::{Arch, TinySpec};
use hearth::sampling::SamplingParams;
use std::sync::Arc;

/// A device of its own: these tests break theirs.
fn fresh_gpu() -> Arc<Gpu> {
    Gpu::new_blocking(&GpuOptions::from_env().unwrap()).expect("a GPU adapter")
}

fn buffer(gpu: &Gpu, size: u64) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("fault test"),
        size,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}

#[test]
fn a_buffer_beyond_the_adapter_is_an_error_inside_catch_and_recorded_outside() {
    let gpu = fresh_gpu();
    let too_big = gpu.limits.max_buffer_size + 256;
    let r: Result<(), GpuError> = gpu.catch("allocating the test buffer", || {
        let _b = buffer(&gpu, too_big);
        Ok(())
    });
    let e = r.expect_err("a buffer past max_buffer_size was accepted");
    assert!(e.to_string().contains("allocating the test buffer"), "{e}");
    assert!(gpu.check().is_ok(), "the scope leaked its error");
    // Outside a scope, wgpu's default handler would panic; hearth's records it once.
    let _b = buffer(&gpu, too_big);
    let e = gpu
        .check()
        .expect_err("the uncaptured error was not recorded");
    assert!(matches!(e, GpuError::Runtime(_)), "{e}");
    assert!(gpu.check().is_ok(), "an error is reported once");
    // The device still works.
    let _ok = buffer(&gpu, 1024);
    gpu.wait().unwrap();
}

#[test]
fn a_device_lost_mid_generation_ends_the_stream_with_an_error() {
    let gpu = fresh_gpu();
    let f = GgufFile::from_bytes(TinySpec::new(Arch::Llama).build()).unwrap();
    let opts = EngineOptions {
        context: 64,
        batch: 8,
        template: None,
        kv_type: None,
    };
    let engine = Engine::load(gpu.clone(), &f, opts, &mut |_, _| {}).unwrap();
    let mut session = engine.session().unwrap();
    let gen = GenerateOptions {
        sampling: SamplingParams::greedy(),
        max_tokens: Some(20),
        stop: Vec::new(),
        format: None,
    };
    let mut err = None;
    {
        let mut stream = Box::pin(session.generate(&Prompt::Raw("hello".into()), gen).unwrap());
        let mut tokens = 0;
        while let Some(ev) = pollster::block_on(stream.next()) {
            match ev {
                Ok(Event::Token { .. }) => {
                    tokens += 1;
                    if tokens == 2 {
                        gpu.device.destroy();
                    }
                }
                Ok(Event::Done { .. }) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert_eq!(tokens, 2, "tokens after the device was destroyed");
    }
    let err = err.expect("the stream ended without an error after the device was lost");
    assert!(err.to_string().contains("lost"), "{err}");
    assert!(gpu.lost().is_some());
    // Anything further on it is an error too: a new session, a wait.
    assert!(engine.session().is_err());
    assert!(matches!(gpu.wait(), Err(GpuError::Lost(_))));
}
