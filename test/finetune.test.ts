// Pretrain, export, import, fine-tune in mixed precision, export again — every stage judged by
// onnxruntime (CPU EP) on the Fashion-MNIST test set, against PyTorch's accuracy for the same
// schedule and sample order (test/fixtures/export/finetune-torch.json from
// models/finetune_baseline.py, which reproduces mpc's shuffling) minus 1 percentage point:
//   1. the bundled MLP, 1 epoch fp32 (batch 128, Adam 1e-3) on WebGPU, exported as ONNX;
//   2. that ONNX compiled again (its initializers are the trained weights) in bf16 and
//      fine-tuned 1 epoch on a shifted task (labels y -> (y + 1) % 10, the first 20000
//      training images, given as npy data), exported as fp32 and as its bf16 policy graph.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { compileModel, writeCompiled } from '../src/compile/compile.js';
import { loadFashionMnist } from '../src/data/datasets.js';
import { saveNpy } from '../src/data/npy.js';
import { exportModel } from '../src/onnx/export.js';
import { getGpu } from '../src/runtime/device.js';
import { train, type TrainSummary } from '../src/runtime/train.js';

const quiet = { start() {}, update() {}, stop() {}, log() {} };
const TMP = mkdtempSync(join(tmpdir(), 'mpc-finetune-'));
const BASE = JSON.parse(readFileSync(new URL('./fixtures/export/finetune-torch.json', import.meta.url), 'utf8')) as {
  baseline: { pretrained: number; finetuned: number };
};
const FINETUNE_SAMPLES = 20000;
const PER = 28 * 28;

afterAll(() => rmSync(TMP, { recursive: true, force: true }));

const data = loadFashionMnist();
const shift = (y: Int32Array) => Int32Array.from(y, (v) => (v + 1) % 10);

/** Test accuracy of an ONNX file in onnxruntime, in batches of `batch` (padded), against `labels`. */
async function ortAccuracy(file: string, labels: Int32Array, batch: number): Promise<number> {
  const s = await ort.InferenceSession.create(file);
  const n = data.test.n;
  let correct = 0;
  const x = new Float32Array(batch * PER);
  for (let start = 0; start < n; start += batch) {
    const m = Math.min(batch, n - start);
    x.fill(0);
    x.set(data.test.x.subarray(start * PER, (start + m) * PER));
    const out = (await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', x, [batch, 1, 28, 28]) }))[s.outputNames[0]].data as Float32Array;
    for (let r = 0; r < m; r++) {
      let best = 0;
      for (let c = 1; c < 10; c++) if (out[r * 10 + c] > out[r * 10 + best]) best = c;
      if (best === labels[start + r]) correct++;
    }
  }
  return correct / n;
}

/** Images as uint8 npy (the loader scales them back to [0, 1] exactly) and labels as int64. */
function writeData(name: string, x: Float32Array, y: Int32Array, n: number): string {
  const xf = join(TMP, `${name}-x.npy`);
  const yf = join(TMP, `${name}-y.npy`);
  saveNpy(xf, { dtype: 'u1', shape: [n, 1, 28, 28], data: Uint8Array.from(x.subarray(0, n * PER), (v) => Math.round(v * 255)) });
  saveNpy(yf, { dtype: 'i8', shape: [n], data: y.subarray(0, n) });
  return `npy:${xf},${yf}`;
}

function save(file: string, bytes: Uint8Array): string {
  writeFileSync(file, bytes);
  return file;
}

describe('fine-tuning chain: fp32 pretraining -> ONNX -> bf16 fine-tuning -> ONNX (onnxruntime)', () => {
  const acc: Record<string, number> = {};
  let pre: TrainSummary;
  let fine: TrainSummary;

  it(`1 epoch fp32: the exported ONNX reaches >= PyTorch's ${(BASE.baseline.pretrained * 100).toFixed(2)}% - 1 pp`, async () => {
    const subgroupSize = (await getGpu()).subgroupSize;
    const dir = join(TMP, 'pretrain');
    writeCompiled(dir, compileModel('models/mlp.onnx', { policy: 'fp32', batch: 128, target: { f16: true, subgroupSize } }));
    pre = await train({ dir, data: 'fashion-mnist', epochs: 1, backend: 'webgpu', seed: 0, logEvery: 50 }, quiet);
    const onnxFile = save(join(TMP, 'pretrained.onnx'), exportModel({ dir }).bytes);
    acc.pretrained = await ortAccuracy(onnxFile, data.test.y, 1000);
    acc.shiftedBefore = await ortAccuracy(onnxFile, shift(data.test.y), 1000);
    console.log(`pretrained: onnxruntime ${(acc.pretrained * 100).toFixed(2)}% (mpc train: ${(pre.test_accuracy * 100).toFixed(2)}%)`);
    expect(acc.pretrained).toBeGreaterThanOrEqual(BASE.baseline.pretrained - 0.01);
    // The shifted task is new to it.
    expect(acc.shiftedBefore).toBeLessThan(0.2);
  }, 600_000);

  it(`1 epoch bf16 on the shifted labels from the exported ONNX: >= PyTorch's ${(BASE.baseline.finetuned * 100).toFixed(2)}% - 1 pp, as fp32 and as the bf16 graph`, async () => {
    const subgroupSize = (await getGpu()).subgroupSize;
    const dir = join(TMP, 'finetune');
    // The exported ONNX is the model now: its initializers carry the pretrained weights.
    writeCompiled(dir, compileModel(join(TMP, 'pretrained.onnx'), { policy: 'bf16', batch: 128, target: { f16: true, subgroupSize } }));
    const trainSpec = writeData('shifted-train', data.train.x as Float32Array, shift(data.train.y), FINETUNE_SAMPLES);
    const testSpec = writeData('shifted-test', data.test.x as Float32Array, shift(data.test.y), data.test.n);
    fine = await train({ dir, data: trainSpec, testData: testSpec, epochs: 1, backend: 'webgpu', seed: 1, logEvery: 50 }, quiet);
    expect(fine.steps).toBe(Math.floor(FINETUNE_SAMPLES / 128));
    const fp32 = save(join(TMP, 'finetuned.onnx'), exportModel({ dir }).bytes);
    const bf16 = save(join(TMP, 'finetuned-bf16.onnx'), exportModel({ dir, asPolicy: true, bf16ComputeF32: true }).bytes);
    acc.finetuned = await ortAccuracy(fp32, shift(data.test.y), 1000);
    acc.finetunedBf16 = await ortAccuracy(bf16, shift(data.test.y), 128);
    console.log(
      `fine-tuned: onnxruntime fp32 export ${(acc.finetuned * 100).toFixed(2)}%, bf16 export ${(acc.finetunedBf16 * 100).toFixed(2)}% (mpc train: ${(fine.test_accuracy * 100).toFixed(2)}%); PyTorch ${(BASE.baseline.finetuned * 100).toFixed(2)}%`,
    );
    expect(acc.finetuned).toBeGreaterThanOrEqual(BASE.baseline.finetuned - 0.01);
    expect(acc.finetunedBf16).toBeGreaterThanOrEqual(BASE.baseline.finetuned - 0.01);
    // mpc's own evaluation (the bf16 inference program, same test set) agrees with onnxruntime's on the bf16 graph.
    expect(Math.abs(acc.finetunedBf16 - fine.test_accuracy)).toBeLessThanOrEqual(0.005);
  }, 600_000);
});
