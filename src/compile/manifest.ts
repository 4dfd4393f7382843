// manifest.json: per-tensor precision of the compiled program — what each value is stored
// in, who produces it at which precision and why, every inserted cast, and device memory.
import { byteSize, isFloat } from '../ir/dtypes.js';
import { consumers, producers, staticShape, type Graph } from '../ir/graph.js';
import { sizeOf } from '../ir/tensor.js';
import { opRow } from '../ops/table.js';
import type { CodegenResult, MemoryReport } from '../codegen/program.js';
import type { PassCtx } from '../passes/pass.js';
import type { Fp8Tensor } from '../passes/quantize-fp8.js';
import type { GradMeta } from '../passes/autodiff.js';
import type { ParamDecision, ParamSelection } from '../passes/select-params.js';

export interface ManifestTensor {
  name: string;
  role: string;
  dtype: string;
  shape: number[];
  storage: string;
  producer?: { node: string; op: string; class?: string; compute?: string; accum?: string; reason?: string };
  consumers: string[];
}

export interface Manifest {
  policy: string;
  target: { f16: boolean };
  lossScale: PassCtx['lossScale'];
  tensors: { train: ManifestTensor[]; eval: ManifestTensor[] };
  casts: { graph: string; node: string; value: string; from: string; to: string }[];
  /** Every fp8 tensor of the training step: format, scaling recipe and its state buffers. */
  fp8: Fp8Tensor[];
  /**
   * Which initializers the training step updates: trained parameters, frozen ones (and why),
   * and training state taken from the model (BatchNorm running statistics).
   */
  params: { trained: string[]; frozen: ParamDecision[]; state: string[] };
  memory: {
    /** Device bytes of all allocations, by the role of the buffers they hold (after the memory plan). */
    byRole: Record<string, number>;
    /** Activation bytes with and without the memory plan; saved-for-backward and peak live bytes of the training step. */
    plan: MemoryReport;
    /** Bytes of the matrix operands of allow-class (GEMM-like) ops in the training step, at their compiled dtype and in f32. */
    gemmOperands: { bytes: number; f32Bytes: number };
  };
}

function storageText(b: CodegenResult['buffers'][number]): string {
  if (b.layout.perWord > 1) return `${b.dtype} packed ${b.layout.perWord}/u32`;
  return b.layout.elem === 'i32' && b.dtype !== 'i32' ? `${b.dtype} as i32` : b.layout.elem;
}

function tensorsOf(g: Graph, gname: string, code: CodegenResult): ManifestTensor[] {
  const prod = producers(g);
  const cons = consumers(g);
  return [...g.values.values()].map((v) => {
    const p = prod.get(v.name);
    const b = code.buffers[code.bufferOf[gname][v.name]];
    return {
      name: v.name,
      role: v.role,
      dtype: v.dtype,
      shape: staticShape(v),
      storage: storageText(b),
      producer: p ? { node: p.name, op: p.op, class: p.prec?.cls, compute: p.prec?.compute, accum: p.prec?.accum, reason: p.prec?.reason } : undefined,
      consumers: (cons.get(v.name) ?? []).map((n) => n.name),
    };
  });
}

export function buildManifest(train: Graph, evalG: Graph, code: CodegenResult, ctx: PassCtx): Manifest {
  const casts: Manifest['casts'] = [];
  for (const [gname, g] of [['train', train], ['eval', evalG]] as const)
    for (const n of g.nodes)
      if (opRow(n.op).precision === 'cast')
        casts.push({ graph: gname, node: n.name, value: n.inputs[0], from: g.values.get(n.inputs[0])!.dtype, to: g.values.get(n.outputs[0])!.dtype });
  const byRole: Record<string, number> = {};
  const roleOf = new Map<number, string>();
  for (const b of code.buffers) roleOf.set(b.alloc, b.role);
  code.allocations.forEach((bytes, a) => (byRole[roleOf.get(a)!] = (byRole[roleOf.get(a)!] ?? 0) + bytes));
  let bytes = 0;
  let f32Bytes = 0;
  const seen = new Set<string>();
  for (const n of train.nodes) {
    if (n.prec?.cls !== 'allow' || !opRow(n.op).fp8) continue;
    // The two matrix operands of GEMM-like rows (a bias or an inverse scale is not a GEMM operand).
    for (const i of n.inputs.slice(0, 2)) {
      const v = i ? train.values.get(i) : undefined;
      if (!v || seen.has(i) || !isFloat(v.dtype)) continue;
      seen.add(i);
      const count = sizeOf(staticShape(v));
      bytes += count * byteSize(v.dtype);
      f32Bytes += count * 4;
    }
  }
  return {
    policy: ctx.policy.name,
    target: ctx.target,
    lossScale: ctx.lossScale,
    tensors: { train: tensorsOf(train, 'train', code), eval: tensorsOf(evalG, 'eval', code) },
    casts,
    fp8: (train.meta.fp8 as Fp8Tensor[] | undefined) ?? [],
    params: paramReport(train),
    memory: { byRole, plan: code.memory, gemmOperands: { bytes, f32Bytes } },
  };
}

/** The select-params decisions plus the parameters no gradient reaches (autodiff skips them). */
export function paramReport(train: Graph): Manifest['params'] {
  const sel = (train.meta.params as ParamSelection | undefined) ?? { frozen: [], state: [] };
  const grads = (train.meta.grads as GradMeta | undefined)?.params ?? {};
  const trained = Object.keys(grads).sort();
  const unreached = [...train.values.values()]
    .filter((v) => v.role === 'param' && isFloat(v.dtype) && !(v.name in grads))
    .map((v) => ({ name: v.name, reason: 'no gradient path to the loss' }));
  return { trained, frozen: [...sel.frozen, ...unreached].sort((a, b) => a.name.localeCompare(b.name)), state: [...sel.state].sort() };
}
