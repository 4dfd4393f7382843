// The compiled program in a browser: `mpc compile --web-data N` writes index.html, the page's
// ES module (runtime/web/page.js) and data.safetensors; headless Chromium (SwiftShader's
// WebGPU, no shader-f16) opens the page from a small http server, trains the MLP for 300
// steps and evaluates. Checked: the page's first losses against Node training the same
// program on the same batches, on Dawn (lavapipe) and on the CPU reference interpreter;
// its test accuracy against a floor far above chance. The screenshot goes to out/browser.png.
import { execFile, spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeSafetensors } from '../src/data/safetensors.js';
import { cpuEngine, gpuEngine, loadProgramDir, type Engine } from '../src/runtime/engine.js';
import { gatherBatch, mulberry32, shuffleInPlace, type Samples } from '../src/runtime/core.js';
import { hparamValues } from '../src/runtime/hparams.js';
import { buildOnce, expectOk, mpc, ROOT } from './helpers/cli.js';

const MLP = join(ROOT, 'models', 'mlp.onnx');
const DRIVER = join(ROOT, 'test', 'helpers', 'cdp-driver.mjs');
const STEPS = 300;
const EXACT = 20;
let tmp: string;
let dir: string;
let server: Server;
let port: number;

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json', '.wgsl': 'text/plain' };

beforeAll(async () => {
  buildOnce();
  tmp = mkdtempSync(join(tmpdir(), 'mpc-browser-'));
  dir = join(tmp, 'out');
  // bf16 (packed in u32 words) and no subgroup specialisation: what SwiftShader runs.
  expectOk(await mpc('compile', MLP, '-o', dir, '--policy', 'bf16', '--batch', '64', '--subgroup-size', 'off', '--web-data', '10000', '--quiet'));
  server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url!, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(dir, path === '/' ? 'index.html' : path);
    try {
      if (!statSync(file).isFile()) throw new Error();
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
}, 120_000);
afterAll(() => {
  server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

interface PageState {
  status: string;
  error?: string;
  adapter?: string;
  steps?: number;
  losses: { step: number; loss: number }[];
  accuracy?: number;
  testSamples?: number;
  timedOut?: boolean;
  console: string[];
}

/** The first `count` per-step losses of the program trained on the page's batches (seed 0). */
async function nodeLosses(engine: Engine, count: number): Promise<number[]> {
  const p = loadProgramDir(dir);
  const data = decodeSafetensors(readFileSync(join(dir, 'data.safetensors')), 'data.safetensors').tensors;
  const train: Samples = { x: Float32Array.from(data.x_train.data, (v) => v / 255), y: Int32Array.from(data.y_train.data), n: data.x_train.shape[0] };
  const batch = p.program.batch;
  engine.setHparams(hparamValues(p.program.optimizer));
  const order = Int32Array.from({ length: train.n }, (_, i) => i);
  shuffleInPlace(order, mulberry32(0));
  const x = new Float32Array(batch * 784);
  const y = new Int32Array(batch);
  const out: number[] = [];
  for (let s = 0; s < count; s++) {
    gatherBatch(train, order, s * batch, batch, 784, 1, x, y);
    engine.trainStep(x, y);
    out.push(await engine.loss());
  }
  return out;
}

describe('the compiled program in headless Chromium', () => {
  it('trains the MLP on WebGPU in the page, as Node does', async () => {
    const chromium = spawnSync(process.env.CHROMIUM ?? 'chromium', ['--version'], { encoding: 'utf8' });
    expect(chromium.status, "chromium is missing: scripts/setup-debian.sh installs Debian's chromium").toBe(0);
    mkdirSync(join(ROOT, 'out'), { recursive: true });
    const png = join(ROOT, 'out', 'browser.png');
    const url = `http://127.0.0.1:${port}/index.html?steps=${STEPS}&exact=${EXACT}`;
    const line = await new Promise<string>((done, fail) =>
      execFile(process.execPath, ['--experimental-websocket', '--no-warnings', DRIVER, url, png, '150'], { encoding: 'utf8', timeout: 200_000 }, (err, stdout, stderr) =>
        err ? fail(new Error(`${err.message}\n${stderr}`)) : done(stdout.trim().split('\n').at(-1)!),
      ),
    );
    const page = JSON.parse(line) as PageState;
    const show = JSON.stringify({ ...page, losses: page.losses.slice(0, 3) });
    expect(page.status, show).toBe('done');
    expect(page.steps).toBe(STEPS);
    expect(page.adapter, show).toMatch(/swiftshader/i);
    expect(statSync(png).size).toBeGreaterThan(1000);
    // A 784-256-10 MLP reaches about 80% on Fashion-MNIST after 300 steps of 64; chance is 10%.
    expect(page.accuracy!, show).toBeGreaterThan(0.75);
    expect(page.testSamples).toBe(2000);

    const first = page.losses.slice(0, EXACT);
    expect(first.map((l) => l.step)).toEqual(Array.from({ length: EXACT }, (_, i) => i + 1));
    const onDawn = await nodeLosses(await gpuEngine(loadProgramDir(dir)), EXACT);
    const onInterp = await nodeLosses(cpuEngine(loadProgramDir(dir)), EXACT);
    for (let i = 0; i < EXACT; i++) {
      // Same program and batches; different WebGPU implementations (and the interpreter)
      // may round a bf16 value the other way, and the difference grows with the steps.
      const tol = 2e-3 + 1e-3 * i;
      expect(Math.abs(first[i].loss - onDawn[i]), `step ${i + 1}: page ${first[i].loss}, Dawn ${onDawn[i]}`).toBeLessThan(tol * Math.max(1, onDawn[i]));
      expect(Math.abs(first[i].loss - onInterp[i]), `step ${i + 1}: page ${first[i].loss}, interpreter ${onInterp[i]}`).toBeLessThan(tol * Math.max(1, onInterp[i]));
    }
  }, 300_000);
});
