#!/usr/bin/env node
// mpc command-line entry point (runs the compiled TypeScript in dist/).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const entry = join(root, 'dist', 'src', 'cli', 'main.js');
if (!existsSync(entry)) {
  console.error(`mpc: not built yet: run 'npm run build' in ${root}`);
  process.exit(2);
}
const { main } = await import(pathToFileURL(entry).href);
await main(process.argv);
