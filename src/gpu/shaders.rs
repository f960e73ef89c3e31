//! The shader registry: every WGSL file embedded at compile time, a tiny preprocessor
//! (`#include "lib/x.wgsl"`, `#define NAME`, `#ifdef NAME` / `#ifndef` / `#else` /
//! `#endif`, `#unroll N` / `#endunroll` (the lines between, N times (a number or a
//! `NAME=VALUE` define's name), with
//! `$i` replaced by 0, 1, ...: arrays a runtime index would spill on CPU adapters become
//! named variables), and `const` defines prepended: `WG` and every `NAME=VALUE` define),
//! and the pipeline cache keyed by the same axes as the file names.

use super::{Gpu, GpuError};
use crate::quant::GgmlType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

macro_rules! shader_table {
    ($($path:literal),* $(,)?) => {
        /// Every WGSL file under `shaders/`, by path relative to that folder.
        const FILES: &[(&str, &str)] = &[
            $(($path, include_str!(concat!("../../shaders/", $path)))),*
        ];
    };
}

shader_table!(
    "matvec.wgsl",
    "matvec_batch.wgsl",
    "matmul.wgsl",
    "matmul_coop.wgsl",
    "get_rows.wgsl",
    "kv_append.wgsl",
    "attention_decode.wgsl",
    "attention_prefill.wgsl",
    "attention_rows.wgsl",
    "lib/kv.wgsl",
    "lib/prefill_params.wgsl",
    "rmsnorm.wgsl",
    "rope.wgsl",
    "add.wgsl",
    "gated_act.wgsl",
    "matvec_id.wgsl",
    "moe_route.wgsl",
    "moe_sum.wgsl",
    "moe_group.wgsl",
    "argmax.wgsl",
    "penalties.wgsl",
    "pool.wgsl",
    "topk.wgsl",
    "stream_read.wgsl",
    "lib/common.wgsl",
    "lib/weights.wgsl",
    "lib/dot_generic.wgsl",
    "lib/split.wgsl",
    "lib/q5_quants.wgsl",
    "lib/q4_nibbles.wgsl",
    "lib/rope_angle.wgsl",
    "rope_kv.wgsl",
    "residual_norm.wgsl",
    "layer_norm.wgsl",
    "lib/act.wgsl",
    "lib/reduce.wgsl",
    "lib/iq4_values.wgsl",
    "lib/kquant_scales.wgsl",
    "lib/step.wgsl",
    "lib/token_rows.wgsl",
    "lib/row_sum.wgsl",
    "lib/lazy.wgsl",
    "lib/xshare.wgsl",
    "lib/claim.wgsl",
    "lib/float_runs.wgsl",
    "lib/dtype_f32.wgsl",
    "lib/dtype_f16.wgsl",
    "lib/dtype_bf16.wgsl",
    "lib/dtype_q4_0.wgsl",
    "lib/dtype_q4_1.wgsl",
    "lib/dtype_q5_0.wgsl",
    "lib/dtype_q5_1.wgsl",
    "lib/dtype_q8_0.wgsl",
    "lib/dtype_q2_k.wgsl",
    "lib/dtype_q3_k.wgsl",
    "lib/dtype_q4_k.wgsl",
    "lib/dtype_q5_k.wgsl",
    "lib/dtype_q6_k.wgsl",
    "lib/dtype_iq4_nl.wgsl",
    "lib/dtype_mxfp4.wgsl",
    "lib/codebook4.wgsl",
    "lib/dtype_iq4_xs.wgsl",
);

/// All embedded shader files: (path under `shaders/`, source).
pub fn shader_files() -> &'static [(&'static str, &'static str)] {
    FILES
}

fn file(path: &str) -> Option<&'static str> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, s)| *s)
}

/// Which compiled form of an op: its weight type, the optional features it uses, its
/// workgroup size and op-specific `#ifdef` switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShaderVariant {
    /// Weight block type the kernel decodes (`None` for ops without weights).
    pub dtype: Option<GgmlType>,
    /// Use subgroup reductions (defines `SUBGROUPS`).
    pub subgroups: bool,
    /// Use f16 storage/arithmetic: emits `enable f16;` and defines `F16`.
    pub f16: bool,
    /// Workgroup size (threads), available to the shader as `const WG`.
    pub workgroup: u32,
    /// Op-specific switches, each defined for `#ifdef` (e.g. `NEOX`, `GELU`), or
    /// `NAME=VALUE`, declared as `const NAME: u32` (e.g. `LANES=32`).
    pub defines: &'static [&'static str],
}

impl ShaderVariant {
    /// A plain variant: no weights, no optional features, no switches.
    pub const fn new(workgroup: u32) -> Self {
        Self {
            dtype: None,
            subgroups: false,
            f16: false,
            workgroup,
            defines: &[],
        }
    }
}

/// Pipeline cache key: op name (the shader's stem) plus its variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    /// Op name, equal to the stem of the WGSL file and of its host module.
    pub op: &'static str,
    /// The variant axes.
    pub variant: ShaderVariant,
}

impl PipelineKey {
    /// Readable name, e.g. `matvec_q4_k_sg_wg64`.
    pub fn label(&self) -> String {
        let mut s = self.op.to_string();
        if let Some(t) = self.variant.dtype {
            s.push('_');
            s.push_str(&t.name().to_ascii_lowercase());
        }
        for d in self.variant.defines {
            s.push('_');
            s.push_str(&d.to_ascii_lowercase().replace('=', ""));
        }
        if self.variant.subgroups {
            s.push_str("_sg");
        }
        if self.variant.f16 {
            s.push_str("_f16");
        }
        s.push_str(&format!("_wg{}", self.variant.workgroup));
        s
    }
}

/// Composes the full WGSL source of `key`: defines, the dtype decoder, then the op file
/// with its includes resolved and conditionals applied.
pub fn compose(key: &PipelineKey) -> Result<String, GpuError> {
    let err = |reason: String| GpuError::Shader {
        name: key.label(),
        reason,
    };
    let mut defines: Vec<String> = key.variant.defines.iter().map(|d| d.to_string()).collect();
    let mut out = String::new();
    let mut seen = Vec::new();
    if key.variant.f16 {
        // Enable directives must precede every declaration.
        out.push_str("enable f16;\n");
        defines.push("F16".into());
    }
    // `COOP=N` (a matrix side): wgpu's cooperative matrices.
    if key.variant.defines.iter().any(|d| d.starts_with("COOP=")) {
        out.push_str("enable wgpu_cooperative_matrix;\n");
    }
    out.push_str(&format!("const WG: u32 = {}u;\n", key.variant.workgroup));
    // `NAME=VALUE` defines become u32 constants (e.g. a matvec's `LANES=32`).
    for d in key.variant.defines {
        if let Some((name, value)) = d.split_once('=') {
            let ident = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            let value: u32 = value
                .parse()
                .map_err(|_| err(format!("define {d}: the value is not a u32")))?;
            if !ident {
                return Err(err(format!("define {d}: not an identifier")));
            }
            out.push_str(&format!("const {name}: u32 = {value}u;\n"));
        }
    }
    if key.variant.subgroups {
        defines.push("SUBGROUPS".into());
    }
    if let Some(t) = key.variant.dtype {
        let path = format!("lib/dtype_{}.wgsl", t.name().to_ascii_lowercase());
        let src = file(&path).ok_or_else(|| err(format!("no GPU decoder for {t} ({path})")))?;
        if t.is_float() {
            defines.push("FLOAT_WEIGHTS".into());
        }
        expand(&path, src, &mut defines, &mut out, &mut seen, 0).map_err(err)?;
    }
    let path = format!("{}.wgsl", key.op);
    let src = file(&path).ok_or_else(|| err(format!("no shader file {path}")))?;
    expand(&path, src, &mut defines, &mut out, &mut seen, 0).map_err(err)?;
    Ok(out)
}

/// Appends `src` to `out` with directives applied; each include is expanded once
/// (`seen`), so fragments may include what they need without guards. `#define` adds to
/// `defines` for the rest of the composition (the op file sees its dtype's defines).
fn expand(
    path: &str,
    src: &str,
    defines: &mut Vec<String>,
    out: &mut String,
    seen: &mut Vec<String>,
    depth: u32,
) -> Result<(), String> {
    if depth > 8 {
        return Err(format!("{path}: includes nested too deeply"));
    }
    // Stack of (this branch active, any enclosing branch inactive).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let active = |stack: &[(bool, bool)]| stack.iter().all(|(on, _)| *on);
    // An open `#unroll`: its count and the lines so far.
    let mut unroll: Option<(u32, Vec<&str>)> = None;
    for (n, line) in src.lines().enumerate() {
        let t = line.trim_start();
        if let Some((count, body)) = &mut unroll {
            if t.starts_with("#endunroll") {
                for i in 0..*count {
                    for l in body.iter() {
                        out.push_str(&l.replace("$i", &i.to_string()));
                        out.push('\n');
                    }
                }
                unroll = None;
            } else if t.starts_with('#') {
                return Err(format!("{path}:{}: directive inside #unroll", n + 1));
            } else {
                body.push(line);
            }
            continue;
        }
        if let Some(name) = t.strip_prefix("#unroll ") {
            if active(&stack) {
                let name = name.trim();
                let count = name
                    .parse()
                    .ok()
                    .or_else(|| define_value(defines, name))
                    .filter(|&c| c <= MAX_UNROLL)
                    .ok_or(format!(
                        "{path}:{}: #unroll needs a count or a NAME=VALUE define, at most {MAX_UNROLL}",
                        n + 1
                    ))?;
                unroll = Some((count, Vec::new()));
            } else {
                unroll = Some((0, Vec::new()));
            }
        } else if t.starts_with("#endunroll") {
            return Err(format!("{path}:{}: #endunroll without #unroll", n + 1));
        } else if let Some(name) = t.strip_prefix("#ifdef ") {
            stack.push((defines.iter().any(|d| d == name.trim()), false));
        } else if let Some(name) = t.strip_prefix("#ifndef ") {
            stack.push((!defines.iter().any(|d| d == name.trim()), false));
        } else if let Some(name) = t.strip_prefix("#define ") {
            if active(&stack) && !defines.iter().any(|d| d == name.trim()) {
                defines.push(name.trim().to_string());
            }
        } else if t.starts_with("#else") {
            let top = stack
                .last_mut()
                .ok_or(format!("{path}:{}: #else without #ifdef", n + 1))?;
            if top.1 {
                return Err(format!("{path}:{}: second #else", n + 1));
            }
            *top = (!top.0, true);
        } else if t.starts_with("#endif") {
            stack
                .pop()
                .ok_or(format!("{path}:{}: #endif without #ifdef", n + 1))?;
        } else if let Some(rest) = t.strip_prefix("#include ") {
            if active(&stack) {
                let inc = rest.trim().trim_matches('"');
                let src = file(inc).ok_or(format!("{path}:{}: no file {inc}", n + 1))?;
                if !seen.iter().any(|s| s == inc) {
                    seen.push(inc.to_string());
                    expand(inc, src, defines, out, seen, depth + 1)?;
                }
            }
        } else if t.starts_with('#') {
            return Err(format!("{path}:{}: unknown directive {t}", n + 1));
        } else if active(&stack) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err(format!("{path}: unterminated #ifdef"));
    }
    if unroll.is_some() {
        return Err(format!("{path}: unterminated #unroll"));
    }
    Ok(())
}

/// The most copies one `#unroll` makes.
const MAX_UNROLL: u32 = 64;

/// The value of a `NAME=VALUE` define.
fn define_value(defines: &[String], name: &str) -> Option<u32> {
    defines.iter().find_map(|d| {
        let (n, v) = d.split_once('=')?;
        if n == name {
            v.parse().ok()
        } else {
            None
        }
    })
}

/// Compiled pipelines by key; created on first use, then shared.
#[derive(Default)]
pub(crate) struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl Gpu {
    /// The compute pipeline for `key`, compiled once per device.
    pub fn pipeline(&self, key: &PipelineKey) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        if let Some(p) = self.pipelines.map.lock().map_err(|_| poisoned())?.get(key) {
            return Ok(p.clone());
        }
        let src = compose(key)?;
        let label = key.label();
        // Each is a driver compile (seconds on a CPU rasterizer with a cold cache):
        // `RUST_LOG=hearth=debug` lists them.
        log::debug!("compiling pipeline {label}");
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        };
        // SAFETY: without naga's runtime checks a shader must index only within its
        // arrays and bindings and end every loop. Every kernel's indices and loop bounds
        // are covered by its twin tests, at awkward sizes, with every build variant
        // (`tests/kernels*.rs`); buffer sizes are checked on the host before binding
        // (`View::check` and friends). `runtime_checks` keeps the checks in debug builds,
        // in the browser, and on request.
        let module = unsafe {
            self.device
                .create_shader_module_trusted(desc, runtime_checks())
        };
        let pipeline = Arc::new(self.device.create_compute_pipeline(
            &wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            },
        ));
        self.pipelines
            .map
            .lock()
            .map_err(|_| poisoned())?
            .insert(key.clone(), pipeline.clone());
        Ok(pipeline)
    }
}

/// naga's runtime checks (array and binding indices clamped, loops bounded) for hearth's
/// own shaders: dropped in native release builds, kept in debug builds, in the browser,
/// and with `HEARTH_SHADER_CHECKS=1`. Adapters whose drivers bound buffer accesses
/// themselves (Vulkan's robustBufferAccess2, as on lavapipe) keep those either way.
fn runtime_checks() -> wgpu::ShaderRuntimeChecks {
    #[cfg(all(not(debug_assertions), not(target_arch = "wasm32")))]
    if std::env::var_os("HEARTH_SHADER_CHECKS").is_none_or(|v| v != "1") {
        return wgpu::ShaderRuntimeChecks::unchecked();
    }
    wgpu::ShaderRuntimeChecks::checked()
}

fn poisoned() -> GpuError {
    GpuError::Runtime("pipeline cache lock poisoned".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditionals_and_includes() {
        let mut out = String::new();
        let mut seen = Vec::new();
        let src = "a\n#ifdef X\nb\n#else\nc\n#endif\n#ifndef X\nd\n#endif\n";
        expand("t", src, &mut vec!["X".into()], &mut out, &mut seen, 0).unwrap();
        assert_eq!(out, "a\nb\n");
        out.clear();
        expand("t", src, &mut vec![], &mut out, &mut seen, 0).unwrap();
        assert_eq!(out, "a\nc\nd\n");
        // A #define holds for the rest of the composition, only where it is active.
        out.clear();
        let mut defines = vec![];
        let src =
            "#ifdef Y\n#define Z\n#endif\n#define X\n#ifdef X\nx\n#endif\n#ifdef Z\nz\n#endif\n";
        expand("t", src, &mut defines, &mut out, &mut seen, 0).unwrap();
        assert_eq!((out.as_str(), defines), ("x\n", vec!["X".to_string()]));
        for bad in ["#ifdef X\n", "#endif\n", "#include \"nope.wgsl\"\n"] {
            let (mut out, mut seen) = (String::new(), Vec::new());
            let r = expand("t", bad, &mut vec![], &mut out, &mut seen, 0);
            assert!(r.is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn unroll_repeats_with_the_index() {
        let (mut out, mut seen) = (String::new(), Vec::new());
        let src = "a\n#unroll N\nx$i = $i;\n#endunroll\nb\n#ifdef Y\n#unroll Q\nq\n#endunroll\n\
            #endif\n#unroll 2\ny$i\n#endunroll\n";
        expand("t", src, &mut vec!["N=3".into()], &mut out, &mut seen, 0).unwrap();
        assert_eq!(out, "a\nx0 = 0;\nx1 = 1;\nx2 = 2;\nb\ny0\ny1\n");
        for (bad, defines) in [
            ("#unroll N\nx\n", vec!["N=2"]),
            ("#unroll N\n#ifdef X\n#endif\n#endunroll\n", vec!["N=2"]),
            ("#unroll M\nx\n#endunroll\n", vec!["N=2"]),
            ("#unroll N\nx\n#endunroll\n", vec!["N=65"]),
            ("#endunroll\n", vec![]),
        ] {
            let (mut out, mut seen) = (String::new(), Vec::new());
            let mut d = defines.iter().map(|s| s.to_string()).collect();
            let r = expand("t", bad, &mut d, &mut out, &mut seen, 0);
            assert!(r.is_err(), "{bad:?} accepted");
        }
    }
}
