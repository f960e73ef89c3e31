//! Matrix-vector product over quantized weights (decode: one token). Shader: `matvec.wgsl`.

use super::{grid, to_u32, weight_bytes, weight_dispatches, Dispatch, View, WeightKernel, Work};
use crate::gpu::{Gpu, GpuError, GpuTensor};
use crate::model::Activation;
use crate::quant::GgmlType;

/// The kinds of adapter the matvec geometry is chosen for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterClass {
    /// A CPU rasterizer (lavapipe, SwiftShader, WARP): SIMD lanes, big caches.
    Cpu,
    /// NVIDIA: 32-wide warps.
    Nvidia,
    /// AMD: 32- or 64-wide waves.
    Amd,
    /// Apple: 32-wide SIMD-groups.
    Apple,
    /// Intel: 8-, 16- or 32-wide subgroups.
    Intel,
    /// Anything else (mobile GPUs, unknown vendors).
    Other,
}

impl AdapterClass {
    /// The class of `info`'s adapter.
    pub fn of(info: &wgpu::AdapterInfo) -> Self {
        if info.device_type == wgpu::DeviceType::Cpu {
            return Self::Cpu;
        }
        match info.vendor {
            0x10de => Self::Nvidia,
            0x1002 | 0x1022 => Self::Amd,
            0x106b => Self::Apple,
            0x8086 => Self::Intel,
            _ => Self::Other,
        }
    }
}

/// How the matvec kernel maps rows onto an adapter: `workgroup` invocations, `lanes` of
/// them per row (so `workgroup / lanes` rows per workgroup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Invocations per workgroup.
    pub workgroup: u32,
    /// Invocations sharing one row (a power of two dividing `workgroup`).
    pub lanes: u32,
    /// Rows per invocation (1, 2 or 4): each x value it reads serves this many rows.
    pub rows: u32,
}

/// The geometry per adapter class. On GPUs a row takes a whole 32-wide subgroup (NVIDIA
/// warps, Apple SIMD-groups, AMD's wave32 or half a wave64) or 16 lanes (Intel, whose
/// subgroups may be 8 to 32 wide, and unknown vendors); workgroups hold 4 to 8 rows, one
/// per invocation group (measured on an H200, Llama-3.1-8B-shaped Q4_K_M tg64: 85.4
/// tokens/s with one row per invocation, 79.6 with two, 66.7 with four). On a CPU
/// rasterizer (lavapipe, 8-wide SIMD) a row takes one 8-lane subgroup and each
/// invocation two rows, so every x value read serves two rows (lavapipe tg64: SmolLM2
/// 19.8 tokens/s against 17.3 with one lane and one row per invocation, Gemma 3 12.2
/// against 9.9). `geometry` decides whether the lanes may sum with subgroup shuffles.
pub const TABLE: [(AdapterClass, Geometry); 6] = [
    (
        AdapterClass::Cpu,
        Geometry {
            workgroup: 64,
            lanes: 8,
            rows: 2,
        },
    ),
    (
        AdapterClass::Nvidia,
        Geometry {
            workgroup: 128,
            lanes: 32,
            rows: 1,
        },
    ),
    (
        AdapterClass::Amd,
        Geometry {
            workgroup: 256,
            lanes: 32,
            rows: 1,
        },
    ),
    (
        AdapterClass::Apple,
        Geometry {
            workgroup: 128,
            lanes: 32,
            rows: 1,
        },
    ),
    (
        AdapterClass::Intel,
        Geometry {
            workgroup: 128,
            lanes: 16,
            rows: 1,
        },
    ),
    (
        AdapterClass::Other,
        Geometry {
            workgroup: 64,
            lanes: 16,
            rows: 1,
        },
    ),
];

/// Lane counts per row the shader supports (powers of two up to the widest subgroup).
const LANES: [u32; 6] = [1, 4, 8, 16, 32, 64];
/// Rows per invocation the shader supports.
const NR: [u32; 3] = [1, 2, 4];

const EPILOGUES: [Option<Activation>; 3] =
    [None, Some(Activation::Silu), Some(Activation::GeluTanh)];

/// The shader defines of a geometry and epilogue: `MATVEC`, `LANES=n`, `NR=n`, the
/// gated activation and `PAIR` (gate and up from one dispatch) when `pair`. Each distinct list is built once and kept for the process (at most
/// 6 x 3 x 3 of them), as pipeline keys hold `'static` defines.
fn defines_for(
    g: Geometry,
    act: Option<Activation>,
    pair: bool,
) -> Result<&'static [&'static str], GpuError> {
    type Key = (u32, u32, Option<Activation>, bool);
    type Cache = std::sync::Mutex<Vec<(Key, &'static [&'static str])>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    if !LANES.contains(&g.lanes) || !NR.contains(&g.rows) || !EPILOGUES.contains(&act) {
        return Err(GpuError::Runtime(format!(
            "matvec: no build for {} lanes and {} rows per invocation",
            g.lanes, g.rows
        )));
    }
    if pair && act.is_none() {
        return Err(GpuError::Runtime(
            "matvec: a gate/up pair needs an activation".into(),
        ));
    }
    let key = (g.lanes, g.rows, act, pair);
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| GpuError::Runtime("matvec define cache poisoned".into()))?;
    if let Some((_, d)) = cache.iter().find(|(k, _)| *k == key) {
        return Ok(d);
    }
    let mut d: Vec<&'static str> = vec![
        "MATVEC",
        Box::leak(format!("LANES={}", g.lanes).into_boxed_str()),
        Box::leak(format!("NR={}", g.rows).into_boxed_str()),
    ];
    match act {
        Some(Activation::Silu) => d.extend(["GATED", "SILU"]),
        Some(Activation::GeluTanh) => d.extend(["GATED", "GELU_TANH"]),
        None => {}
    }
    if pair {
        d.push("PAIR");
    }
    let d: &'static [&'static str] = Box::leak(d.into_boxed_slice());
    cache.push((key, d));
    Ok(d)
}

/// Block types whose decode is light enough for more rows per invocation on a class:
/// (class, type, rows). On lavapipe Q8_0 streams at 6.2 GB/s with four rows against 4.8
/// with two, while the 4- to 6-bit types fall to 1.4-2.1 GB/s from 2.2-2.4 (2048 x 1024,
/// `cargo bench --bench matvec` with `HEARTH_MATVEC=64,8,4`).
const MORE_ROWS: [(AdapterClass, GgmlType, u32); 1] = [(AdapterClass::Cpu, GgmlType::Q8_0, 4)];

/// The table's geometry for `gpu` and weights of type `ty`, and whether the row sums may
/// use subgroup shuffles: only when the adapter has subgroups and a row's lanes fit its
/// smallest subgroup.
pub fn geometry(gpu: &Gpu, ty: GgmlType) -> (Geometry, bool) {
    let class = AdapterClass::of(&gpu.info);
    let g = tuning_override().unwrap_or(class_geometry(class, ty));
    let shuffles = gpu.features.subgroups
        && gpu.info.subgroup_min_size >= g.lanes
        && gpu.info.subgroup_min_size.is_power_of_two();
    (g, shuffles)
}

/// Tuning aid: `HEARTH_MATVEC=WORKGROUP,LANES[,ROWS]` overrides the table when it names
/// a geometry the shader is built for.
#[cfg(not(target_arch = "wasm32"))]
fn tuning_override() -> Option<Geometry> {
    let v = std::env::var("HEARTH_MATVEC").ok()?;
    let mut n = v.split(',').map(|s| s.trim().parse::<u32>());
    let g = Geometry {
        workgroup: n.next()?.ok()?,
        lanes: n.next()?.ok()?,
        rows: n.next().unwrap_or(Ok(1)).ok()?,
    };
    let ok = defines_for(g, None, false).is_ok()
        && g.lanes <= g.workgroup
        && g.workgroup.is_multiple_of(g.lanes);
    ok.then_some(g)
}

/// The browser has no environment to tune from.
#[cfg(target_arch = "wasm32")]
fn tuning_override() -> Option<Geometry> {
    None
}

/// The table's geometry of `class` for weights of type `ty`.
pub fn class_geometry(class: AdapterClass, ty: GgmlType) -> Geometry {
    let mut g = TABLE
        .iter()
        .find(|(c, _)| *c == class)
        .map(|(_, g)| *g)
        .unwrap_or(TABLE[TABLE.len() - 1].1);
    if let Some((_, _, rows)) = MORE_ROWS.iter().find(|(c, t, _)| *c == class && *t == ty) {
        g.rows = *rows;
    }
    g
}

/// Every matvec variant of `ty` the table can ask for, with and without subgroups.
pub(crate) fn variants(ty: GgmlType) -> Vec<crate::gpu::PipelineKey> {
    let mut v = Vec::new();
    let geos = TABLE.iter().map(|(c, _)| class_geometry(*c, ty));
    for (g, sg) in geos.flat_map(|g| [(g, false), (g, true)]) {
        for (act, pair) in EPILOGUES.into_iter().flat_map(|a| [(a, false), (a, true)]) {
            if let Ok(d) = defines_for(g, act, pair) {
                let key = super::weight_key("matvec", ty, sg, g.workgroup, d);
                if !v.contains(&key) {
                    v.push(key);
                }
            }
        }
    }
    v
}

params! {
    @binding(3)
    pub(crate) struct Params {
        rows: u32,
        k: u32,
        row_words: u32,
        row_offset: u32,
        x_offset: u32,
        y_offset: u32,
        _pad: [u32; 2],
    }
}

/// `y[y.offset + r] = sum_k W[r, k] * x[x.offset + k]` for every row r of W.
pub struct MatVec {
    /// One dispatch per shard of W.
    pub dispatches: Vec<Dispatch>,
}

impl MatVec {
    /// Builds the dispatches with the adapter's geometry; `x` must hold `w.cols` values
    /// and `y` `w.rows`.
    pub fn new(gpu: &Gpu, w: &GpuTensor, x: View, y: View) -> Result<Self, GpuError> {
        Self::with_geometry(gpu, w, x, y, geometry(gpu, w.ty), None)
    }

    /// The up projection of a gated FFN with the activation as its epilogue: `y` holds
    /// the gate projection, and row r becomes `y[r] = act(y[r]) * (W x)[r]`.
    pub fn gated(
        gpu: &Gpu,
        w: &GpuTensor,
        x: View,
        gate: View,
        act: Activation,
    ) -> Result<Self, GpuError> {
        Self::with_geometry(gpu, w, x, gate, geometry(gpu, w.ty), Some(act))
    }

    /// A gated FFN's gate and up projections in one dispatch: `w` holds the gate's rows
    /// then the up's (a [`GpuTensor::joined`] pair, one shard), and row r of `y` becomes
    /// `act(gate x)[r] * (up x)[r]`. x is read once for both.
    pub fn gated_pair(
        gpu: &Gpu,
        w: &GpuTensor,
        x: View,
        y: View,
        act: Activation,
    ) -> Result<Self, GpuError> {
        Self::build(gpu, w, x, y, geometry(gpu, w.ty), Some(act), true)
    }

    /// `gated_pair` with a given geometry (for tests).
    pub fn pair_with_geometry(
        gpu: &Gpu,
        w: &GpuTensor,
        x: View,
        y: View,
        geo: (Geometry, bool),
        act: Activation,
    ) -> Result<Self, GpuError> {
        Self::build(gpu, w, x, y, geo, Some(act), true)
    }

    /// `new` (or `gated`, with `act`) with a given geometry (tests run every table
    /// entry); `shuffles` asks for the subgroup form, which needs `g.lanes` to divide the
    /// adapter's subgroups.
    pub fn with_geometry(
        gpu: &Gpu,
        w: &GpuTensor,
        x: View,
        y: View,
        geo: (Geometry, bool),
        act: Option<Activation>,
    ) -> Result<Self, GpuError> {
        Self::build(gpu, w, x, y, geo, act, false)
    }

    fn build(
        gpu: &Gpu,
        w: &GpuTensor,
        x: View,
        y: View,
        (g, shuffles): (Geometry, bool),
        act: Option<Activation>,
        pair: bool,
    ) -> Result<Self, GpuError> {
        if !g.lanes.is_power_of_two() || !g.workgroup.is_multiple_of(g.lanes) {
            return Err(GpuError::Runtime(format!(
                "matvec: {} lanes per row in workgroups of {}",
                g.lanes, g.workgroup
            )));
        }
        if pair && (w.shards.len() != 1 || !w.rows.is_multiple_of(2)) {
            return Err(GpuError::Runtime(format!(
                "matvec {}: a gate/up pair must be one shard of an even number of rows",
                w.name
            )));
        }
        let out_rows = if pair { w.rows / 2 } else { w.rows };
        x.check("matvec input", w.cols)?;
        y.check("matvec output", out_rows)?;
        let (k, row_words) = (to_u32("k", w.cols)?, to_u32("row words", w.row_words)?);
        let (xo, yo) = (to_u32("x offset", x.offset)?, to_u32("y offset", y.offset)?);
        // Block types read x as vec4 words (their rows are whole blocks of 32 or more).
        if !w.ty.is_float() && !xo.is_multiple_of(4) {
            return Err(GpuError::Runtime(format!(
                "matvec {}: input offset {xo} is not a multiple of 4",
                w.name
            )));
        }
        let rows_per_wg = (g.workgroup / g.lanes * g.rows) as u64;
        let kernel = WeightKernel {
            op: "matvec",
            subgroups: shuffles,
            workgroup: g.workgroup,
            defines: defines_for(g, act, pair)?,
            inputs: [x.buffer, y.buffer],
            step: None,
            // The weights, x and y each once.
            cost: |w, rows| {
                let io = (w.cols as f64 + rows) * 4.0;
                (
                    Work {
                        c: weight_bytes(w, rows) + io,
                        ..Work::default()
                    },
                    Work {
                        c: 2.0 * rows * w.cols as f64,
                        ..Work::default()
                    },
                )
            },
        };
        let dispatches = weight_dispatches(gpu, &kernel, w, |start, rows| {
            // A pair's shard holds both projections; the rows out are half of it.
            let rows = if pair { rows / 2 } else { rows };
            let p = Params {
                rows: rows as u32,
                k,
                row_words,
                row_offset: start as u32,
                x_offset: xo,
                y_offset: yo,
                _pad: [0; 2],
            };
            let (gx, gy) = grid(gpu, rows.div_ceil(rows_per_wg) as u32);
            (p, (gx, gy, 1))
        })?;
        Ok(Self { dispatches })
    }
}

/// CPU twin: `y[r] = sum_k w[r * cols + k] * x[k]` over dequantized weights, in f64.
pub fn cpu(w: &[f32], cols: usize, x: &[f32]) -> Vec<f32> {
    w.chunks_exact(cols)
        .map(|row| {
            row.iter()
                .zip(x)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

impl super::Op for MatVec {
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_a_buildable_geometry() {
        for (class, g) in TABLE {
            assert!(
                g.lanes.is_power_of_two() && g.workgroup.is_multiple_of(g.lanes),
                "{class:?}"
            );
            assert!((64..=256).contains(&g.workgroup), "{class:?}");
            assert!(defines_for(g, None, false).is_ok(), "{class:?}");
        }
        for (class, ty, _) in MORE_ROWS {
            assert!(
                defines_for(class_geometry(class, ty), None, false).is_ok(),
                "{class:?} {ty}"
            );
        }
    }
}
