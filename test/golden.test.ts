// Golden files: the printed IR after every pass and the WGSL of every kernel, for the bundled
// models under each policy. A refactor must show zero diff; goldens change only through
// `npm run golden:update` (MPC_UPDATE_GOLDEN=1), and the diff is then reviewed in git.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { importOnnxFile } from '../src/onnx/import.js';
import { runPipeline, TRAIN_PIPELINE } from '../src/passes/pipeline.js';
import { passCtx } from '../src/compile/options.js';
import { printGraph } from '../src/ir/print.js';
import { generate } from '../src/codegen/program.js';

const UPDATE = process.env.MPC_UPDATE_GOLDEN === '1';
const CASES = [
  { model: 'mlp', policies: ['fp32', 'fp16', 'bf16', 'fp8'], wgsl: true },
  { model: 'cnn', policies: ['fp32', 'fp16'], wgsl: true },
  { model: 'gpt-block', policies: ['bf16'], wgsl: false },
];

function check(file: string, text: string): void {
  const path = new URL(`./golden/${file}`, import.meta.url);
  if (UPDATE) {
    writeFileSync(path, text);
    return;
  }
  expect(existsSync(path), `${file} missing: run npm run golden:update`).toBe(true);
  expect(text).toBe(readFileSync(path, 'utf8'));
}

describe('golden IR and WGSL', () => {
  for (const { model, policies, wgsl } of CASES)
    for (const policy of policies) {
      const ctx = passCtx({ policy, batch: 4, optimizer: { kind: 'adam' } });
      it(`${model} ${policy}: IR after each pass`, () => {
        const parts: string[] = [];
        runPipeline(importOnnxFile(`models/${model}.onnx`), ctx, TRAIN_PIPELINE, {
          onPass: (p, g) => parts.push(`=== after ${p.name}\n${printGraph(g)}`),
        });
        check(`${model}.${policy}.ir.txt`, parts.join('\n'));
      });
      if (wgsl) it(`${model} ${policy}: WGSL kernels`, () => {
        const g = runPipeline(importOnnxFile(`models/${model}.onnx`), ctx, TRAIN_PIPELINE);
        const code = generate({ train: g }, ctx.target);
        const text = [...code.files].map(([f, w]) => `=== ${f}\n${w}`).join('\n');
        check(`${model}.${policy}.wgsl.txt`, text);
      });
    }
});
