// Benchmark runner: `npm run bench [-- --only <section>[,<section>...]] [--list] [--json <file>]`.
//
// Sections live in bench/*.ts and register themselves on import; add a file and its import
// below to add a section.
import { writeFileSync } from 'node:fs';
import { registeredSections, type BenchRow, type BenchValue } from './registry.js';
import './gemm.js';
import './train.js';
import './gpt.js';

export { registerSection } from './registry.js';

interface Args {
  only?: string[];
  list: boolean;
  json?: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { list: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--only') args.only = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (a.startsWith('--only=')) args.only = a.slice(7).split(',').filter(Boolean);
    else if (a === '--json') args.json = value();
    else if (a === '--list') args.list = true;
    else if (a === '--help' || a === '-h') {
      console.log('usage: node dist/bench/main.js [--only <section>[,...]] [--list] [--json <file>]');
      process.exit(0);
    } else throw new Error(`unknown argument '${a}' (try --help)`);
  }
  return args;
}

function printTable(rows: BenchRow[]): void {
  if (rows.length === 0) return;
  const columns: string[] = [];
  for (const r of rows) for (const k of Object.keys(r.values)) if (!columns.includes(k)) columns.push(k);
  const cell = (v: BenchValue | undefined): string => (v === undefined ? '' : typeof v === 'number' ? String(v) : v);
  const table = [['', ...columns], ...rows.map((r) => [r.label, ...columns.map((c) => cell(r.values[c]))])];
  const widths = table[0].map((_, j) => Math.max(...table.map((row) => row[j].length)));
  for (const row of table) console.log(`  ${row.map((c, j) => (j === 0 ? c.padEnd(widths[j]) : c.padStart(widths[j]))).join('  ')}`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const all = registeredSections();
  if (args.list) {
    for (const s of all) console.log(`${s.name}${s.description ? `  ${s.description}` : ''}`);
    return;
  }
  const unknown = (args.only ?? []).filter((n) => !all.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown section(s) ${unknown.join(', ')}; known: ${all.map((s) => s.name).join(', ')}`);
  const chosen = args.only ? all.filter((s) => args.only!.includes(s.name)) : all;

  const results: { section: string; seconds: number; rows: BenchRow[]; notes: string[]; error?: string }[] = [];
  let failed = false;
  for (const s of chosen) {
    console.log(`== ${s.name}${s.description ? `: ${s.description}` : ''}`);
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    const t0 = performance.now();
    let error: string | undefined;
    try {
      await s.run({
        log: (line) => console.log(`  ${line}`),
        report: (label, values) => rows.push({ section: s.name, label, values }),
        note: (line) => notes.push(line),
      });
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
      failed = true;
    }
    const seconds = (performance.now() - t0) / 1000;
    printTable(rows);
    for (const n of notes) console.log(`  note: ${n}`);
    if (error) console.log(`  FAILED: ${error}`);
    console.log(`  (${seconds.toFixed(1)} s)\n`);
    results.push({ section: s.name, seconds, rows, notes, ...(error ? { error } : {}) });
  }
  if (args.json) writeFileSync(args.json, `${JSON.stringify({ date: new Date().toISOString(), results }, null, 2)}\n`);
  if (failed) process.exitCode = 1;
}

main().then(
  // Dawn keeps the event loop alive; leave once every section is done.
  () => process.exit(process.exitCode ?? 0),
  (e: unknown) => {
    console.error(`bench: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
