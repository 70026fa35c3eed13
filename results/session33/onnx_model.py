"""The exported model in ONNX Runtime for the session's analysis scripts: `Model(path).run(image_file)`
-> (anomaly map [H, W] at the model's input size, image score); `.map(image_file)` the map alone;
`.mask(mask_file)` a ground-truth mask at the map's size (nearest neighbour, bool). Preprocessing: RGB, PIL bilinear
resize to the model's input, [0, 1] (normalisation is inside the graph; DESIGN.md export contract)."""
import numpy as np, onnxruntime as ort
from PIL import Image


class Model:
    def __init__(self, path, threads=2):
        so = ort.SessionOptions(); so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, so)
        self.input = self.session.get_inputs()[0]
        self.height, self.width = self.input.shape[2], self.input.shape[3]

    def run(self, image_file):
        im = Image.open(image_file).convert('RGB').resize((self.width, self.height), Image.BILINEAR)
        x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1)[None] / 255.
        out = self.session.run(None, {self.input.name: x})
        amap = [a for a in out if a.ndim == 4][0][0, 0]
        score = float([a for a in out if a.size == 1][0].ravel()[0])
        return amap, score

    def map(self, image_file):
        return self.run(image_file)[0]

    def mask(self, mask_file):
        return np.array(Image.open(mask_file).resize((self.width, self.height), Image.NEAREST)) > 0
