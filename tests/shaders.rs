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
