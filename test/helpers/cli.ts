// Running the built CLI (bin/mpc.js) as a child process, and the shape every failure must
// have: exit code 2 and exactly one `mpc: ` line on stderr, nothing on stdout.
import { execFile, spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(ROOT, 'bin', 'mpc.js');

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs node with `args` (asynchronously, so that tests can run side by side). */
export function node(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const e = { ...process.env, ...env };
  if (!env.MPC_DEBUG) delete e.MPC_DEBUG; // a stack trace only with MPC_DEBUG=1
  return new Promise((done, fail) => {
    execFile(process.execPath, args, { cwd: ROOT, env: e, encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') fail(err);
      else done({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

export const mpc = (...args: string[]): Promise<Run> => node([BIN, ...args]);

/** Exit code 2, one `mpc: ` line on stderr matching `message`, nothing on stdout. */
export function expectUsageError(r: Run, message?: RegExp): string {
  const show = `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
  expect(r.stderr, show).toMatch(/^mpc: [^\n]+\n$/);
  expect(r.stderr, show).not.toMatch(/internal error|^\s+at |\bat .+:\d+:\d+|node:internal|(Type|Range|Reference)Error/m);
  expect(r.stderr, show).not.toMatch(/Usage:/);
  expect(r.stdout, show).toBe('');
  expect(r.code, show).toBe(2);
  if (message) expect(r.stderr).toMatch(message);
  return r.stderr;
}

export function expectOk(r: Run): void {
  expect(r.code, `stderr: ${r.stderr}`).toBe(0);
}

/** Builds dist/ (the CLI runs from it); for beforeAll. */
export function buildOnce(): void {
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm run build failed:\n${r.stdout}\n${r.stderr}`);
}
