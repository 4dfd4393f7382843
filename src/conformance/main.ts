// Runs the ONNX backend node tests on the interpreter and on WebGPU and prints the report.
//
//   npm run conformance [-- [--filter REGEX] [--no-gpu] [--json FILE] [--verbose]]
//
// Exit code: 0 when nothing failed, 1 when a case failed (skips are not failures).
import { writeFileSync } from 'node:fs';
import { getGpu, type Gpu } from '../runtime/device.js';
import { NODE_TESTS_DIR, discover, formatReport, runCase, type CaseResult } from './node-tests.js';

interface Args {
  filter?: RegExp;
  gpu: boolean;
  json?: string;
  verbose: boolean;
  root: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { gpu: true, verbose: false, root: NODE_TESTS_DIR };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    if (k === '--filter') a.filter = new RegExp(next());
    else if (k === '--no-gpu') a.gpu = false;
    else if (k === '--json') a.json = next();
    else if (k === '--verbose' || k === '-v') a.verbose = true;
    else if (k === '--root') a.root = next();
    else if (k === '--help' || k === '-h') {
      console.log('usage: node dist/src/conformance/main.js [--filter REGEX] [--no-gpu] [--json FILE] [--verbose] [--root DIR]');
      process.exit(0);
    } else throw new Error(`unknown argument '${k}'`);
  }
  return a;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const cases = discover(args.root, args.filter ? (n) => args.filter!.test(n) : undefined);
  let gpu: Gpu | undefined;
  if (args.gpu) {
    gpu = await getGpu();
    console.log(`WebGPU: ${gpu.adapterName}${gpu.hasF16 ? ' (shader-f16)' : ''}`);
  }
  const results: CaseResult[] = [];
  for (const info of cases) {
    const r = await runCase(info, { gpu });
    results.push(r);
    if (args.verbose && (r.interp.status !== 'skip' || r.webgpu.status !== 'skip'))
      console.log(`${info.name.padEnd(60)} interp ${r.interp.status.padEnd(4)} webgpu ${r.webgpu.status.padEnd(4)} ${r.ms.toFixed(0)} ms${r.frozen ? ' (inputs frozen)' : ''}`);
  }
  console.log(formatReport(results));
  const ran = results.filter((r) => r.interp.status !== 'skip' || r.webgpu.status !== 'skip');
  console.log(`\n${ran.length} of ${results.length} cases ran, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (args.json)
    writeFileSync(
      args.json,
      JSON.stringify(results.map((r) => ({ name: r.info.name, ops: r.info.ops, interp: r.interp, webgpu: r.webgpu, frozen: r.frozen, ms: Math.round(r.ms) })), null, 1),
    );
  return results.some((r) => r.interp.status === 'fail' || r.webgpu.status === 'fail') ? 1 : 0;
}

main().then(
  (code) => process.exit(code), // Dawn keeps the process alive otherwise
  (e: unknown) => {
    console.error(`conformance: ${(e as Error).message}`);
    process.exit(2);
  },
);
