//! 2-D convolution on flex as im2col + one gemm per image, with both
//! gradients, a burn backend extension.
//!
//! burn-flex 0.22 convolves through NHWC copies and tiled im2col; its weight
//! gradient is burn's generic one (a convolution of the batch-transposed
//! input with the batch-transposed output gradient, whose "kernel" is the
//! whole feature map), which measured 4x slower than PyTorch's on the
//! quickstart's layers (docs/benchmarks.md, "Flex convolution"). Here each
//! image is unrolled once into its patch matrix `cols` (`[cin*kh*kw, ho*wo]`,
//! the image's NCHW layout kept) and
//!
//! - forward: `y_n = W · cols_n` (`[cout, ho*wo]`, already NCHW);
//! - weight gradient: `dW = Σ_n dy_n · cols_nᵀ`, each worker accumulating its
//!   images into its own `dW`, the workers' sums added at the end;
//! - input gradient: at stride 1 the forward above applied to `dy` with the
//!   kernel transposed and flipped; otherwise `dx_n = col2im(Wᵀ · dy_n)`.
//!
//! Where an image's output is small (the late stages: 6x6, 3x3), several
//! images' patch matrices sit side by side so each gemm stays wide.
//!
//! Images run in parallel (rayon), each gemm single-threaded. Grouped
//! convolutions take burn's path.
//!
//! On LibTorch the forward is libtorch's convolution and the backward is
//! libtorch's own convolution backward (oneDNN on the CPU, cuDNN on CUDA),
//! the kernels PyTorch's autograd runs. burn's generic gradients (above)
//! measured 1.17-1.51x the time of libtorch's per layer on ResNet-18's
//! shapes (docs/benchmarks.md, "libtorch's own gradients through its
//! autograd tape"; scripts/reference/conv_gradients.py). tch 0.22 does
//! not expose `convolution_backward`; `fused/native.rs`
//! calls it.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, ExtensionType, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;

use super::{Fused, contiguous_f32, flex_tensor, values};
use crate::fused;

/// The extension: the forward, and the two gradients of a bias-free 2-D
/// convolution (`x`: `[n, cin, h, w]`, `weight`: `[cout, cin/groups, kh, kw]`).
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait ConvOps: Backend {
    fn conv2d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;

    fn conv2d_gemm_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    fn conv2d_gemm_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The gradients `needs` asks for (of `x`, of `weight`). By default
    /// each from its own backward operation.
    fn conv2d_gemm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        needs: [bool; 2],
    ) -> ConvGrads<Self> {
        let dw = needs[1].then(|| Self::conv2d_gemm_weight_backward(x.clone(), weight.clone(), grad.clone(), options.clone()));
        let dx = needs[0].then(|| Self::conv2d_gemm_x_backward(x, weight, grad, options));
        ConvGrads::from_parts(dx, dw)
    }
}

/// The gradients a convolution's backward was asked for.
#[derive(Debug, ExtensionType)]
pub enum ConvGrads<B: Backend> {
    Input { x: FloatTensor<B> },
    Weight { weight: FloatTensor<B> },
    Both { x: FloatTensor<B>, weight: FloatTensor<B> },
}

impl<B: Backend> ConvGrads<B> {
    fn from_parts(x: Option<FloatTensor<B>>, weight: Option<FloatTensor<B>>) -> Self {
        match (x, weight) {
            (Some(x), Some(weight)) => ConvGrads::Both { x, weight },
            (Some(x), None) => ConvGrads::Input { x },
            (None, Some(weight)) => ConvGrads::Weight { weight },
            (None, None) => unreachable!("a tracked convolution has an operand that needs a gradient"),
        }
    }

    fn into_parts(self) -> (Option<FloatTensor<B>>, Option<FloatTensor<B>>) {
        match self {
            ConvGrads::Both { x, weight } => (Some(x), Some(weight)),
            ConvGrads::Input { x } => (Some(x), None),
            ConvGrads::Weight { weight } => (None, Some(weight)),
        }
    }
}

/// `conv` applied to `x`: through the extension on flex (unless switched
/// off), burn's convolution elsewhere.
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    // "Same" padding (unused by the backbones) stays on burn's path.
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => return conv.forward(x),
    };
    if conv.bias.is_some() {
        return conv.forward(x);
    }
    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
    conv2d(x, conv.weight.val(), options)
}

/// `x` convolved with `weight` (no bias) in the active precision
/// ([`crate::precision`]): through the extension (unless switched off, or
/// see [`routed`]), burn's convolution otherwise.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, options: ConvOptions<2>) -> Tensor<4> {
    crate::precision::conv2d(x, weight, options, |x, weight, options| {
        if !routed(&x, &options) {
            return burn::tensor::module::conv2d(x, weight, None, options);
        }
        Tensor::<4>::from_dispatch(<Dispatch as ConvOps>::conv2d_gemm(x.into_dispatch(), weight.into_dispatch(), options))
    })
}

/// Whether this convolution takes the extension while [`Fused::Conv`] is
/// on: on flex in fp32 (the kernel is fp32 only); on libtorch with
/// symmetric padding (libtorch's convolution has no other).
fn routed(x: &Tensor<4>, options: &ConvOptions<2>) -> bool {
    if !fused::enabled(Fused::Conv) {
        return false;
    }
    if x.device().inner() == Device::flex() {
        x.dtype() == burn::tensor::DType::F32
    } else {
        !options.is_asymmetric()
    }
}

// ---------------------------------------------------------------- flex ----

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    fn new(x: &[usize], weight: &[usize], options: &ConvOptions<2>) -> Geometry {
        let out = |size: usize, k: usize, d: usize| {
            let (begin, end) = options.padding[d];
            (size + begin + end - options.dilation[d] * (k - 1) - 1) / options.stride[d] + 1
        };
        Geometry {
            n: x[0],
            cin: x[1],
            h: x[2],
            w: x[3],
            cout: weight[0],
            kh: weight[2],
            kw: weight[3],
            ho: out(x[2], weight[2], 0),
            wo: out(x[3], weight[3], 1),
            stride: options.stride,
            pad: options.padding_begin(),
            dilation: options.dilation,
        }
    }

    /// Rows of the patch matrix (`cin * kh * kw`, the gemm's inner size).
    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Output positions per image (`ho * wo`).
    fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// Whether an image is its own patch matrix (1x1, stride 1, no padding).
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.pad == [0, 0]
    }

    /// The input column read by output column `o` at kernel offset `k` along
    /// axis `d`, if inside the image.
    fn source(&self, d: usize, o: usize, k: usize, size: usize) -> Option<usize> {
        (o * self.stride[d] + k * self.dilation[d]).checked_sub(self.pad[d]).filter(|&i| i < size)
    }

    /// The output columns `lo..hi` whose input column at kernel offset `kx`
    /// lies inside the image (the rest read padding).
    fn valid_columns(&self, kx: usize) -> (usize, usize) {
        let (s, offset) = (self.stride[1], kx * self.dilation[1]);
        let lo = self.pad[1].saturating_sub(offset).div_ceil(s).min(self.wo);
        // ox * s + offset - pad < w  <=>  ox < (w + pad - offset) / s, rounded up.
        let hi = (self.w + self.pad[1]).saturating_sub(offset).div_ceil(s).min(self.wo);
        (lo, hi.max(lo))
    }

    /// Unroll `image` (`[cin, h, w]`) into the patch matrix whose row `r`
    /// starts at `cols[r * row_stride]` (`[k, p]` when `row_stride == p`; a
    /// wider stride places several images side by side).
    fn im2col(&self, image: &[f32], cols: &mut [f32], row_stride: usize) {
        let (p, s) = (self.p(), self.stride[1]);
        let mut row = 0;
        for c in 0..self.cin {
            let plane = &image[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let (lo, hi) = self.valid_columns(kx);
                    let dst = &mut cols[row * row_stride..][..p];
                    if self.is_same_size_stride_one() {
                        self.shifted_rows(plane, ky, kx, (lo, hi), dst);
                        row += 1;
                        continue;
                    }
                    for oy in 0..self.ho {
                        let line = &mut dst[oy * self.wo..(oy + 1) * self.wo];
                        let Some(iy) = self.source(0, oy, ky, self.h) else {
                            line.fill(0.0);
                            continue;
                        };
                        line[..lo].fill(0.0);
                        line[hi..].fill(0.0);
                        if lo < hi {
                            let first = lo * s + kx * self.dilation[1] - self.pad[1];
                            let src = &plane[iy * self.w + first..];
                            if s == 1 {
                                line[lo..hi].copy_from_slice(&src[..hi - lo]);
                            } else {
                                for (v, &x) in line[lo..hi].iter_mut().zip(src.iter().step_by(s)) {
                                    *v = x;
                                }
                            }
                        }
                    }
                    row += 1;
                }
            }
        }
    }

    /// Stride 1, no dilation, output as wide as the input (the 3x3 "same"
    /// convolutions): each patch row is the plane shifted by the kernel
    /// offset, copied as one block.
    fn is_same_size_stride_one(&self) -> bool {
        self.stride == [1, 1] && self.dilation == [1, 1] && self.wo == self.w
    }

    /// One patch row (kernel offset `ky`, `kx`) of a [`Self::is_same_size_stride_one`]
    /// convolution: the valid output rows copied from the plane in one block
    /// shifted by `kx - pad`, then the columns `lo..hi` does not cover (the
    /// padding, and what the shift wrapped in from neighbouring rows) zeroed.
    fn shifted_rows(&self, plane: &[f32], ky: usize, kx: usize, (lo, hi): (usize, usize), dst: &mut [f32]) {
        let inside = |oy: &usize| self.source(0, *oy, ky, self.h).is_some();
        let (Some(first), Some(last)) = ((0..self.ho).find(inside), (0..self.ho).rev().find(inside)) else {
            dst.fill(0.0);
            return;
        };
        dst[..first * self.wo].fill(0.0);
        dst[(last + 1) * self.wo..].fill(0.0);
        let iy = first + ky - self.pad[0];
        let src_start = (iy * self.w) as isize + kx as isize - self.pad[1] as isize;
        let len = (last + 1 - first) * self.wo;
        let j_lo = (-src_start).max(0) as usize;
        let j_hi = len.min((plane.len() as isize - src_start).max(0) as usize);
        if j_lo < j_hi {
            let from = (src_start + j_lo as isize) as usize;
            dst[first * self.wo + j_lo..first * self.wo + j_hi].copy_from_slice(&plane[from..from + j_hi - j_lo]);
        }
        for oy in first..=last {
            let line = &mut dst[oy * self.wo..(oy + 1) * self.wo];
            line[..lo].fill(0.0);
            line[hi..].fill(0.0);
        }
    }

    /// Add the patch matrix rows (row `r` at `cols[r * row_stride]`, as
    /// [`Self::im2col`] lays them out) back onto `image` (`[cin, h, w]`, zeroed
    /// first): im2col's adjoint.
    fn col2im(&self, cols: &[f32], row_stride: usize, image: &mut [f32]) {
        image.fill(0.0);
        let (p, s) = (self.p(), self.stride[1]);
        let mut row = 0;
        for c in 0..self.cin {
            let plane = &mut image[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let (lo, hi) = self.valid_columns(kx);
                    let src = &cols[row * row_stride..][..p];
                    row += 1;
                    if lo == hi {
                        continue;
                    }
                    let first = lo * s + kx * self.dilation[1] - self.pad[1];
                    for oy in 0..self.ho {
                        let Some(iy) = self.source(0, oy, ky, self.h) else { continue };
                        let line = &src[oy * self.wo + lo..oy * self.wo + hi];
                        let dst = plane[iy * self.w + first..].iter_mut().step_by(s);
                        for (d, &v) in dst.zip(line) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }

    /// At stride 1 the input gradient is itself a convolution: of the output
    /// gradient with the kernel transposed and flipped, padded by
    /// `dilation * (k - 1) - padding` (the forward's fast path, and a wide
    /// gemm, where `col2im(Wᵀ · dy)` has only `cout` terms per product).
    fn as_transposed_convolution(&self, options: &ConvOptions<2>) -> Option<ConvOptions<2>> {
        let reach = [self.dilation[0] * (self.kh - 1), self.dilation[1] * (self.kw - 1)];
        let flip = |d: usize| {
            let (begin, end) = options.padding[d];
            Some((reach[d].checked_sub(begin)?, reach[d].checked_sub(end)?))
        };
        if self.stride != [1, 1] {
            return None;
        }
        Some(ConvOptions::new_with_padding([1, 1], [flip(0)?, flip(1)?], self.dilation, 1))
    }

    /// Images per gemm: one when an image's output is large enough to keep
    /// the gemm efficient (its result is then written in place), else enough
    /// images side by side for about 512 output columns.
    fn images_per_gemm(&self) -> usize {
        (512 / self.p().max(1)).clamp(1, 64)
    }

    /// Images per parallel task: a few tasks per worker, so the patch
    /// buffers are allocated once per task and the load still balances; a
    /// multiple of [`Self::images_per_gemm`].
    fn images_per_task(&self) -> usize {
        let group = self.images_per_gemm();
        let tasks = rayon::current_num_threads() * 4;
        self.n.div_ceil(tasks).div_ceil(group).max(1) * group
    }

    /// The patch matrix of `images` (consecutive `[cin, h, w]` images) side
    /// by side: `[k, images * p]`, in `cols`.
    fn patches<'a>(&self, images: &'a [f32], count: usize, cols: &'a mut Vec<f32>) -> &'a [f32] {
        if self.is_pointwise() && count == 1 {
            return images;
        }
        let (k, p, image) = (self.k(), self.p(), self.cin * self.h * self.w);
        cols.resize(k * count * p, 0.0);
        for i in 0..count {
            self.im2col(&images[i * image..][..image], &mut cols[i * p..], count * p);
        }
        cols
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, each operand given by its row and
/// column strides (elements), single-threaded (images are the parallel axis).
#[allow(clippy::too_many_arguments)]
fn gemm(
    (m, k, n): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    if m == 0 || n == 0 || k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    assert!(dst.len() >= m * n && lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs && rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the bounds above hold every index the strides reach; dst does
    // not alias lhs or rhs (a &mut and two & borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `weight` (`[cout, cin, kh, kw]`) as the kernel of the input gradient's
/// convolution: `[cin, cout, kh, kw]`, each kernel turned by 180 degrees.
fn flipped(weight: FloatTensor<Flex>, g: &Geometry) -> FloatTensor<Flex> {
    let weight = contiguous_f32(weight);
    let weight = values(&weight);
    let taps = g.kh * g.kw;
    let mut out = vec![0.0f32; weight.len()];
    for co in 0..g.cout {
        for ci in 0..g.cin {
            let src = &weight[(co * g.cin + ci) * taps..][..taps];
            let dst = &mut out[(ci * g.cout + co) * taps..][..taps];
            dst.iter_mut().zip(src.iter().rev()).for_each(|(d, &v)| *d = v);
        }
    }
    flex_tensor(out, vec![g.cin, g.cout, g.kh, g.kw])
}

/// `count` NCHW images of `channels` planes of `p` values each, side by
/// side as one `[channels, count * p]` matrix in `wide`.
fn side_by_side<'a>(images: &[f32], count: usize, channels: usize, p: usize, wide: &'a mut Vec<f32>) -> &'a [f32] {
    wide.resize(channels * count * p, 0.0);
    for (i, image) in images.chunks(channels * p).enumerate() {
        for (c, plane) in image.chunks(p).enumerate() {
            wide[(c * count + i) * p..][..p].copy_from_slice(plane);
        }
    }
    wide
}

/// [`side_by_side`]'s inverse: the `[channels, count * p]` matrix `wide`
/// back to `count` NCHW images in `images`.
fn apart(wide: &[f32], count: usize, channels: usize, p: usize, images: &mut [f32]) {
    for (i, image) in images.chunks_mut(channels * p).enumerate() {
        for (c, plane) in image.chunks_mut(p).enumerate() {
            plane.copy_from_slice(&wide[(c * count + i) * p..][..p]);
        }
    }
}

/// Whether the gemm path handles `options` (everything but groups).
fn supported(options: &ConvOptions<2>) -> bool {
    options.groups == 1
}

impl ConvOps for Flex {
    fn conv2d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        if !supported(&options) {
            return Flex::conv2d(x, weight, None, options);
        }
        let g = Geometry::new(&x.shape().to_vec(), &weight.shape().to_vec(), &options);
        let (x, weight) = (contiguous_f32(x), contiguous_f32(weight));
        let (x, weight) = (values(&x), values(&weight));
        let (k, p, image, out_image) = (g.k(), g.p(), g.cin * g.h * g.w, g.cout * g.p());
        let (per_task, per_gemm) = (g.images_per_task(), g.images_per_gemm());
        let mut out = vec![0.0f32; g.n * out_image];
        out.par_chunks_mut(per_task * out_image).enumerate().for_each(|(task, dst)| {
            let (mut cols, mut wide) = (Vec::new(), Vec::new());
            let images = dst.len() / out_image;
            for start in (0..images).step_by(per_gemm) {
                let count = per_gemm.min(images - start);
                let patches = g.patches(&x[(task * per_task + start) * image..][..count * image], count, &mut cols);
                let y = &mut dst[start * out_image..][..count * out_image];
                if count == 1 {
                    gemm((g.cout, k, p), y, false, weight, (k, 1), patches, (p, 1));
                    continue;
                }
                wide.resize(g.cout * count * p, 0.0);
                gemm((g.cout, k, count * p), &mut wide, false, weight, (k, 1), patches, (count * p, 1));
                apart(&wide, count, g.cout, p, y);
            }
        });
        flex_tensor(out, vec![g.n, g.cout, g.ho, g.wo])
    }

    fn conv2d_gemm_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        if !supported(&options) {
            return Flex::conv2d_x_backward(x, weight, grad, options);
        }
        let g = Geometry::new(&x.shape().to_vec(), &weight.shape().to_vec(), &options);
        if let Some(transposed) = g.as_transposed_convolution(&options) {
            return Flex::conv2d_gemm(grad, flipped(weight, &g), transposed);
        }
        let (weight, grad) = (contiguous_f32(weight), contiguous_f32(grad));
        let (weight, grad) = (values(&weight), values(&grad));
        let (k, p, image, out_image) = (g.k(), g.p(), g.cin * g.h * g.w, g.cout * g.p());
        let (per_task, per_gemm) = (g.images_per_task(), g.images_per_gemm());
        let mut dx = vec![0.0f32; g.n * image];
        dx.par_chunks_mut(per_task * image).enumerate().for_each(|(task, dst)| {
            let (mut cols, mut wide) = (Vec::new(), Vec::new());
            let images = dst.len() / image;
            for start in (0..images).step_by(per_gemm) {
                let count = per_gemm.min(images - start);
                let width = count * p;
                let dy = &grad[(task * per_task + start) * out_image..][..count * out_image];
                let dy = if count == 1 { dy } else { side_by_side(dy, count, g.cout, p, &mut wide) };
                // Wᵀ (`[k, cout]`, the weight read column-major) · dy: the patch gradients.
                cols.resize(k * width, 0.0);
                gemm((k, g.cout, width), &mut cols, false, weight, (1, k), dy, (width, 1));
                for (i, dx_i) in dst[start * image..][..count * image].chunks_mut(image).enumerate() {
                    g.col2im(&cols[i * p..], width, dx_i);
                }
            }
        });
        flex_tensor(dx, vec![g.n, g.cin, g.h, g.w])
    }

    fn conv2d_gemm_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        if !supported(&options) {
            return Flex::conv2d_weight_backward(x, weight, grad, options);
        }
        let g = Geometry::new(&x.shape().to_vec(), &weight.shape().to_vec(), &options);
        let (x, grad) = (contiguous_f32(x), contiguous_f32(grad));
        let (x, grad) = (values(&x), values(&grad));
        let (k, p, image, out_image) = (g.k(), g.p(), g.cin * g.h * g.w, g.cout * g.p());
        let (per_task, per_gemm) = (g.images_per_task(), g.images_per_gemm());
        let tasks: Vec<usize> = (0..g.n.div_ceil(per_task)).collect();
        // Each task sums its images' dy · patchesᵀ into its own [cout, k].
        let partial: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&task| {
                let mut dw = vec![0.0f32; g.cout * k];
                let (mut cols, mut wide) = (Vec::new(), Vec::new());
                let first = task * per_task;
                let images = per_task.min(g.n - first);
                for start in (0..images).step_by(per_gemm) {
                    let count = per_gemm.min(images - start);
                    let patches = g.patches(&x[(first + start) * image..][..count * image], count, &mut cols);
                    let dy = &grad[(first + start) * out_image..][..count * out_image];
                    let dy = if count == 1 { dy } else { side_by_side(dy, count, g.cout, p, &mut wide) };
                    // The patches transposed: [count * p, k], read column-major.
                    let width = count * p;
                    gemm((g.cout, width, k), &mut dw, start > 0, dy, (width, 1), patches, (1, width));
                }
                dw
            })
            .collect();
        let mut dw = vec![0.0f32; g.cout * k];
        for part in &partial {
            dw.iter_mut().zip(part).for_each(|(a, b)| *a += b);
        }
        flex_tensor(dw, vec![g.cout, g.cin, g.kh, g.kw])
    }
}

// ------------------------------------------------------------- libtorch ----

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated after 0.22; it is still the libtorch (CUDA) path here
mod libtorch {
    use super::*;
    use crate::fused::native;
    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;

    /// libtorch's own convolution and gradients (oneDNN / cuDNN).
    impl ConvOps for LibTorch {
        fn conv2d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
            LibTorch::conv2d(x, weight, None, options)
        }

        fn conv2d_gemm_x_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            options: ConvOptions<2>,
        ) -> FloatTensor<Self> {
            LibTorch::conv2d_x_backward(x, weight, grad, options)
        }

        fn conv2d_gemm_weight_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            options: ConvOptions<2>,
        ) -> FloatTensor<Self> {
            LibTorch::conv2d_weight_backward(x, weight, grad, options)
        }

        /// libtorch's `convolution_backward`, computing only the gradients asked for.
        fn conv2d_gemm_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            options: ConvOptions<2>,
            needs: [bool; 2],
        ) -> ConvGrads<Self> {
            let (dx, dw) = native::convolution_backward(
                &grad.tensor.to_kind(x.tensor.kind()),
                &x.tensor,
                &weight.tensor,
                options.stride.map(|i| i as i64),
                options.padding_begin().map(|i| i as i64),
                options.dilation.map(|i| i as i64),
                options.groups as i64,
                needs,
            );
            ConvGrads::from_parts(dx.map(TchTensor::new), dw.map(TchTensor::new))
        }
    }
}

// ------------------------------------------------------------- autodiff ----

#[derive(Debug)]
struct ConvBackward;

impl<B: Backend + ConvOps> Backward<B, 2> for ConvBackward {
    /// `(x, weight, options)` of the forward.
    type State = (FloatTensor<B>, FloatTensor<B>, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, options) = ops.state;
        let needs = [node_x.is_some(), node_weight.is_some()];
        let (dx, dw) = B::conv2d_gemm_backward(x, weight, grad, options, needs).into_parts();
        if let (Some(node), Some(dw)) = (node_weight, dw) {
            grads.register::<B>(node.id, dw);
        }
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<B>(node.id, dx);
        }
    }
}

impl<B: Backend + ConvOps, C: CheckpointStrategy> ConvOps for Autodiff<B, C> {
    fn conv2d_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node()];
        let (x, weight) = (x.into_primitive(), weight.into_primitive());
        match ConvBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::conv2d_gemm(x.clone(), weight.clone(), options.clone());
                prep.finish((x, weight, options), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_gemm(x, weight, options)),
        }
    }

    /// Gradients of the gradients are not tracked (no double backward).
    fn conv2d_gemm_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let dx = B::conv2d_gemm_x_backward(x.into_primitive(), weight.into_primitive(), grad.into_primitive(), options);
        FloatTensor::<Self>::new(dx)
    }

    fn conv2d_gemm_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let dw = B::conv2d_gemm_weight_backward(x.into_primitive(), weight.into_primitive(), grad.into_primitive(), options);
        FloatTensor::<Self>::new(dw)
    }
}

/// Output and gradients of [`conv2d`] against burn's convolution on
/// `device` (an autodiff device), for the shapes the backbones use (3x3 and
/// 1x1, stride 1 and 2) and the odd ones (7x7 stem, asymmetric padding,
/// dilation), with both operands tracked, only the weight (a first layer's
/// input) and only the input (a frozen layer). Panics naming the case.
pub fn assert_matches_burns_convolution(device: &Device) {
    use burn::tensor::{Distribution, Tolerance};
    device.seed(5);
    // (n, cin, cout, size, kernel, stride, padding (begin, end), dilation)
    let cases = [
        (3, 4, 6, 9, 3, 1, (1, 1), 1),
        (2, 5, 3, 8, 3, 2, (1, 1), 1),
        (3, 4, 7, 8, 1, 2, (0, 0), 1),
        (2, 6, 5, 5, 1, 1, (0, 0), 1),
        (2, 3, 4, 15, 7, 2, (3, 3), 1),
        (2, 3, 4, 10, 3, 2, (0, 1), 1),
        (2, 3, 2, 9, 3, 1, (2, 2), 2),
        (2, 2, 3, 24, 3, 1, (1, 1), 1),
    ];
    for (i, (n, cin, cout, size, k, s, pad, d)) in cases.into_iter().enumerate() {
        let (x_tracked, w_tracked) = [(true, true), (false, true), (true, false)][i % 3];
        let case = format!("{device:?}: n{n} {cin}->{cout} {size}px k{k} s{s} pad{pad:?} d{d}, x tracked {x_tracked}, weight tracked {w_tracked}");
        let track = |t: Tensor<4>, on: bool| if on { t.require_grad() } else { t };
        let x = track(Tensor::<4>::random([n, cin, size, size], Distribution::Normal(0.0, 1.0), device), x_tracked);
        let w = track(Tensor::<4>::random([cout, cin, k, k], Distribution::Normal(0.0, 0.5), device), w_tracked);
        let options = ConvOptions::new_with_padding([s, s], [pad, pad], [d, d], 1);
        // Every case but the asymmetric padding off flex goes through the extension.
        let expected = fused::enabled(Fused::Conv) && (device.clone().inner() == Device::flex() || !options.is_asymmetric());
        assert_eq!(routed(&x, &options), expected, "{case}: routed through the extension");
        let ours = conv2d(x.clone(), w.clone(), options.clone());
        let burns = burn::tensor::module::conv2d(x.clone(), w.clone(), None, options);
        assert_eq!(ours.dims(), burns.dims(), "{case}: output shape");
        let close = |what: &str, a: TensorData, b: TensorData, tolerance: f64| {
            if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                a.assert_approx_eq::<f32>(&b, Tolerance::absolute(tolerance))
            })) {
                let message = e.downcast_ref::<String>().cloned().unwrap_or_default();
                panic!("{case}: {what} differs from burn's: {message}");
            }
        };
        close("the output", ours.clone().into_data(), burns.clone().into_data(), 1e-4);
        let upstream = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), device);
        let g_ours = (ours * upstream.clone()).sum().backward();
        let g_burns = (burns * upstream).sum().backward();
        let grad = |t: &Tensor<4>, g| t.grad(g).map(|t| t.into_data());
        for (what, t, tracked, tolerance) in [("the input gradient", &x, x_tracked, 1e-4), ("the weight gradient", &w, w_tracked, 1e-3)] {
            match (grad(t, &g_ours), grad(t, &g_burns)) {
                (Some(a), Some(b)) => close(what, a, b, tolerance),
                (None, None) if !tracked => {}
                (a, b) => panic!("{case}: {what}: ours present {}, burn's present {}", a.is_some(), b.is_some()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_burns_convolution_on_flex() {
        assert_matches_burns_convolution(&Device::flex().autodiff());
    }

    /// Flex devices, with and without autodiff, take the extension in fp32
    /// while it is on (the switch itself is process-wide, so not flipped here).
    #[test]
    fn flex_fp32_convolutions_take_the_extension_while_it_is_on() {
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        for device in [Device::flex().autodiff(), Device::flex()] {
            let x = Tensor::<4>::zeros([1, 1, 3, 3], &device);
            assert!(routed(&x, &options) || !fused::enabled(Fused::Conv));
            assert!(!routed(&x.cast(burn::tensor::FloatDType::BF16), &options));
        }
    }
}
