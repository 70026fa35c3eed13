//! Strip pooling at the head's coarsest level (Hou et al., "Strip Pooling: Rethinking Spatial
//! Pooling for Scene Parsing", CVPR 2020, section 3.2, the strip pooling module, with the ReLU of the authors' code): every cell
//! also sees the mean of its whole row and of its whole column, so a faint line across the part
//! (a KolektorSDD crack) adds up its evidence along its length inside the network, not only in
//! the image score's line mean (`model::line_score`). `model.head_strip_pool`, off in every preset.

use tch::{nn, Kind, Tensor};

use super::layers::{path_name, Conv, ConvBnAct};

/// out = x * sigmoid(fuse(relu(rows(mean over W of x) + cols(mean over H of x)))), the row term
/// broadcast along W and the column term along H. `rows` and `cols` are 1x1 Conv + BN (the
/// paper's 3x1 / 1x3 strip convolutions mix neighbouring rows; here the head's decoder convs do),
/// `fuse` a 1x1 conv with bias. Channels in = out.
#[derive(Debug)]
pub struct StripPool {
    /// Variable path (`head.strip`): the exporter names the nodes after it.
    pub name: String,
    /// 1x1 Conv + BN on the row means [N, C, H, 1] (`<name>.rows`).
    pub rows: ConvBnAct,
    /// 1x1 Conv + BN on the column means [N, C, 1, W] (`<name>.cols`).
    pub cols: ConvBnAct,
    /// 1x1 conv with bias on relu(rows + cols) [N, C, H, W], before the sigmoid gate (`<name>.fuse`).
    pub fuse: Conv,
}

impl StripPool {
    pub fn new(vs: nn::Path, channels: i64) -> Self {
        Self {
            name: path_name(&vs),
            rows: ConvBnAct::new(&vs / "rows", channels, channels, 1, 1, false),
            cols: ConvBnAct::new(&vs / "cols", channels, channels, 1, 1, false),
            fuse: Conv::new(&vs / "fuse", channels, channels, 1, 1, true),
        }
    }

    /// x: [N, C, H, W] -> [N, C, H, W], x gated per cell and channel by its row and column.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let rows = self.rows.forward_t(&x.mean_dim([3i64].as_slice(), true, Kind::Float), train);
        let cols = self.cols.forward_t(&x.mean_dim([2i64].as_slice(), true, Kind::Float), train);
        x * self.fuse.forward(&(rows + cols).relu()).sigmoid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gate of a cell depends on its row and column means only: written out here with the
    /// module's own weights, in eval mode (BN as its running statistics).
    #[test]
    fn the_gate_is_the_sigmoid_of_the_fused_row_and_column_means() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let sp = StripPool::new(&vs.root() / "strip", 4);
        let x = Tensor::rand([2, 4, 5, 7], (Kind::Float, tch::Device::Cpu));
        let y = sp.forward_t(&x, false);
        assert_eq!(y.size(), vec![2, 4, 5, 7]);
        let bn = |t: &Tensor, m: &ConvBnAct| {
            let c = t.conv2d(&m.conv.conv.ws, None::<Tensor>, [1i64, 1], [0i64, 0], [1i64, 1], 1);
            let mean = m.bn.running_mean.view([1, -1, 1, 1]);
            let var = m.bn.running_var.view([1, -1, 1, 1]);
            (c - mean) / (var + crate::model::layers::BN_EPS).sqrt() * m.bn.ws.as_ref().unwrap().view([1, -1, 1, 1]) + m.bn.bs.as_ref().unwrap().view([1, -1, 1, 1])
        };
        let row_means = x.sum_dim_intlist([3i64].as_slice(), true, Kind::Float) / 7.0;
        let col_means = x.sum_dim_intlist([2i64].as_slice(), true, Kind::Float) / 5.0;
        let s = (bn(&row_means, &sp.rows) + bn(&col_means, &sp.cols)).relu();
        let gate = s.conv2d(&sp.fuse.conv.ws, sp.fuse.conv.bs.as_ref(), [1i64, 1], [0i64, 0], [1i64, 1], 1).sigmoid();
        let want = &x * gate;
        let diff = (&y - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
        // A change to one pixel moves only cells of its row and column (most of them: the ReLU
        // may hold a cell's sum at 0 in every channel).
        let x2 = x.copy();
        let _ = x2.get(0).get(0).get(2).get(3).fill_(5.0);
        let moved = (sp.forward_t(&x2, false) - &y).abs().amax([1i64].as_slice(), false).get(0).gt(1e-7);
        let mut on_cross = 0;
        for (i, j) in (0..5).flat_map(|i| (0..7).map(move |j| (i, j))) {
            let m = moved.int64_value(&[i, j]) == 1;
            if i == 2 || j == 3 {
                on_cross += usize::from(m);
            } else {
                assert!(!m, "cell ({i}, {j}) is in neither the row nor the column");
            }
        }
        assert!(on_cross >= 6, "{on_cross} of the 11 cells of the row and column moved");
    }
}
