//! The batch of views, one type from the pipeline to the method: two
//! augmented views of the same images with the [`AugmentationRecord`] of
//! every view, the earlier stages' pairs of expanded views, the
//! amortised-invariance setting they were made for, and a black pixel in
//! their units. [`Pipeline::two_views`](crate::augment::Pipeline::two_views)
//! makes it on the host (`ViewBatch<Vec<f32>>`, pixels channel-major); the
//! trainer normalises it and moves it to the device (`ViewBatch`, pixels
//! as `Tensor<4>`), where every method reads it.

use burn::prelude::*;

use crate::record::{AugmentationRecord, DescriptorSchema};

/// Two augmented views of the same images, with the record of every view.
/// `P` is how pixels are held: `Tensor<4>` `[n, 3, side, side]` on the
/// device (the default), or `Vec<f32>` of the same layout on the host.
#[derive(Clone, Debug)]
pub struct ViewBatch<P = Tensor<4>> {
    /// Image side in pixels.
    pub side: usize,
    pub views: [P; 2],
    pub records: [Vec<AugmentationRecord>; 2],
    /// With `augment.stages` (expanded views), the view pairs of the stages
    /// before the last, stage 1 first; `views` is the last stage. Else empty.
    pub stages: Vec<StageViews<P>>,
    /// Amortised invariance (`model.invariance`): the setting `[k]` these
    /// views were made for (each entry 0 or 1), which the backbone
    /// generates its weights from.
    pub invariance: Option<Vec<f32>>,
    /// A black pixel in the views' units, per channel: 0 before
    /// normalisation, `-mean/std` after. What a warp shows outside its source.
    pub black: [f32; 3],
    /// E-SSL's rotated views, made when the method reads the `rotation` key
    /// ([`crate::augment::Pipeline::rotation_side`]); else `None`.
    pub rotated: Option<RotatedViews<P>>,
    /// Every image unaugmented at the views' side, `[n, 3, side, side]`
    /// (records: the identity), made when the method asks for them
    /// ([`crate::augment::Pipeline::originals`], EquiMod); else `None`.
    pub originals: Option<P>,
}

/// One small view of every image, in each of the four rotations: `4n`
/// images `[4n, 3, side, side]`, all images at 0 degrees first, then 90,
/// 180 and 270 (counter-clockwise), the rotation in each record.
#[derive(Clone, Debug)]
pub struct RotatedViews<P = Tensor<4>> {
    pub side: usize,
    pub views: P,
    pub records: Vec<AugmentationRecord>,
}

/// The two views of one stage of expanded views.
#[derive(Clone, Debug)]
pub struct StageViews<P = Tensor<4>> {
    pub views: [P; 2],
    pub records: [Vec<AugmentationRecord>; 2],
}

impl<P> ViewBatch<P> {
    pub fn batch_size(&self) -> usize {
        self.records[0].len()
    }
}

impl ViewBatch<Vec<f32>> {
    /// Normalise every view with a dataset's channel statistics.
    pub fn normalised(mut self, mean: [f32; 3], std: [f32; 3]) -> Self {
        let plane = self.side * self.side;
        let stage_views = self.stages.iter_mut().flat_map(|s| s.views.iter_mut());
        for view in self.views.iter_mut().chain(stage_views) {
            normalise_images(view, plane, mean, std);
        }
        if let Some(r) = &mut self.rotated {
            normalise_images(&mut r.views, r.side * r.side, mean, std);
        }
        if let Some(o) = &mut self.originals {
            normalise_images(o, plane, mean, std);
        }
        self.black = std::array::from_fn(|c| (self.black[c] - mean[c]) / std[c]);
        self
    }

    /// The batch on `device`.
    pub fn to_device(self, device: &Device) -> ViewBatch {
        let (n, side) = (self.batch_size(), self.side);
        let tensors = |[a, b]: [Vec<f32>; 2]| [a, b].map(|v| Tensor::<4>::from_data(TensorData::new(v, [n, 3, side, side]), device));
        ViewBatch {
            side,
            views: tensors(self.views),
            records: self.records,
            stages: self.stages.into_iter().map(|s| StageViews { views: tensors(s.views), records: s.records }).collect(),
            invariance: self.invariance,
            black: self.black,
            rotated: self.rotated.map(|r| RotatedViews {
                views: Tensor::<4>::from_data(TensorData::new(r.views, [r.records.len(), 3, r.side, r.side]), device),
                side: r.side,
                records: r.records,
            }),
            originals: self.originals.map(|o| Tensor::<4>::from_data(TensorData::new(o, [n, 3, side, side]), device)),
        }
    }
}

impl ViewBatch {
    pub fn device(&self) -> Device {
        self.views[0].device()
    }

    /// The invariance setting as the backbone takes it.
    pub fn invariance_vector(&self) -> Option<Tensor<1>> {
        self.invariance.as_ref().map(|v| Tensor::<1>::from_floats(v.as_slice(), &self.device()))
    }

    /// Absolute descriptors `[n, schema.dims()]` of view 0 or 1 (CASSLE's input).
    pub fn descriptors(&self, view: usize, schema: &DescriptorSchema) -> Tensor<2> {
        crate::aware::descriptors(&self.records[view], schema, &self.device())
    }

    /// Relative descriptors `[n, schema.dims()]` of view 0 against view 1
    /// (AugSelf's targets).
    pub fn relative(&self, schema: &DescriptorSchema) -> Tensor<2> {
        let n = self.batch_size();
        let rows: Vec<f32> = self.records[0].iter().zip(&self.records[1]).flat_map(|(a, b)| a.relative(b, &schema.keys)).collect();
        Tensor::from_data(TensorData::new(rows, [n, schema.dims()]), &self.device())
    }
}

/// Normalise channel-major images (`[n, 3, side, side]` flattened) in place
/// with a dataset's channel statistics, `(x - mean[c]) / std[c]`: the one
/// place pixels are normalised, for training views and every evaluation
/// alike. `plane` is `side * side`.
pub fn normalise_images(pixels: &mut [f32], plane: usize, mean: [f32; 3], std: [f32; 3]) {
    for img in pixels.chunks_mut(3 * plane) {
        for (c, channel) in img.chunks_mut(plane).enumerate() {
            channel.iter_mut().for_each(|p| *p = (*p - mean[c]) / std[c]);
        }
    }
}
