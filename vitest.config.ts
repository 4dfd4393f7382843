import { mkdtempSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// Mesa warns on every process start unless XDG_RUNTIME_DIR names a 0700 directory.
function xdgRuntimeDir(): string {
  const existing = process.env['XDG_RUNTIME_DIR'];
  if (existing) return existing;
  const dir = mkdtempSync(join(tmpdir(), 'mpc-xdg-'));
  chmodSync(dir, 0o700);
  return dir;
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Dawn must live in a process of its own (one instance per process, never collected):
    // worker threads share a process, forks do not.
    pool: 'forks',
    // GPU tests on lavapipe (a CPU) are slow.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Every pass's output is type-checked in tests (the CLI checks after the last pass only).
    env: { XDG_RUNTIME_DIR: xdgRuntimeDir(), MPC_VERIFY_EACH: '1' },
  },
});
