// Writes a generated GPT (src/models/gpt.ts) to an ONNX file:
//
//   node dist/src/models/make-gpt.js --layers 12 -o /tmp/gpt12.onnx
//
// Options default to GPT12 (12 blocks, width 256, 8 heads, context 64, vocabulary 512,
// opset 17, seed 0). A bad argument is one line on stderr and exit code 2.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { GPT12, gptOnnx, type GptConfig } from './gpt.js';

const USAGE = 'usage: make-gpt [--layers N] [--width N] [--heads N] [--context N] [--vocab N] [--opset 17|13] [--seed N] -o FILE';

function fail(message: string): never {
  process.stderr.write(`make-gpt: ${message}\n`);
  process.exit(2);
}

function int(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^-?\d+$/.test(text)) fail(`--${name} must be an integer, got '${text}'`);
  return Number(text);
}

function main(argv: string[]): void {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        layers: { type: 'string' },
        width: { type: 'string' },
        heads: { type: 'string' },
        context: { type: 'string' },
        vocab: { type: 'string' },
        opset: { type: 'string' },
        seed: { type: 'string' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    fail(`${(e as Error).message.split('\n')[0]} (${USAGE})`);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const str = (k: string) => values[k] as string | undefined;
  const out = str('output');
  if (!out) fail(`missing -o FILE (${USAGE})`);
  const opset = str('opset') ?? '17';
  if (opset !== '17' && opset !== '13') fail(`--opset must be 17 or 13, got '${opset}'`);
  const cfg: GptConfig = {
    layers: int('layers', str('layers'), GPT12.layers),
    width: int('width', str('width'), GPT12.width),
    heads: int('heads', str('heads'), GPT12.heads),
    context: int('context', str('context'), GPT12.context),
    vocab: int('vocab', str('vocab'), GPT12.vocab),
    layerNorm: opset === '13' ? 'op13' : 'op17',
    seed: int('seed', str('seed'), 0),
  };
  let bytes: Uint8Array;
  try {
    bytes = gptOnnx(cfg);
  } catch (e) {
    fail((e as Error).message.replace(/^gpt: /, ''));
  }
  try {
    writeFileSync(out, bytes);
  } catch (e) {
    fail(`${out}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  process.stdout.write(`wrote ${out} (${bytes.length} bytes)\n`);
}

main(process.argv.slice(2));
