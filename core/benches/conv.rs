//! Flex's convolution against Augur's (`augur_core::fused::conv`), forward
//! and both gradients, on each convolution of the quickstart ResNet at the
//! training batch (two views of 128 images). PyTorch's figures for the same
//! layers: `scripts/reference/bench_conv.py`.
//!
//! ```text
//! cargo bench --workspace --bench conv
//! ```

mod common;

use common::millis;

use augur_core::fused::conv::ConvOps;
use burn::backend::Flex;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::tensor::TensorData;
use burn::tensor::ops::ConvOptions;

/// (cin, cout, input size, kernel, stride): the quickstart model's convolutions.
const LAYERS: [(usize, usize, usize, usize, usize); 9] = [
    (3, 16, 24, 3, 1),
    (16, 16, 24, 3, 1),
    (16, 32, 24, 3, 2),
    (32, 32, 12, 3, 1),
    (16, 32, 24, 1, 2),
    (32, 64, 12, 3, 2),
    (64, 64, 6, 3, 1),
    (64, 128, 6, 3, 2),
    (128, 128, 3, 3, 1),
];
const BATCH: usize = 256;
const REPEATS: usize = 5;

fn tensor(shape: Vec<usize>) -> FloatTensor<Flex> {
    let n: usize = shape.iter().product();
    let values = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    FloatTensor::<Flex>::from_data(TensorData::new(values, shape))
}

fn main() {
    println!("conv bench: batch {BATCH}, {} threads, ms per call (burn-flex / Augur)", rayon::current_num_threads());
    let mut total = [0.0f64; 6];
    for (cin, cout, size, k, stride) in LAYERS {
        let (x, w) = (tensor(vec![BATCH, cin, size, size]), tensor(vec![cout, cin, k, k]));
        let options = ConvOptions::new([stride; 2], [k / 2; 2], [1, 1], 1);
        let dy = Flex::conv2d(x.clone(), w.clone(), None, options.clone());
        let (x, w, dy, o) = (&x, &w, &dy, &options);
        let times = [
            millis(REPEATS, || drop(Flex::conv2d(x.clone(), w.clone(), None, o.clone()))),
            millis(REPEATS, || drop(Flex::conv2d_gemm(x.clone(), w.clone(), o.clone()))),
            millis(REPEATS, || drop(Flex::conv2d_x_backward(x.clone(), w.clone(), dy.clone(), o.clone()))),
            millis(REPEATS, || drop(Flex::conv2d_gemm_x_backward(x.clone(), w.clone(), dy.clone(), o.clone()))),
            millis(REPEATS, || drop(Flex::conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), o.clone()))),
            millis(REPEATS, || drop(Flex::conv2d_gemm_weight_backward(x.clone(), w.clone(), dy.clone(), o.clone()))),
        ];
        total.iter_mut().zip(times).for_each(|(t, v)| *t += v);
        let [f0, f1, x0, x1, w0, w1] = times;
        println!("{cin:>3}->{cout:<3} {size:>2}px k{k} s{stride}  forward {f0:6.2} / {f1:6.2}  input grad {x0:6.2} / {x1:6.2}  weight grad {w0:6.2} / {w1:6.2}");
    }
    let [f0, f1, x0, x1, w0, w1] = total;
    println!("all layers        forward {f0:6.1} / {f1:6.1}  input grad {x0:6.1} / {x1:6.1}  weight grad {w0:6.1} / {w1:6.1}");
    println!("Augur/burn-flex speed: forward {:.2}x, input grad {:.2}x, weight grad {:.2}x", f0 / f1, x0 / x1, w0 / w1);
}
