//! One source of truth for the uniform structs that the host writes and the shaders read.
//!
//! `params!` defines a `#[repr(C)]`, `Pod` struct and records its layout (each field's
//! name, offset, size and scalar type, and the binding the shader reads it at) as a
//! [`ShaderParams`] impl. The test below composes every pipeline variant hearth builds,
//! reflects it with naga and requires each uniform's WGSL struct to match that table
//! member for member, so neither side can add, reorder, retype or mis-pad a field alone.
//!
//! WGSL cannot mirror a Rust array such as `_pad: [u32; 2]` member for member (arrays in
//! the uniform address space need a 16-byte stride), so a field `name: [T; N]` stands
//! for the N WGSL members `name0`, `name1`, ... of type T.

/// One field of a uniform struct as the host lays it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name, the same as the WGSL member's (see the module docs for arrays).
    pub name: &'static str,
    /// Byte offset in the struct.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// WGSL scalar type of the field, or of each element of an array field.
    pub scalar: &'static str,
    /// 1 for a scalar, N for `[T; N]`.
    pub count: usize,
}

/// A uniform struct shared with the shaders, defined through `params!`.
pub trait ShaderParams: bytemuck::Pod {
    /// Struct name, the same in Rust and WGSL.
    const NAME: &'static str;
    /// `@binding` of the uniform in group 0 of every shader that declares it.
    const BINDING: u32;
    /// The fields in declaration order.
    const FIELDS: &'static [Field];
}

/// A type a `params!` field may have: a 32-bit WGSL scalar or an array of one.
pub trait Member {
    /// WGSL scalar type of the value or of each element.
    const SCALAR: &'static str;
    /// Number of scalars.
    const COUNT: usize;
}

macro_rules! members {
    ($($t:ty => $wgsl:literal),*) => {$(
        impl Member for $t {
            const SCALAR: &'static str = $wgsl;
            const COUNT: usize = 1;
        }
        impl<const N: usize> Member for [$t; N] {
            const SCALAR: &'static str = $wgsl;
            const COUNT: usize = N;
        }
    )*};
}

members!(u32 => "u32", i32 => "i32", f32 => "f32");

/// `[[u32; 4]; N]` stands for one WGSL member `array<vec4<u32>, N>` (16-byte stride, as
/// uniform arrays need).
impl<const N: usize> Member for [[u32; 4]; N] {
    const SCALAR: &'static str = "array<vec4<u32>>";
    const COUNT: usize = 1;
}

/// Defines a uniform struct shared with the shaders: `#[repr(C)]`, `Pod`, and a
/// [`ShaderParams`] impl recording its binding and field table.
///
/// ```text
/// params! {
///     @binding(3)
///     pub(crate) struct Params { width: u32, eps: f32, _pad: [u32; 2] }
/// }
/// ```
macro_rules! params {
    (
        $(#[$meta:meta])*
        @binding($binding:literal)
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident: $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }

        impl $crate::kernels::params::ShaderParams for $name {
            const NAME: &'static str = stringify!($name);
            const BINDING: u32 = $binding;
            const FIELDS: &'static [$crate::kernels::params::Field] = &[$(
                $crate::kernels::params::Field {
                    name: stringify!($field),
                    offset: ::core::mem::offset_of!($name, $field),
                    size: ::core::mem::size_of::<$ty>(),
                    scalar: <$ty as $crate::kernels::params::Member>::SCALAR,
                    count: <$ty as $crate::kernels::params::Member>::COUNT,
                }
            ),*];
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{compose, PipelineKey};
    use crate::kernels::*;
    use naga::{AddressSpace, Module, ScalarKind, TypeInner};

    /// A host uniform: what `ShaderParams` records, without the type.
    #[derive(Debug)]
    struct Host {
        name: &'static str,
        binding: u32,
        size: usize,
        fields: &'static [Field],
    }

    fn host<P: ShaderParams>() -> Host {
        Host {
            name: P::NAME,
            binding: P::BINDING,
            size: std::mem::size_of::<P>(),
            fields: P::FIELDS,
        }
    }

    /// The uniforms each op's host side binds, besides the optional `Step`.
    fn host_uniforms(op: &str) -> Vec<Host> {
        match op {
            "add" => vec![host::<add::Params>()],
            "argmax" => vec![host::<argmax::Params>()],
            "attention_decode" => vec![host::<attention_decode::Params>()],
            "attention_prefill" | "attention_rows" => vec![host::<attention_prefill::Params>()],
            "gated_act" => vec![host::<gated_act::Params>()],
            "get_rows" => vec![host::<get_rows::Params>()],
            "kv_append" => vec![host::<kv_append::Params>()],
            "layer_norm" => vec![host::<layer_norm::Params>()],
            "matmul" | "matmul_coop" => vec![host::<matmul::Params>()],
            "matvec" => vec![host::<matvec::Params>()],
            // The same uniform as matmul's (lib/token_rows.wgsl).
            "matvec_batch" => vec![host::<matmul::Params>()],
            "matvec_id" => vec![host::<moe::IdParams>()],
            "moe_route" => vec![host::<moe::RouteParams>()],
            "moe_sum" => vec![host::<moe::SumParams>()],
            "moe_group" => vec![host::<moe::GroupParams>()],
            "penalties" => vec![host::<penalties::Params>(), host::<penalties::Window>()],
            "pool" => vec![host::<pool::Params>()],
            "rmsnorm" => vec![host::<rmsnorm::Params>()],
            "residual_norm" => vec![host::<residual_norm::Params>()],
            "rope" => vec![host::<rope::Params>()],
            "rope_kv" => vec![host::<rope_kv::Params>()],
            "stream_read" => vec![host::<stream_read::Params>()],
            "topk" => vec![host::<topk::Params>(), host::<topk::Want>()],
            _ => panic!("no host uniforms listed for op {op}: add it to host_uniforms"),
        }
    }

    /// The WGSL members a host field stands for: (name, offset, size, scalar).
    fn expand(f: &Field) -> Vec<(String, usize, usize, &'static str)> {
        if f.count == 1 {
            return vec![(f.name.to_string(), f.offset, f.size, f.scalar)];
        }
        let each = f.size / f.count;
        (0..f.count)
            .map(|i| {
                (
                    format!("{}{i}", f.name),
                    f.offset + i * each,
                    each,
                    f.scalar,
                )
            })
            .collect()
    }

    /// One uniform as the shader declares it: (binding, struct name, span, members as
    /// (name, offset, size, scalar)).
    type Reflected = (u32, String, usize, Vec<(String, usize, usize, String)>);

    fn reflect(module: &Module, label: &str) -> Vec<Reflected> {
        let mut out = Vec::new();
        for (_, var) in module.global_variables.iter() {
            if var.space != AddressSpace::Uniform {
                continue;
            }
            let b = var
                .binding
                .as_ref()
                .unwrap_or_else(|| panic!("{label}: uniform without binding"));
            assert_eq!(b.group, 0, "{label}: uniform in group {}", b.group);
            let ty = &module.types[var.ty];
            if matches!(ty.inner, TypeInner::Array { .. }) {
                // A window of data (the matvecs' x, `XUNIFORM`), not parameters.
                continue;
            }
            let TypeInner::Struct { members, span } = &ty.inner else {
                panic!("{label}: uniform at binding {} is not a struct", b.binding);
            };
            let members = members
                .iter()
                .map(|m| {
                    let inner = &module.types[m.ty].inner;
                    let scalar = match inner {
                        TypeInner::Scalar(s) => match (s.kind, s.width) {
                            (ScalarKind::Uint, 4) => "u32",
                            (ScalarKind::Sint, 4) => "i32",
                            (ScalarKind::Float, 4) => "f32",
                            _ => "other scalar",
                        },
                        TypeInner::Array { base, .. } => match &module.types[*base].inner {
                            TypeInner::Vector {
                                size: naga::VectorSize::Quad,
                                scalar,
                            } if scalar.kind == ScalarKind::Uint && scalar.width == 4 => {
                                "array<vec4<u32>>"
                            }
                            _ => "other array",
                        },
                        _ => "not a scalar",
                    };
                    (
                        m.name.clone().unwrap_or_default(),
                        m.offset as usize,
                        inner.size(module.to_ctx()) as usize,
                        scalar.to_string(),
                    )
                })
                .collect();
            out.push((
                b.binding,
                ty.name.clone().unwrap_or_default(),
                *span as usize,
                members,
            ));
        }
        out
    }

    fn check(label: &str, host: &Host, wgsl: &Reflected) {
        let (binding, name, span, members) = wgsl;
        assert_eq!(host.name, name, "{label}: struct at binding {binding}");
        assert_eq!(host.binding, *binding, "{label}: binding of {name}");
        let want: Vec<(String, usize, usize, String)> = host
            .fields
            .iter()
            .flat_map(expand)
            .map(|(n, o, s, t)| (n, o, s, t.to_string()))
            .collect();
        assert_eq!(
            &want, members,
            "{label}: {name} members (name, offset, size, type), Rust left, WGSL right"
        );
        assert_eq!(host.size, *span, "{label}: size of {name}");
    }

    /// `key` itself (`true`: built, so it must parse) and the same key with shader-f16
    /// and subgroups switched each other way (checked where that source parses), so a
    /// `#ifdef F16` or `SUBGROUPS` inside a struct cannot hide a difference.
    fn with_features(key: &PipelineKey) -> Vec<(PipelineKey, bool)> {
        let mut out = vec![(key.clone(), true)];
        for f16 in [false, true] {
            for subgroups in [false, true] {
                let mut k = key.clone();
                k.variant.f16 = f16;
                k.variant.subgroups = subgroups;
                if k != *key {
                    out.push((k, false));
                }
            }
        }
        out
    }

    #[test]
    fn every_uniform_matches_its_rust_struct() {
        let step = host::<Step>();
        assert_eq!(step.binding, STEP_BINDING);
        let (mut built, mut extra, mut step_checked) = (0, 0, 0);
        // Half the keys (most feature switches) compose to a source already checked: its
        // uniforms are the same, and parsing it again was half of this test's time.
        let mut seen = std::collections::HashSet::new();
        for (key, is_built) in all_variants().iter().flat_map(with_features) {
            let label = key.label();
            let src = compose(&key).unwrap_or_else(|e| panic!("{label}: {e}"));
            let hash = {
                use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
                BuildHasherDefault::<DefaultHasher>::default().hash_one(&src)
            };
            if seen.contains(&hash) {
                built += usize::from(is_built);
                continue;
            }
            let module = match naga::front::wgsl::parse_str(&src) {
                Ok(m) => m,
                Err(_) if !is_built => continue,
                Err(e) => panic!("{label}: {}", e.emit_to_string(&src)),
            };
            seen.insert(hash);
            if is_built {
                built += 1;
            } else {
                extra += 1;
            }
            let mut reflected = reflect(&module, &label);
            for h in host_uniforms(key.op) {
                let i = reflected
                    .iter()
                    .position(|r| r.0 == h.binding)
                    .unwrap_or_else(|| panic!("{label}: no uniform at binding {}", h.binding));
                check(&label, &h, &reflected.remove(i));
            }
            if let Some(i) = reflected.iter().position(|r| r.1 == step.name) {
                check(&label, &step, &reflected.remove(i));
                step_checked += 1;
            }
            assert!(
                reflected.is_empty(),
                "{label}: uniforms with no Rust struct: {reflected:?}"
            );
        }
        assert_eq!(built, all_variants().len());
        assert!(step_checked > 0, "no shader declares Step");
        eprintln!("checked {built} built variants, {extra} feature-switched ones, {step_checked} Step uniforms");
    }

    params! {
        @binding(2)
        struct Example {
            a: u32,
            b: f32,
            _pad: [u32; 2],
        }
    }

    #[test]
    fn the_macro_records_layout() {
        assert_eq!(Example::NAME, "Example");
        assert_eq!(Example::BINDING, 2);
        let f = Example::FIELDS;
        assert_eq!(f.len(), 3);
        assert_eq!(
            (f[1].name, f[1].offset, f[1].size, f[1].scalar),
            ("b", 4, 4, "f32")
        );
        assert_eq!(
            (f[2].name, f[2].offset, f[2].size, f[2].count),
            ("_pad", 8, 8, 2)
        );
        let expanded: Vec<_> = expand(&f[2]).into_iter().map(|m| (m.0, m.1)).collect();
        assert_eq!(
            expanded,
            [("_pad0".to_string(), 8), ("_pad1".to_string(), 12)]
        );
        let e = Example {
            a: 1,
            b: 2.0,
            _pad: [0; 2],
        };
        assert_eq!(bytemuck::bytes_of(&e).len(), 16);
    }
}
