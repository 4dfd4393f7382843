// What `mpc inspect` reports besides the graph itself: a summary of precision decisions
// (ops per compute dtype and class, casts, bytes by role and dtype) and Graphviz output.
import { byteSize, isFloat } from './dtypes.js';
import { staticShape, type Graph } from './graph.js';
import { sizeOf } from './tensor.js';

export interface GraphSummary {
  nodes: number;
  /** Op type -> compute dtype -> count (nodes without a decision under 'none'). */
  ops: Record<string, Record<string, number>>;
  /** Precision class -> count. */
  classes: Record<string, number>;
  /** Cast nodes by 'from->to'. */
  casts: Record<string, number>;
  /** Bytes of values by role and dtype (one buffer per value, before memory planning). */
  bytes: Record<string, Record<string, number>>;
}

export function summarize(g: Graph): GraphSummary {
  const s: GraphSummary = { nodes: g.nodes.length, ops: {}, classes: {}, casts: {}, bytes: {} };
  for (const n of g.nodes) {
    const dt = n.prec?.compute ?? 'none';
    const byType = (s.ops[n.op] ??= {});
    byType[dt] = (byType[dt] ?? 0) + 1;
    const cls = n.prec?.cls ?? 'none';
    s.classes[cls] = (s.classes[cls] ?? 0) + 1;
    if (n.op === 'Cast') {
      const key = `${g.values.get(n.inputs[0])?.dtype}->${g.values.get(n.outputs[0])?.dtype}`;
      s.casts[key] = (s.casts[key] ?? 0) + 1;
    }
  }
  for (const v of g.values.values()) {
    if (v.shape.some((d) => typeof d !== 'number')) continue;
    const b = sizeOf(staticShape(v)) * byteSize(v.dtype);
    const role = (s.bytes[v.role] ??= {});
    role[v.dtype] = (role[v.dtype] ?? 0) + b;
  }
  return s;
}

function kib(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

/** The summary as `#` comment lines (they precede the printed graph). */
export function formatSummary(s: GraphSummary): string {
  const lines = [`# ${s.nodes} nodes; classes: ${Object.entries(s.classes).map(([k, v]) => `${k} ${v}`).join(', ')}`];
  const ops = Object.entries(s.ops).sort((a, b) => a[0].localeCompare(b[0]));
  lines.push(`# ops by compute dtype: ${ops.map(([op, d]) => `${op} ${Object.entries(d).map(([t, c]) => `${c}x${t}`).join('/')}`).join(', ')}`);
  const casts = Object.entries(s.casts);
  lines.push(`# casts: ${casts.length ? casts.map(([k, v]) => `${v}x ${k}`).join(', ') : 'none'}`);
  lines.push(
    `# bytes (a buffer per value): ${Object.entries(s.bytes)
      .map(([role, d]) => `${role} ${Object.entries(d).map(([t, b]) => `${kib(b)} ${t}`).join(' + ')}`)
      .join('; ')}`,
  );
  return lines.join('\n') + '\n';
}

const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');

/** Graphviz: nodes as boxes labelled with op and compute dtype, edges labelled with dtype and shape. */
export function toDot(g: Graph): string {
  const lines = [`digraph "${esc(g.name)}" {`, '  rankdir=TB;', '  node [shape=box, fontname="monospace", fontsize=10];'];
  const producer = new Map<string, string>();
  g.nodes.forEach((n, i) => n.outputs.forEach((o) => o && producer.set(o, `n${i}`)));
  const sources = new Map<string, string>(); // value without a producer -> its ellipse
  g.nodes.forEach((n, i) => {
    const color = n.prec?.compute && n.prec.compute !== 'f32' && isFloat(n.prec.compute) ? ', style=filled, fillcolor="#dde8ff"' : '';
    lines.push(`  n${i} [label="${esc(n.op)}\\n${esc(n.name)}${n.prec ? `\\n${n.prec.cls} ${n.prec.compute}` : ''}"${color}];`);
    for (const inp of n.inputs) {
      if (!inp) continue;
      const v = g.values.get(inp)!;
      let from = producer.get(inp) ?? sources.get(inp);
      if (!from) {
        from = `v${sources.size}`;
        sources.set(inp, from);
        lines.push(`  ${from} [shape=ellipse, label="${esc(`${v.role} ${inp}`)}"];`);
      }
      lines.push(`  ${from} -> n${i} [label="${v.dtype}[${v.shape.join(',')}]", fontsize=8];`);
    }
  });
  lines.push('}');
  return lines.join('\n') + '\n';
}
