// `mpc export <dir> -o model.onnx`: the compiled (and trained) model as ONNX, either the
// original fp32 graph with the trained weights or the mixed-precision inference graph.
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Command, Option } from 'commander';
import { exportModel } from '../onnx/export.js';
import { InputError } from '../onnx/import.js';
import { checkOutputPath } from '../runtime/output-path.js';

export interface ExportCliOpts {
  out: string;
  weights: string;
  asPolicy?: boolean;
  bf16Compute: 'bf16' | 'f32';
  quiet?: boolean;
}

export function addExportOptions(cmd: Command): Command {
  return cmd
    .requiredOption('-o, --out <model.onnx>', 'the ONNX file to write')
    .option('--weights <fp32|FILE>', "weights: 'fp32' = the folder's trained.safetensors (the initial weights when there is none), or a safetensors file keyed by initializer name", 'fp32')
    .option('--as-policy', "the mixed-precision inference graph of the program's policy (low-precision initializers, its Casts, fp8 via QuantizeLinear/DequantizeLinear at opset 19) instead of the fp32 original")
    .addOption(
      new Option('--bf16-compute <type>', "--as-policy: 'f32' makes nodes on bf16 values compute in f32 between Casts (values stay bf16), for runtimes without bf16 kernels such as onnxruntime's CPU EP")
        .choices(['bf16', 'f32'])
        .default('bf16'),
    )
    .option('--quiet', 'print nothing on success');
}

export function exportAction(dir: string, o: ExportCliOpts): void {
  if (!o.asPolicy && o.bf16Compute !== 'bf16') throw new InputError('--bf16-compute applies to --as-policy exports only');
  // The output path fails now (ENOTDIR, EROFS...), before any work.
  checkOutputPath(o.out, '-o', 'file');
  const r = exportModel({ dir, weights: o.weights, asPolicy: o.asPolicy, bf16ComputeF32: o.bf16Compute === 'f32' });
  const tmp = join(dirname(o.out), `.${basename(o.out)}.tmp-${process.pid}`);
  try {
    writeFileSync(tmp, r.bytes);
    renameSync(tmp, o.out);
  } catch (e) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // nothing was made there
    }
    throw new InputError(`${o.out}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (o.quiet) return;
  const what = o.asPolicy ? 'mixed-precision inference graph' : 'fp32 inference graph';
  const weights = r.weights ? `weights from ${r.weights}` : 'the initial weights (no trained.safetensors in the folder)';
  process.stdout.write(`exported the ${what} (opset ${r.opset}, ${r.nodes} nodes) with ${weights} -> ${o.out}\n`);
}
