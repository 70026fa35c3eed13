//! Coordinate channels (CoordConv, Liu et al., "An intriguing failing of convolutional neural
//! networks and the CoordConv solution", NeurIPS 2018): y and x of each pixel centre, so that a
//! convolution can learn what is normal where on a part that always sits in the same place.

use tch::{Device, Kind, Tensor};

/// The two coordinate planes of an H x W input, [2, H, W] row-major as a flat Vec of 2·H·W:
/// plane 0 is y, plane 1 is x, each the pixel centre mapped to [-1, 1]: `(2 i + 1) / n - 1`
/// (symmetric about 0 for every size; the middle pixel of an odd size sits at 0).
pub fn coordinate_planes(h: i64, w: i64) -> Vec<f32> {
    let centre = |i: i64, n: i64| ((2 * i + 1) as f64 / n as f64 - 1.0) as f32;
    let y = (0..h).flat_map(|i| std::iter::repeat(centre(i, h)).take(w as usize));
    let x = (0..h).flat_map(|_| (0..w).map(move |j| centre(j, w)));
    y.chain(x).collect()
}

/// `x` [N, C, H, W] with the coordinate planes appended: [N, C + 2, H, W].
pub fn append_coordinates(x: &Tensor) -> Tensor {
    let (n, _, h, w) = x.size4().expect("a 4-D feature map");
    let planes = coordinate_tensor(h, w, x.device()).to_kind(x.kind()).expand([n, 2, h, w], false);
    Tensor::cat(&[x.shallow_clone(), planes], 1)
}

/// The coordinate planes as a tensor [1, 2, H, W] on `device` (f32; what [`append_coordinates`]
/// appends to each image of a batch).
pub fn coordinate_tensor(h: i64, w: i64, device: Device) -> Tensor {
    Tensor::from_slice(&coordinate_planes(h, w)).to_kind(Kind::Float).to_device(device).view([1, 2, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_hold_the_pixel_centres_in_minus_one_to_one() {
        // 2 x 4: y centres -0.5, 0.5; x centres -0.75, -0.25, 0.25, 0.75.
        let p = coordinate_planes(2, 4);
        assert_eq!(p, vec![-0.5, -0.5, -0.5, -0.5, 0.5, 0.5, 0.5, 0.5, -0.75, -0.25, 0.25, 0.75, -0.75, -0.25, 0.25, 0.75]);
        // Odd sizes put the middle pixel at 0.
        let p = coordinate_planes(3, 1);
        assert_eq!(p, vec![-2.0 / 3.0, 0.0, 2.0 / 3.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn appended_planes_are_the_same_for_every_image_of_the_batch() {
        let x = Tensor::rand([3, 5, 4, 6], (Kind::Float, Device::Cpu));
        let y = append_coordinates(&x);
        assert_eq!(y.size(), vec![3, 7, 4, 6]);
        assert!(y.narrow(1, 0, 5).equal(&x), "the input channels are kept");
        let expected = coordinate_tensor(4, 6, Device::Cpu);
        for i in 0..3 {
            assert!(y.narrow(0, i, 1).narrow(1, 5, 2).equal(&expected), "image {i}");
        }
        // y grows down the rows, x along them.
        let v = |c: i64, r: i64, col: i64| y.double_value(&[0, c, r, col]) as f32;
        assert_eq!((v(5, 0, 0), v(5, 3, 0), v(6, 0, 0), v(6, 0, 5)), (-0.75, 0.75, -5.0 / 6.0, 5.0 / 6.0));
    }
}
