// Stable text form of the IR, for `mpc inspect` and golden files. One line per value
// declaration and per node; the same graph always prints the same text.
import { fromOnnx } from './dtypes.js';
import type { AttrValue, Graph, Node } from './graph.js';
import { formatShape } from './tensor.js';

function attrText(op: string, k: string, v: AttrValue): string {
  if (op === 'Cast' && k === 'to' && typeof v === 'number') return `${k}=${fromOnnx(v)}`;
  if (Array.isArray(v)) return `${k}=[${v.join(',')}]`;
  if (typeof v === 'object') return `${k}=<${v.dtype}${formatShape(v.shape)}>`;
  if (typeof v === 'string') return `${k}="${v}"`;
  return `${k}=${v}`;
}

function typeText(g: Graph, name: string): string {
  const v = g.values.get(name);
  // Before infer-types, a node's results have no type yet.
  if (!v || (v.role === 'activation' && !g.meta.typed)) return '?';
  return `${v.dtype}${formatShape(v.shape)}`;
}

export function printNode(g: Graph, n: Node): string {
  const outs = n.outputs.map((o) => (o ? `%${o}: ${typeText(g, o)}` : '_')).join(', ');
  const ins = n.inputs.map((i) => (i ? `%${i}` : '_')).join(', ');
  const keys = Object.keys(n.attrs).sort();
  const attrs = keys.length ? ` {${keys.map((k) => attrText(n.op, k, n.attrs[k])).join(', ')}}` : '';
  let prec = '';
  if (n.prec) {
    prec = `  # ${n.prec.cls} ${n.prec.compute}`;
    if (n.prec.accum && n.prec.accum !== n.prec.compute) prec += ` acc=${n.prec.accum}`;
    if (n.arith && n.arith !== n.prec.compute) prec += ` arith=${n.arith}`;
  }
  return `  ${outs} = ${n.op}(${ins})${attrs}${prec}`;
}

export function printGraph(g: Graph): string {
  const lines: string[] = [`graph ${g.name}`];
  const decl = (role: string) =>
    [...g.values.values()]
      .filter((v) => v.role === role)
      .map((v) => `  ${role.padEnd(5)} %${v.name}: ${v.dtype}${formatShape(v.shape)}`);
  lines.push(...g.inputs.map((i) => `  input %${i}: ${typeText(g, i)}`));
  lines.push(...decl('param'), ...decl('state'), ...decl('const'));
  lines.push('body');
  for (const n of g.nodes) lines.push(printNode(g, n));
  lines.push(`outputs ${g.outputs.map((o) => `%${o}: ${typeText(g, o)}`).join(', ')}`);
  for (const u of g.updates) lines.push(`update %${u.state} <- %${u.next}`);
  return lines.join('\n') + '\n';
}
