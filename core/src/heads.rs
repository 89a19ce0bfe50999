//! Named projection heads and predictors: each the shape its paper gives,
//! as an [`MlpConfig`] a method builds (in the way of lightly's heads).
//! `Linear-BN-ReLU` is one hidden layer; sizes are the method's options.

use crate::blocks::MlpConfig;

/// SimCLR (Chen et al. 2020) as its authors' code builds the head
/// (google-research/simclr `model_util.py`, `projection_head` and
/// `linear_layer`): every layer a bias-free dense layer drawn from
/// N(0, 0.01²) and a batch norm, ReLU between; the middle norms centre and
/// scale, the last one scales only: `Linear-BN-ReLU, ..., Linear-BN(center=False)`.
/// `layers = 2` is the paper's one hidden layer, 3 the code's SimCLRv2 default.
pub fn simclr_projector(input: usize, hidden: usize, out: usize, layers: usize) -> MlpConfig {
    let mut dims = vec![input];
    dims.extend(std::iter::repeat_n(hidden, layers.saturating_sub(1)));
    dims.push(out);
    MlpConfig::new(&dims).without_bias().with_last_bn_scale_only().with_init_std(0.01)
}

/// Augur's SimCLR head until commit aa7790f (every SimCLR figure recorded before
/// then): `Linear(in, hidden)-BN-ReLU, Linear(hidden, out)`, biases, no final norm.
pub fn simclr_projector_augur(input: usize, hidden: usize, out: usize) -> MlpConfig {
    MlpConfig::new(&[input, hidden, out])
}

/// MoCo v2 (Chen et al. 2020b): SimCLR's two layers without batch norm,
/// `Linear(in, hidden)-ReLU, Linear(hidden, out)`.
pub fn moco_v2_projector(input: usize, hidden: usize, out: usize) -> MlpConfig {
    let mut config = MlpConfig::new(&[input, hidden, out]);
    config.hidden_bn = false;
    config
}

/// The MoCo projector of AugSelf's and CASSLE's code (`load_mlp(d, d, 128,
/// num_layers=2, last_bn=False)`: a bias-free Linear, BN, ReLU, Linear with
/// a bias): `Linear-BN-ReLU, Linear` (the first bias, cancelled by the BN,
/// kept: one bias switch per MLP).
pub fn augself_moco_projector(input: usize, hidden: usize, out: usize) -> MlpConfig {
    MlpConfig::new(&[input, hidden, out])
}

/// MoCo v3 (Chen et al. 2021) on a ResNet, as the official `MoCo_ResNet`
/// builds it: two bias-free layers, the last batch norm without affine
/// parameters, `Linear-BN-ReLU, Linear-BN(affine=False)`.
pub fn moco_v3_projector(input: usize, hidden: usize, out: usize) -> MlpConfig {
    MlpConfig::new(&[input, hidden, out]).with_last_bn_not_affine().without_bias()
}

/// MoCo v3's predictor on a ResNet: `Linear(out, hidden)-BN-ReLU,
/// Linear(hidden, out)`, bias-free, no final batch norm.
pub fn moco_v3_predictor(dim: usize, hidden: usize) -> MlpConfig {
    MlpConfig::new(&[dim, hidden, dim]).without_bias()
}

/// MoCo v3's heads on a ViT (`MoCo_ViT`): a three-layer projector, and a
/// predictor that ends in a batch norm too, both last norms without affine.
pub fn moco_v3_vit_projector(input: usize, hidden: usize, out: usize) -> MlpConfig {
    MlpConfig::new(&[input, hidden, hidden, out]).with_last_bn_not_affine().without_bias()
}

/// MoCo v3's ViT predictor: `Linear-BN-ReLU, Linear-BN(affine=False)`.
pub fn moco_v3_vit_predictor(dim: usize, hidden: usize) -> MlpConfig {
    MlpConfig::new(&[dim, hidden, dim]).with_last_bn_not_affine().without_bias()
}

/// BYOL (Grill et al. 2020): `Linear(in, hidden)-BN-ReLU, Linear(hidden, out)`.
pub fn byol_projector(input: usize, hidden: usize, out: usize) -> MlpConfig {
    MlpConfig::new(&[input, hidden, out])
}

/// BYOL's predictor, the projector's shape on the projection:
/// `Linear(out, hidden)-BN-ReLU, Linear(hidden, out)`.
pub fn byol_predictor(dim: usize, hidden: usize) -> MlpConfig {
    MlpConfig::new(&[dim, hidden, dim])
}

/// SimSiam (Chen & He 2021): three layers with batch norm after each, the
/// last without ReLU and its norm without affine parameters, as the
/// official `builder.py` (and solo-learn): `Linear-BN-ReLU, Linear-BN-ReLU,
/// Linear-BN(affine=False)`.
pub fn simsiam_projector(input: usize, hidden: usize, out: usize) -> MlpConfig {
    MlpConfig::new(&[input, hidden, hidden, out]).with_last_bn_not_affine()
}

/// SimSiam's bottleneck predictor: `Linear(out, hidden)-BN-ReLU, Linear(hidden, out)`.
pub fn simsiam_predictor(dim: usize, hidden: usize) -> MlpConfig {
    MlpConfig::new(&[dim, hidden, dim])
}

/// Barlow Twins (Zbontar et al. 2021): three layers,
/// `Linear-BN-ReLU, Linear-BN-ReLU, Linear`.
pub fn barlow_twins_projector(input: usize, hidden: usize, out: usize) -> MlpConfig {
    MlpConfig::new(&[input, hidden, hidden, out])
}

/// VICReg's expander (Bardes et al. 2022): Barlow Twins' three layers.
pub fn vicreg_expander(input: usize, hidden: usize, out: usize) -> MlpConfig {
    barlow_twins_projector(input, hidden, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_have_their_papers_batch_norm_placement() {
        let simclr = simclr_projector(8, 16, 4, 3);
        assert_eq!(simclr.dims, [8, 16, 16, 4]);
        assert!(simclr.hidden_bn && simclr.last_bn && simclr.last_affine && !simclr.last_shift && !simclr.bias);
        assert_eq!(simclr.init_std, Some(0.01));
        assert_eq!(simclr_projector(8, 16, 4, 2).dims, [8, 16, 4]);
        let augur = simclr_projector_augur(8, 16, 4);
        assert!(augur.hidden_bn && !augur.last_bn && augur.bias);
        let moco = moco_v2_projector(8, 16, 4);
        assert!(!moco.hidden_bn && !moco.last_bn);
        let simsiam = simsiam_projector(8, 16, 4);
        assert_eq!(simsiam.dims, [8, 16, 16, 4]);
        assert!(simsiam.hidden_bn && simsiam.last_bn && !simsiam.last_affine);
        let barlow = barlow_twins_projector(8, 16, 4);
        assert!(barlow.hidden_bn && !barlow.last_bn && barlow.dims.len() == 4);
        assert_eq!(byol_predictor(4, 16).dims, [4, 16, 4]);
        assert!(!moco_v3_predictor(4, 16).last_bn && moco_v3_vit_predictor(4, 16).last_bn);
        let v3 = moco_v3_projector(8, 16, 4);
        assert!(v3.dims == [8, 16, 4] && v3.last_bn && !v3.last_affine && !v3.bias);
        assert_eq!(moco_v3_vit_projector(8, 16, 4).dims, [8, 16, 16, 4]);
    }
}
