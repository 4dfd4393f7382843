// Checkpoints carry every piece of training state — optimizer moments, fp8 scales and amax
// histories — and training resumed from one continues from that state (the saved scales).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel, writeCompiled } from '../src/compile/compile.js';
import { decodeTensors } from '../src/data/tensor-files.js';
import { gpuEngine, loadProgramDir } from '../src/runtime/engine.js';
import { loadCheckpoint, train } from '../src/runtime/train.js';
import type { Fp8Tensor } from '../src/passes/quantize-fp8.js';
import { decodeArray, loadFixture } from './helpers/fixtures.js';

const quiet = { start() {}, update() {}, stop() {}, log() {} };
const fx = loadFixture('mlp-torch.json');
const x = decodeArray(fx.batch.x).data as Float32Array;
const y = decodeArray(fx.batch.y).data as Int32Array;

describe('checkpoint and resume (fp8 policy, WebGPU)', () => {
  it('the checkpoint holds the fp8 scaling state; resuming restores it exactly and the next step uses the saved scales, deterministically', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mpc-ckpt-'));
    const dir = join(root, 'out');
    const c = compileModel('models/mlp.onnx', { policy: 'fp8', batch: 8 });
    writeCompiled(dir, c);
    const ckpt = join(root, 'ckpt.safetensors');
    const s = await train({ dir, data: 'fashion-mnist', epochs: 1, steps: 4, backend: 'webgpu', seed: 0, logEvery: 2, checkpoint: ckpt }, quiet);
    expect(s.checkpoint).toBe(ckpt);

    const p = loadProgramDir(dir);
    const saved = decodeTensors(readFileSync(ckpt), ckpt).tensors;
    const fp8 = c.train.meta.fp8 as Fp8Tensor[];
    expect(fp8.length).toBeGreaterThan(0);
    for (const t of fp8) {
      expect(saved.has(t.scale), t.scale).toBe(true);
      expect(saved.get(t.amaxHistory)!.data.slice(0, 4).every((v) => v > 0), t.amaxHistory).toBe(true); // 4 steps recorded
    }
    for (const name of ['1.weight', '1.weight.m', '1.weight.v', 'optim.step']) expect(saved.has(name), name).toBe(true);

    // Two engines resumed from the same checkpoint take the same next step, with the saved scales.
    const a = await gpuEngine(p);
    const b = await gpuEngine(p);
    expect(await loadCheckpoint(a, p, ckpt)).toBe(4);
    await loadCheckpoint(b, p, ckpt);
    const names = p.program.buffers.filter((buf) => buf.role === 'param' || buf.role === 'state').map((buf) => buf.name);
    const loaded = await a.read(names);
    for (const n of names) expect(Array.from(loaded.get(n)!.data), n).toEqual(Array.from(saved.get(n)!.data));
    a.trainStep(x, y);
    b.trainStep(x, y);
    const w = fp8[0];
    const stats = (await a.read([w.stats])).get(w.stats)!.data;
    expect(stats[3]).toBe(saved.get(w.scale)!.data[0]); // delayed scaling: the step used the saved scale
    const ra = await a.read(names);
    const rb = await b.read(names);
    for (const n of names) expect(Buffer.from(ra.get(n)!.data.buffer).equals(Buffer.from(rb.get(n)!.data.buffer)), n).toBe(true);
  }, 600_000);
});
