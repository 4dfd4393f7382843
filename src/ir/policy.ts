// Precision policies are data: the low-precision type, the default loss scaling, and the
// user's moves of op types or nodes (by name pattern) between precision classes. The
// default class of each op is on its op-table row.
import { info, type DType } from './dtypes.js';
import type { Node, PrecisionClass } from './graph.js';

export interface PolicyPreset {
  name: string;
  /** Type of allow-class ops (and of follow ops fed by them). */
  low: DType;
  lossScale: 'dynamic' | 'none';
  /** GEMM-like ops take fp8 operands (the quantize-fp8 pass). */
  fp8?: boolean;
  doc: string;
}

export const POLICY_PRESETS: Readonly<Record<string, PolicyPreset>> = {
  fp32: { name: 'fp32', low: 'f32', lossScale: 'none', doc: 'everything in f32' },
  fp16: { name: 'fp16', low: 'f16', lossScale: 'dynamic', doc: 'GEMMs in f16 with f32 accumulation, dynamic loss scaling' },
  bf16: { name: 'bf16', low: 'bf16', lossScale: 'none', doc: 'GEMMs in bf16 with f32 accumulation, no loss scaling' },
  fp8: {
    name: 'fp8',
    low: 'bf16',
    lossScale: 'none',
    fp8: true,
    doc: 'GEMM operands in fp8 (E4M3 forward, E5M2 gradients) with per-tensor scaling, f32 accumulation; everything else bf16',
  },
};

export interface ClassOverride {
  /** An op type (`Softmax`) or a node-name glob prefixed with `node:` (`node:/attn/*`). */
  match: string;
  cls: PrecisionClass;
}

export interface Policy extends PolicyPreset {
  overrides: ClassOverride[];
  /** Model inputs and outputs keep their declared types. */
  keepIoTypes: boolean;
}

const MOVABLE: PrecisionClass[] = ['allow', 'follow', 'deny'];

export function makePolicy(name: string, overrides: ClassOverride[] = []): Policy {
  const preset = POLICY_PRESETS[name];
  if (!preset) throw new Error(`unknown policy '${name}' (choose ${Object.keys(POLICY_PRESETS).join(', ')})`);
  for (const o of overrides)
    if (!MOVABLE.includes(o.cls)) throw new Error(`class of '${o.match}' must be one of ${MOVABLE.join(', ')}`);
  return { ...preset, overrides: [...overrides], keepIoTypes: true };
}

/** Parses `OP=class` or `node:GLOB=class`. */
export function parseOverride(s: string): ClassOverride {
  const eq = s.lastIndexOf('=');
  if (eq <= 0) throw new Error(`class override '${s}' must look like OP=allow|follow|deny or node:GLOB=...`);
  const cls = s.slice(eq + 1) as PrecisionClass;
  if (!MOVABLE.includes(cls)) throw new Error(`class override '${s}': class must be one of ${MOVABLE.join(', ')}`);
  return { match: s.slice(0, eq), cls };
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * The class of a node: the last matching node pattern, else the last op-type override,
 * else the op table's default. Classes 'none' and 'cast' (integer ops, explicit casts)
 * cannot be moved.
 */
export function classOf(p: Policy, n: Node, tableDefault: PrecisionClass): { cls: PrecisionClass; reason: string } {
  if (!MOVABLE.includes(tableDefault)) return { cls: tableDefault, reason: 'op table' };
  let found: { cls: PrecisionClass; reason: string } | undefined;
  for (const o of p.overrides)
    if (!o.match.startsWith('node:') && o.match === n.op) found = { cls: o.cls, reason: `policy ${o.match}=${o.cls}` };
  for (const o of p.overrides)
    if (o.match.startsWith('node:') && globToRegExp(o.match.slice(5)).test(n.name)) found = { cls: o.cls, reason: `policy ${o.match}=${o.cls}` };
  return found ?? { cls: tableDefault, reason: 'op table' };
}

/** Whether a --class rule names this node (its op type, or `node:GLOB` its name). */
export function overrideMatches(match: string, n: Node): boolean {
  return match.startsWith('node:') ? globToRegExp(match.slice(5)).test(n.name) : match === n.op;
}

/** The wider of two float types; f16 and bf16 together widen to f32. */
export function widest(a: DType, b: DType): DType {
  if (a === b) return a;
  const fa = info(a);
  const fb = info(b);
  if (fa.kind !== 'float' || fb.kind !== 'float') return a;
  if (fa.bits !== fb.bits) return fa.bits > fb.bits ? a : b;
  return 'f32';
}
