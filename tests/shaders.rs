//! Every WGSL file parses and validates with naga, in every composed variant, and every
//! file under shaders/ is registered and used.

use hearth::gpu::{compose, shader_files};
use hearth::kernels::all_variants;

fn validate(label: &str, src: &str) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(src)));
    let mut v = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    v.validate(&module)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(src)));
}

#[test]
fn every_variant_validates() {
    let variants = all_variants();
    assert!(variants.len() >= 60, "only {} variants", variants.len());
    for key in &variants {
        let src = compose(key).unwrap();
        validate(&key.label(), &src);
    }
}

#[test]
fn every_shader_file_is_registered_and_used() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk = Vec::new();
    for sub in ["", "lib"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "wgsl") {
                let name = p.file_name().unwrap().to_str().unwrap().to_string();
                on_disk.push(if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                });
            }
        }
    }
    on_disk.sort();
    let mut registered: Vec<String> = shader_files().iter().map(|(p, _)| p.to_string()).collect();
    registered.sort();
    assert_eq!(on_disk, registered, "shaders/ and the registry disagree");

    // Every fragment's first line appears in some composed shader.
    let all: String = all_variants().iter().map(|k| compose(k).unwrap()).collect();
    for (path, src) in shader_files() {
        let first = src.lines().next().unwrap();
        assert!(all.contains(first), "{path} is never used");
    }
}

/// The cooperative-matrix matmul, which no adapter in CI runs (lavapipe before Mesa
/// 25.2 has no cooperative matrices), still compiles for Vulkan: each of its builds
/// translates to SPIR-V, and the SPIR-V multiplies with OpCooperativeMatrixMulAddKHR.
#[test]
fn cooperative_matmul_translates_to_spirv() {
    const OP_COOP_MUL_ADD: u32 = 4459;
    let keys: Vec<_> = all_variants()
        .into_iter()
        .filter(|k| k.op == "matmul_coop")
        .collect();
    assert!(keys.len() >= 4, "only {} cooperative builds", keys.len());
    for key in &keys {
        let label = key.label();
        let src = compose(key).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(&src)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(&src)));
        let options = naga::back::spv::Options {
            lang_version: (1, 3),
            ..Default::default()
        };
        let pipeline = naga::back::spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: "main".into(),
        };
        let words = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        // Walk the instructions (each word count in the high half of its first word).
        let (mut i, mut mul_adds) = (5, 0);
        while i < words.len() {
            let (count, op) = ((words[i] >> 16) as usize, words[i] & 0xFFFF);
            assert!(count > 0, "{label}: malformed SPIR-V at word {i}");
            mul_adds += usize::from(op == OP_COOP_MUL_ADD);
            i += count;
        }
        // Four products per stage step, twelve with f16 inputs (high x high, low x high,
        // high x low).
        let want = if key.variant.f16 { 12 } else { 4 };
        assert_eq!(mul_adds, want, "{label}: {mul_adds} matrix multiply-adds");
    }
}
